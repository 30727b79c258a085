"""HTML of inbound mail made safe to show (`sanitize_html`) and readable as text (`html_to_text`).

This module owns the HTML step of inbound parsing. It is also the one module allowed to import
bleach, and on purpose does not: measured on Python 3.11.7, bleach (html5lib) needs ~2.3 ms for
a 1.2 KB mail body and over a minute for 100 KB of nested `<div>`s, and the stdlib
`html.parser` is quadratic on `<a <a <a …` (2.8 s for 12 KB) and raises AssertionError on
`<![<![`. Both fail "safe on huge or hostile input". Instead a small regex tokenizer reads the
markup in one linear pass, and the output is *rebuilt* from scratch, never passed through:

* only allow-listed tags and attributes are written, every attribute value is quoted and
  escaped, every text run is unescaped and escaped again, so what a browser parses from the
  output is exactly what we wrote, whatever the input meant;
* end tags are only written for elements we opened, and everything still open is closed at the
  end, so the fragment cannot close or break the page it is embedded in;
* the content of script, style, title, textarea, iframe, noscript, … is dropped, other unknown
  tags (html, body, font, o:p, …) are dropped but their text is kept;
* links: only absolute http, https and mailto URLs, always with rel="nofollow noopener";
* images: only `cid:` (parts of the same mail) and inline `data:image/{png,jpeg,gif,webp}`
  sources. Remote images are dropped: they are tracking beacons and leak that a ticket was read;
* no style, class or id attributes and no event handlers (on*), nothing else that executes.

Input longer than MAX_HTML_CHARS is cut there first (no real mail body is that long; it bounds
the work per mail).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

MAX_HTML_CHARS = 4_000_000
MAX_DEPTH = 100  # open elements kept; deeper nesting is flattened (renderers choke on it)
MAX_TEXT_NESTING = 12  # list indents and "> " prefixes shown in text; deeper is not readable
MAX_LINK_PARTS = 64  # a link label longer than this many pieces is not compared with its URL

_VOID = frozenset({"br", "hr", "img"})
_ALLOWED_TAGS = frozenset({
    "p", "br", "div", "span", "b", "i", "u", "s", "strong", "em", "small", "sub", "sup",
    "a", "ul", "ol", "li", "dl", "dt", "dd", "blockquote", "pre", "code", "hr", "img",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "td", "th",
    "h1", "h2", "h3", "h4", "h5", "h6",
})
_ALLOWED_ATTRS: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title", "width", "height"}),
    "td": frozenset({"colspan", "rowspan"}),
    "th": frozenset({"colspan", "rowspan"}),
}
_GLOBAL_ATTRS = frozenset({"dir"})  # right-to-left mail (Arabic, Hebrew) needs it
# Attributes the tokenizer keeps at all: what sanitize_html and html_to_text look at.
_WANTED_ATTRS = frozenset().union(*_ALLOWED_ATTRS.values(), _GLOBAL_ATTRS)
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_NUMERIC_ATTRS = frozenset({"width", "height", "colspan", "rowspan"})
_DIRS = frozenset({"ltr", "rtl", "auto"})

# Elements whose content is not markup (HTML5 raw text / RCDATA): skipped up to their end tag.
_RAW_TEXT = frozenset({"script", "style", "title", "textarea", "xmp", "iframe", "noembed",
                       "noframes", "noscript"})
_RAW_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW_TEXT}

# One token at a time: a text run, a tag, the start of a comment, of a bogus comment
# (`<!`, `<?`, `</` not followed by a name) or a lone `<`. Possessive quantifiers (`++`, `*+`)
# never backtrack, so every match is linear in what it consumes. A tag runs to `>` outside
# quotes; a tag without that `>` (`close` unmatched) runs to the end of the input, where
# browsers drop it and so do we.
_TOKEN = re.compile(
    r"""([^<]++)"""  # 1: text
    r"""|<(/?)([a-zA-Z][^\t\n\f\r />]*+)"""  # 2: end tag?, 3: name
    r"""((?:[^>"']++|"[^"]*+"?|'[^']*+'?)*+)(>)?"""  # 4: attributes, 5: the closing ">"
    r"""|(<!--)|(<[!?/])|<"""  # 6: comment, 7: bogus comment, or a lone "<"
)
_ATTR = re.compile(
    r"""([^\t\n\f\r /=>][^\t\n\f\r /=>]*+)"""
    r"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"([^"]*+)"|'([^']*+)'|([^\t\n\f\r >]*+)))?"""
)
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]+")  # browsers ignore these inside URLs
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*\Z",
                         re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


_Tag = tuple[str, bool, dict[str, str]]  # (lower-case name, is an end tag, attributes)
_NO_ATTRS: dict[str, str] = {}  # shared, never written to


def _tokens(source: str) -> Iterator[str | _Tag]:
    """Text runs and tags of `source`, in one left-to-right pass. Text comes as written
    (entities not decoded) and never contains "<": a lone "<" comes as "&lt;"."""
    pos, n = 0, len(source)
    match = _TOKEN.match
    while pos < n:
        m = match(source, pos)
        assert m is not None  # the last alternative matches any "<"; [^<] anything else
        pos = m.end()
        kind = m.lastindex
        if kind == 1:
            yield m.group(1)
        elif kind == 4 or kind == 5:  # a tag (unterminated: its last group is 4)
            if m.group(5) is None:
                return  # unterminated tag: dropped with the rest of the input
            name, attrs = m.group(3).lower(), m.group(4)
            end = bool(m.group(2))
            yield name, end, _attributes(attrs) if "=" in attrs else _NO_ATTRS
            if name in _RAW_TEXT and not end:
                close = _RAW_END[name].search(source, pos)
                pos = close.start() if close else n
        elif kind == 6 or kind == 7:
            pos = _skip_comment(source, pos, kind == 6)
        else:
            yield "&lt;"


def _attributes(source: str) -> dict[str, str]:
    """The attributes sanitize_html and html_to_text look at; the first of duplicates wins."""
    attrs: dict[str, str] = {}
    for m in _ATTR.finditer(source):
        key = m.group(1).lower()
        if key in _WANTED_ATTRS and key not in attrs:
            raw = m.group(2) or m.group(3) or m.group(4) or ""
            attrs[key] = html.unescape(raw) if "&" in raw else raw
    return attrs


def _skip_comment(source: str, pos: int, dashes: bool) -> int:
    """Where markup resumes after a comment (`<!--` … `-->`) or a bogus comment (… `>`)."""
    if not dashes:
        close = source.find(">", pos)
        return len(source) if close < 0 else close + 1
    for short in (">", "->"):  # `<!-->` and `<!--->` are complete (empty) comments
        if source.startswith(short, pos):
            return pos + len(short)
    close = source.find("-->", pos)
    return len(source) if close < 0 else close + 3


def _text(raw: str) -> str:
    """A text run as characters: entities decoded, NUL and control characters dropped."""
    text = html.unescape(raw) if "&" in raw else raw
    return _CONTROL.sub("", text) if _CONTROL.search(text) else text


def _safe_href(value: str) -> str | None:
    url = _URL_JUNK.sub("", value)
    m = _SCHEME.match(url)
    return url if m and m.group(1).lower() in _LINK_SCHEMES else None


def _safe_src(value: str) -> str | None:
    url = _URL_JUNK.sub("", value)
    if url[:4].lower() == "cid:" or _DATA_IMAGE.match(url):
        return url
    return None


# -- sanitize_html ---------------------------------------------------------------------------

def sanitize_html(source: str) -> str:
    """`source` rebuilt from allow-listed tags and attributes only (see the module docstring).

    Text runs are copied as written: they contain no "<" (the tokenizer sees to that), so
    they cannot make markup, and their entities show what the sender meant.
    """
    source = source[:MAX_HTML_CHARS]
    if _CONTROL.search(source):  # NUL and other controls: no place in a page or a database
        source = _CONTROL.sub("", source)
    out: list[str] = []
    stack: list[str] = []
    for token in _tokens(source):
        if isinstance(token, str):
            out.append(token)
            continue
        name, end, attrs = token
        if name not in _ALLOWED_TAGS:
            continue
        if end:
            _close(name, stack, out)
        elif name in _VOID:
            start = _start_tag(name, attrs)
            if start:
                out.append(start)
        elif len(stack) < MAX_DEPTH:
            while stack and stack[-1] in _CLOSED_BY.get(name, ()):
                out.append(f"</{stack.pop()}>")
            out.append(_start_tag(name, attrs) or f"<{name}>" if attrs else f"<{name}>")
            stack.append(name)
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out).strip()


# HTML's optional end tags: a new cell ends the open cell, a new row the open row, and so on.
_CLOSED_BY: dict[str, frozenset[str]] = {
    "td": frozenset({"td", "th"}), "th": frozenset({"td", "th"}),
    "tr": frozenset({"tr", "td", "th"}), "li": frozenset({"li"}), "p": frozenset({"p"}),
    "dt": frozenset({"dt", "dd"}), "dd": frozenset({"dt", "dd"}),
}


def _close(name: str, stack: list[str], out: list[str]) -> None:
    """Close `name` and what was opened inside it; an end tag we did not open is dropped."""
    if name not in stack:
        return
    while stack:
        top = stack.pop()
        out.append(f"</{top}>")
        if top == name:
            return


def _start_tag(name: str, attrs: dict[str, str]) -> str | None:
    """The start tag with its safe attributes; None for an image without a safe source."""
    allowed = _ALLOWED_ATTRS.get(name, frozenset())
    parts = [name]
    for key, value in attrs.items():
        if key in _NUMERIC_ATTRS:
            digits = value.strip()
            ok: str | None = digits if digits.isascii() and digits.isdigit() and len(digits) < 6 \
                else None
        elif key == "dir":
            ok = value.strip().lower() if value.strip().lower() in _DIRS else None
        elif key == "href":
            ok = _safe_href(value)
        elif key == "src":
            ok = _safe_src(value)
        else:
            ok = value
        if ok is not None and (key in allowed or key in _GLOBAL_ATTRS):
            parts.append(f'{key}="{html.escape(ok, quote=True)}"')
    if name == "img" and not any(p.startswith("src=") for p in parts):
        return None
    if name == "a" and any(p.startswith("href=") for p in parts):
        parts.append('rel="nofollow noopener"')
    return "<" + " ".join(parts) + ">"


# -- html_to_text ----------------------------------------------------------------------------

_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "pre", "hr", "dl",
                        "blockquote", "ul", "ol"})
_LINE = frozenset({"div", "tr", "li", "dt", "dd", "caption", "section", "article", "header",
                   "footer", "address", "center", "form", "fieldset", "figure", "nav", "main",
                   "aside", "details", "summary"})
_SPACE = re.compile(r"[ \t\n\r\f]+")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


class _TextWriter:
    """Collects text with block structure: paragraph breaks, list markers, quote prefixes."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pending = 0  # newlines asked for before the next text
        self.trailing = 2  # newlines already at the end ("2" at the start: nothing to add)
        self.quote = 0
        self.pre = 0
        self.lists: list[int] = []  # per open list: next number, or 0 for bullets
        self.links: list[tuple[str | None, int]] = []  # (href, index in out where it began)

    def block(self, newlines: int) -> None:
        self.pending = max(self.pending, newlines)

    def newline(self) -> None:
        self.write("")
        self._newlines(1)

    def _newlines(self, count: int) -> None:
        # A blank line inside a quote keeps its ">" so the quote reads as one block.
        prefix = ("> " * min(self.quote, MAX_TEXT_NESTING)).rstrip()
        for _ in range(count):
            if self.trailing and prefix:
                self.out.append(prefix)
            self.out.append("\n")
            self.trailing += 1

    def write(self, text: str, *, indent: bool = False) -> None:
        need = self.pending - self.trailing
        self.pending = 0
        if need > 0:
            self._newlines(need)
        if not text:
            return
        if self.trailing:
            text = text if self.pre or indent else text.lstrip(" ")
            if not text:
                return
            if self.quote:
                self.out.append("> " * min(self.quote, MAX_TEXT_NESTING))
        if self.quote and "\n" in text:
            text = text.replace("\n", "\n" + "> " * min(self.quote, MAX_TEXT_NESTING))
        self.out.append(text)
        self.trailing = len(text) - len(text.rstrip("\n")) if text.endswith("\n") else 0

    def text(self, raw: str) -> None:
        text = _text(raw)
        self.write(text if self.pre else _SPACE.sub(" ", text))

    def result(self) -> str:
        text = "".join(self.out).replace("\xa0", " ")
        return _BLANKS.sub("\n\n", _TRAILING.sub("\n", text + "\n")).strip("\n")


def html_to_text(source: str) -> str:
    """Readable plain text of an HTML body: blocks and <br> as newlines, lists as "- " and
    "1. ", quotes as "> ", links as "text (url)", entities decoded, scripts and styles gone."""
    w = _TextWriter()
    for token in _tokens(source[:MAX_HTML_CHARS]):
        if isinstance(token, str):
            w.text(token)
        elif token[1]:
            _end_block(w, token[0])
        else:
            _start_block(w, token[0], token[2])
    return w.result()


def _start_block(w: _TextWriter, name: str, attrs: dict[str, str]) -> None:
    if name == "br":
        w.newline()
    elif name == "img":
        w.write(_SPACE.sub(" ", attrs.get("alt", "")).strip())
    elif name in ("td", "th"):
        if not w.trailing and not w.pending:  # between cells of a row, not at a row start
            w.write("\t")
    elif name == "a":
        w.links.append((_safe_href(attrs.get("href", "")), len(w.out)))
    elif name == "li":
        w.block(1)
        number = w.lists[-1] if w.lists else 0
        if w.lists and number:
            w.lists[-1] += 1
        indent = "  " * min(max(len(w.lists) - 1, 0), MAX_TEXT_NESTING)
        w.write(indent + (f"{number}. " if number else "- "),
                indent=True)
    elif name in _PARAGRAPH or name in _LINE:
        w.block(1 if name in _LINE or (name in ("ul", "ol") and w.lists) else 2)
        if name in ("ul", "ol"):
            w.lists.append(1 if name == "ol" else 0)
        elif name == "blockquote":
            w.write("")  # the break before the quote is written without its ">"
            w.quote += 1
        elif name == "pre":
            w.pre += 1


def _end_block(w: _TextWriter, name: str) -> None:
    if name == "a" and w.links:
        href, start = w.links.pop()
        # Only short labels are compared: joining every nested label again is quadratic.
        label = "".join(w.out[start:]).strip() if len(w.out) - start < MAX_LINK_PARTS else "…"
        shown = href[7:] if href and href[:7].lower() == "mailto:" else href
        if href and label and label not in (shown, href):
            w.write(f" ({shown})")
        elif href and not label:
            w.write(shown or "")
        return
    if name in ("ul", "ol") and w.lists:
        w.lists.pop()
    if name == "blockquote" and w.quote:
        w.quote -= 1
    if name == "pre" and w.pre:
        w.pre -= 1
    if name in _PARAGRAPH or name in _LINE:
        w.block(1 if name in _LINE or (name in ("ul", "ol") and w.lists) else 2)
