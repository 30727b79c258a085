"""HTML of inbound mail made safe to show (`sanitize_html`) and readable as text (`html_to_text`).

This module owns the HTML step of inbound parsing and is the one module that imports bleach.
`sanitize_html` is bleach's Cleaner with this allow-list:

* tags: text structure, lists, tables, links and images; the content of script and style is
  dropped, other unknown tags are stripped with their text kept;
* links: only absolute http, https and mailto URLs, always with rel="nofollow noopener";
* images: only `cid:` (parts of the same mail) and inline `data:image/{png,jpeg,gif,webp}`
  sources. Remote images are dropped: they are tracking beacons and leak that a ticket was read;
* other attributes: img alt/title/width/height, td/th colspan/rowspan (digits only), and dir
  (ltr/rtl/auto, for right-to-left mail); no style, class or id, no event handlers (on*).

bleach (html5lib) costs a few ms for a typical body and grows with nesting, so input is cut at
MAX_HTML_CHARS and mail past the MAX_BLEACH_* bounds keeps only its text.

`html_to_text` is not a security boundary (its output is text, escaped wherever it is shown):
a small regex tokenizer reads the markup in one linear pass, bounded by MAX_TOKENS, because the
stdlib `html.parser` is quadratic on `<a <a <a …` and raises AssertionError on `<![<![`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape, unescape
from itertools import islice
from typing import Any

import bleach
from bleach.html5lib_shim import Filter

MAX_HTML_CHARS = 8_000_000  # inline data: images make big HTML bodies that are cheap to read
MAX_TOKENS = 200_000
MAX_ATTRIBUTES = 64  # per tag
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

# One token at a time: a text run (a "<" that starts no markup is text, as in browsers), a
# tag, or the start of a comment or of a bogus comment (`<!`, `<?`, `</` not followed by a
# name). Possessive quantifiers (`++`, `*+`) never backtrack, so every match is linear in
# what it consumes. A tag runs to `>` outside quotes; a tag without that `>` (`close`
# unmatched) runs to the end of the input, where browsers drop it and so do we.
_TOKEN = re.compile(
    r"""((?:[^<]++|<(?![a-zA-Z!?/]))++)"""  # 1: text
    r"""|<(/?)([a-zA-Z][^\t\n\f\r />]*+)"""  # 2: end tag?, 3: name
    r"""((?:[^>"']++|"[^"]*+"?|'[^']*+'?)*+)(>)?"""  # 4: attributes, 5: the closing ">"
    r"""|(<!--)|(<[!?/])"""  # 6: comment, 7: bogus comment
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
    """Text runs and tags of `source`, in one left-to-right pass. Text comes as written:
    entities not decoded, and a "<" that starts no markup left as it is."""
    pos, n = 0, len(source)
    match = _TOKEN.match
    for _ in range(MAX_TOKENS):
        if pos >= n:
            return
        m = match(source, pos)
        assert m is not None  # every "<" starts markup or text; [^<] is text
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
        else:
            pos = _skip_comment(source, pos, kind == 6)


def _attributes(source: str) -> dict[str, str]:
    """The attributes sanitize_html and html_to_text look at; the first of duplicates wins.
    Only the first MAX_ATTRIBUTES of a tag are read (ignoring more only loses, never lets
    anything through)."""
    attrs: dict[str, str] = {}
    for m in islice(_ATTR.finditer(source), MAX_ATTRIBUTES):
        key = m.group(1).lower()
        if key in _WANTED_ATTRS and key not in attrs:
            raw = m.group(2) or m.group(3) or m.group(4) or ""
            attrs[key] = unescape(raw) if "&" in raw else raw
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
    text = unescape(raw) if "&" in raw else raw
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

# bleach (html5lib) is slow on deep nesting and on floods of entities: past these bounds a mail
# keeps only its text (real mail stays far below them; the raw mail is kept in the journal).
MAX_BLEACH_TAGS = 5000
MAX_BLEACH_ENTITIES = 20_000
MAX_BLEACH_CHARS = 400_000


def _attribute_ok(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: the allow-list above, with each value checked."""
    if name == "dir":
        return value.strip().lower() in _DIRS
    if name not in _ALLOWED_ATTRS.get(tag, frozenset()):
        return False
    if name in _NUMERIC_ATTRS:
        digits = value.strip()
        return digits.isascii() and digits.isdigit() and len(digits) < 6
    if name == "href":
        return _safe_href(value) is not None
    if name == "src":
        return _safe_src(value) is not None
    return True


class _Finish(Filter):  # type: ignore[misc]
    """After bleach's allow-list: drop an image whose source was refused (rather than leave
    an empty <img>) and mark every link rel="nofollow noopener". (bleach's LinkifyFilter does
    the latter too, but also scans all text for URLs, which tripled the cost.)"""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag"):
                attrs = token["data"]
                if token["name"] == "img" and not any(k[1] == "src" for k in attrs):
                    continue
                if token["name"] == "a" and (None, "href") in attrs:
                    attrs[(None, "rel")] = "nofollow noopener"
            yield token


_CLEANER = bleach.sanitizer.Cleaner(
    tags=_ALLOWED_TAGS, attributes=_attribute_ok,
    protocols={"http", "https", "mailto", "cid", "data"},  # data:/cid: only pass for img src
    strip=True, strip_comments=True,
    filters=[_Finish])


_RAW_START = re.compile(r"<(" + "|".join(sorted(_RAW_TEXT)) + r")[\t\n\f\r />]", re.IGNORECASE)


def _drop_raw_text(source: str) -> str:
    """Remove script, style, … with their content, in one forward pass (bleach would keep
    their text); an element never closed takes the rest of the document, as in a browser."""
    out: list[str] = []
    pos = 0
    while m := _RAW_START.search(source, pos):
        out.append(source[pos:m.start()])
        end = _RAW_END[m.group(1).lower()].search(source, m.end())
        if end is None:
            return "".join(out)
        close = source.find(">", end.end() - 1)
        pos = len(source) if close < 0 else close + 1
    out.append(source[pos:])
    return "".join(out)


def sanitize_html(html: str) -> str:
    """`html` with only allow-listed tags and attributes, by bleach (see the module docstring).

    Mail with more tags than bleach handles in reasonable time keeps no HTML: the caller
    shows the text made by `html_to_text`, and the raw mail stays in the journal.
    """
    source = html[:MAX_HTML_CHARS]
    if _CONTROL.search(source):  # NUL and other controls: no place in a page or a database
        source = _CONTROL.sub("", source)
    if (len(source) > MAX_BLEACH_CHARS or source.count("<") > MAX_BLEACH_TAGS
            or source.count("&") > MAX_BLEACH_ENTITIES):
        return _as_text(source)
    # html5lib serialises some misnested markup (a list item in a table) into HTML that it
    # parses differently again; what we store must be stable, so clean until it is.
    out = str(_CLEANER.clean(_drop_raw_text(source))).strip()
    for _ in range(2):
        again = str(_CLEANER.clean(out)).strip()
        if again == out:
            return out
        out = again
    return _as_text(source)


def _as_text(source: str) -> str:
    return "<pre>" + escape(html_to_text(source), quote=False) + "</pre>"



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


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body: blocks and <br> as newlines, lists as "- " and
    "1. ", quotes as "> ", links as "text (url)", entities decoded, scripts and styles gone."""
    w = _TextWriter()
    for token in _tokens(html[:MAX_HTML_CHARS]):
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
