"""Inbound parsing: raw RFC 5322 bytes → `Parsed`, the first step after the journal.

The one module that imports mail-parser. The message object comes from the same stdlib parse
mail-parser's `MailParser.from_bytes` runs (`email` with the compat32 policy), fed here in
chunks so the parse time limit is checked while parsing; `MailParser` itself is not built,
because its forensic extras (received chains, address diagnostics, base64 re-encoding of
every attachment) double the cost of a parse and we use none of them. mail-parser's RFC 5322
date parser reads the Date header.

Everything a sender controls is bounded (`LimitSettings`): header count and size and the MIME
part count are estimated from the raw bytes before the parse, the rest is counted during it.
Bad input ends in `ParseError` (its subclass `LimitExceeded` for a passed cap), never in any
other exception. Only the display values are decoded; nothing here trusts a decoded value for
structure: addresses are parsed strictly, and an ambiguous From gives no sender at all.
"""

from __future__ import annotations

import binascii
import codecs
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.errors import MessageError
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Compat32
from functools import lru_cache
from typing import Any

import mailparser.dates

from maild.domain import Address, Attachment, DeliveryReport, Parsed
from maild.errors import LimitExceeded, MaildError, ParseError
from maild.inbound.sanitize import html_to_text, sanitize_html
from maild.settings import LimitSettings
from maild.tokens import Signer

log = logging.getLogger(__name__)

FEED_CHUNK = 64 * 1024  # bytes fed to the parser between two checks of the time limit
MAX_PARAMS_CHARS = 8 * 1024  # a Content-Type / -Disposition longer than this has no params
MAX_PARAMS = 100  # … and so has one with more ";" than this (see _BoundedMessage)
MAX_FILENAME = 255


def parse_mail(raw: bytes, *, limits: LimitSettings, signer: Signer | None = None) -> Parsed:
    """Turn one raw mail into plain values; raises ParseError / LimitExceeded for bad input."""
    started = time.monotonic()
    try:
        return _parse(raw, limits, signer, started)
    except MaildError:
        raise
    except RecursionError:
        raise ParseError("MIME structure nested too deeply to parse") from None
    except Exception as exc:  # the promise to callers: bad input is a ParseError, nothing else
        log.warning("unexpected parser failure", exc_info=True)
        raise ParseError(f"cannot parse mail: {type(exc).__name__}: {exc}") from exc


def _parse(raw: bytes, limits: LimitSettings, signer: Signer | None, started: float) -> Parsed:
    msg = _parse_bytes(raw, limits, started)
    raw_headers = [(name.lower(), _unfold(_from_8bit(str(value))))
                   for name, value in msg.raw_items()]
    headers = [(name, _decode_words(value)) for name, value in raw_headers]
    message_id = next(iter(_message_ids(_first(raw_headers, "message-id"))), None)
    own_loop = _own_loop(headers, message_id, signer)
    to = _address_list(raw_headers, "to")
    cc = _address_list(raw_headers, "cc")
    if to[1] + cc[1] > limits.max_addresses:
        raise _exceeded(to[1] + cc[1], "To/Cc addresses", limits.max_addresses, "max_addresses")
    body = _walk(msg, limits, started)
    text, html = _body_text(body)
    _check_time(started, limits)
    sender = _sender(raw_headers)
    subject = " ".join(_first(headers, "subject").split())
    return Parsed(
        message_id=message_id,
        in_reply_to=_message_ids(_first(raw_headers, "in-reply-to")),
        references=_message_ids(" ".join(v for k, v in raw_headers if k == "references")),
        subject=subject, sender=sender, to=to[0], cc=cc[0],
        date=mailparser.dates.parse_mail_date(_first(raw_headers, "date") or None).value,
        headers=tuple((k, v) for k, v in headers if not k.startswith("x-maild-")),
        content_type=msg.get_content_type(), text=text, html=html,
        attachments=_attachments(body, limits),
        report=_report(msg, sender, raw_headers, subject, text),
        own_loop=own_loop,
    )


# -- limits ------------------------------------------------------------------------------------

def _exceeded(value: object, what: str, limit: object, key: str) -> LimitExceeded:
    return LimitExceeded(f"{value} {what}, limit {limit} ([limits] {key})")


def _check_time(started: float, limits: LimitSettings) -> None:
    elapsed = time.monotonic() - started
    if elapsed > limits.parse_seconds:
        raise LimitExceeded(f"parsing took {elapsed:.1f} s, limit {limits.parse_seconds:g} s"
                            " ([limits] parse_seconds)")


def _prescan(raw: bytes, limits: LimitSettings) -> None:
    """Reject what is visibly over a cap from the raw bytes, before the costly parse."""
    stop = limits.max_header_bytes + 4  # enough to see the limit passed
    end = _blank_line_end(raw, 0, stop)
    head = raw[: end if end >= 0 else stop].rstrip(b"\r\n")
    if len(head) > limits.max_header_bytes:
        raise _exceeded(len(head), "bytes of header lines", limits.max_header_bytes,
                        "max_header_bytes")
    fields = head.count(b"\n") + 1 - head.count(b"\n ") - head.count(b"\n\t")
    if fields > limits.max_headers:
        raise _exceeded(fields, "header lines", limits.max_headers, "max_headers")
    parts = _estimate_parts(raw, limits.max_mime_parts)
    if parts > limits.max_mime_parts:
        raise _exceeded(parts, "MIME parts", limits.max_mime_parts, "max_mime_parts")


_BOUNDARY_PARAM = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))',
                             re.IGNORECASE)
_DASH_LINE = re.compile(rb"\n--([^\r\n]{0,202})")


def _estimate_parts(raw: bytes, limit: int) -> int:
    """Parts the parser will find: 1 + the opening delimiter lines of declared boundaries."""
    dashes = raw.count(b"\n--")
    if dashes < limit:  # every part starts at a "--" line: the common case ends here
        return dashes + 1
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY_PARAM.finditer(raw)}
    if len(boundaries) > limit:
        return len(boundaries)
    opening = 0
    for m in _DASH_LINE.finditer(raw):
        line = m.group(1).rstrip()
        if line in boundaries:
            opening += 1
    return opening + 1


class _BoundedMessage(Message):
    """A compat32 Message whose header parameters are only read from sane header values.

    The stdlib's parameter splitter is quadratic in the number of ";" of a value (80 KB of
    them in a nested part's Content-Type take 9 s, and the parser reads every boundary that
    way). No real mail has a Content-Type or Content-Disposition near these limits; over
    them the header is read as having no parameters (an empty list, as callers iterate it).
    """

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        value = self.get(header)
        if value is not None:
            text = str(value)
            if len(text) > MAX_PARAMS_CHARS or text.count(";") > MAX_PARAMS:
                return []
        return super()._get_params_preserve(failobj, header)  # type: ignore[misc]


def _raw(part: Message) -> Any:
    """A part's payload as the parser stored it: its children, or its text with 8-bit bytes
    kept as surrogates. Message.get_payload() would decode that text with the part's charset
    parameter, which can be anything (a NUL in it makes the codec lookup raise ValueError)."""
    return part._payload  # type: ignore[attr-defined]


def _parse_bytes(raw: bytes, limits: LimitSettings, started: float) -> Message:
    if not raw or raw.isspace():
        raise ParseError("empty message")
    elided: dict[str, str] = {}
    source = _elide_bodies(raw, elided) if len(raw) >= ELIDE_FROM else raw
    # The elided bodies hold no "--" line and no header: the cheap checks are as good on the
    # short stand-in version, and much cheaper.
    _prescan(source, limits)
    msg = _feed(source, limits, started)
    if elided and not _restore_bodies(msg, elided):
        msg = _feed(raw, limits, started)  # a stand-in did not land in a body: parse as is
    if len(msg) == 0:  # compat32: len() is the number of header fields
        raise ParseError("no header fields: this is not a mail")
    return msg


def _feed(raw: bytes, limits: LimitSettings, started: float) -> Message:
    parser = BytesFeedParser(_factory=_BoundedMessage)  # compat32, as mail-parser parses
    for start in range(0, len(raw), FEED_CHUNK):
        parser.feed(raw[start : start + FEED_CHUNK])
        _check_time(started, limits)
    return parser.close()


# -- big bodies past the line-by-line parser ---------------------------------------------------
#
# The stdlib parser handles every line of a mail in Python (~2 µs a line): a 150 KB
# attachment costs 5 ms, 25 MB of short lines seconds. Yet the lines of a body whose headers
# declare a non-multipart, non-message type are opaque to it: it only joins them into the
# payload. So such bodies are cut out of the bytes before the parse, each replaced by a
# one-line stand-in with a per-parse random nonce, and put back into the payloads after it:
# the same Message, for a fraction of the cost. A body is only cut out when nothing in it can
# end it: no line in it starts with "--" (a boundary) and it ends right before a "--" line.
# If a stand-in does not come back from a payload, preamble or epilogue exactly once (the
# parser saw the structure differently), the original bytes are parsed instead.

ELIDE_FROM = 16 * 1024  # mails shorter than this are parsed as they are
ELIDE_MIN = 4 * 1024  # bodies shorter than this stay in
MAX_BLOCK = 64 * 1024  # a header block longer than this ends the search for bodies
_STANDIN = "maild-elided-{nonce}-{index:06d}-end"
_TYPE_VALUE = re.compile(rb"[ \t\r\n]*([^;\s]*)")  # always matches


def _elide_bodies(raw: bytes, elided: dict[str, str]) -> bytes:
    nonce = secrets.token_hex(8)
    pieces: list[bytes] = []
    pos = 0
    for start, end in _opaque_bodies(raw):
        key = _STANDIN.format(nonce=nonce, index=len(elided))
        elided[key] = raw[start:end].decode("ascii", "surrogateescape")  # as the parser does
        pieces += (raw[pos:start], key.encode("ascii"))
        pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces) if elided else raw


def _opaque_bodies(raw: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of the bodies worth eliding: the top-level one of a single-part mail, or
    those after a "--" line and a header block, up to the next "--" line."""
    body = _blank_line_end(raw, 0, len(raw))
    if body < 0:
        return
    if _opaque_block(raw[:body], top=True):
        if len(raw) - body >= ELIDE_MIN:
            yield body, len(raw)
        return
    dash, lone_cr = _next_dash_line(raw, body - 1)
    for _ in range(1000):  # delimiter lines looked at; a real mail has a few
        if dash < 0 or lone_cr:
            return  # no more parts; or a lone CR, which makes lines where we do not look
        head = raw.find(b"\n", dash + 1) + 1
        after, lone_cr = _next_dash_line(raw, dash + 1)
        if head <= 0 or after < 0 or lone_cr:
            return  # the last part runs to the end: left alone
        body = _blank_line_end(raw, head, after + 1)
        # (else another "--" line came before the blank line: not a header block)
        if body >= 0:
            end = after - 1 if raw[after - 1 : after] == b"\r" else after
            if end - body >= ELIDE_MIN and _opaque_block(raw[head:body], top=False):
                yield body, end
        dash = after


def _next_dash_line(raw: bytes, pos: int) -> tuple[int, bool]:
    """Where the next line starting with "--" begins (its "\n"; -1: none), and whether that
    line follows a lone CR (the parser splits lines there too).

    Looks for "-" first: one memchr call skips a whole base64 body, which has none, where
    looking for "\n--" costs ~40x more. Text full of dashes falls back to that after a while.
    """
    for _ in range(64):
        i = raw.find(b"-", pos + 1)
        if i < 0:
            return -1, False
        if raw[i + 1 : i + 2] == b"-" and raw[i - 1 : i] in (b"\n", b"\r"):
            return i - 1, raw[i - 1 : i] == b"\r"
        pos = i
    lf = raw.find(b"\n--", pos)
    cr = raw.find(b"\r--", pos, lf + 3 if lf >= 0 else len(raw))
    return (cr, True) if cr >= 0 else (lf, False)


def _blank_line_end(raw: bytes, start: int, stop: int) -> int:
    """Where the body begins after the header block starting at `start` (-1: no blank line
    before `stop`). The line end of the block's first line says which blank line to look for
    first, so the other search only covers the block, not the body after it."""
    if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
        return start + (1 if raw.startswith(b"\n", start) else 2)
    stop = min(stop, start + MAX_BLOCK)
    nl = raw.find(b"\n", start, stop)
    crlf = nl > start and raw[nl - 1] == 13
    first, second = (b"\n\r\n", b"\n\n") if crlf else (b"\n\n", b"\n\r\n")
    i = raw.find(first, start, stop)
    j = raw.find(second, start, i + len(second) if i >= 0 else stop)
    ends = [k + len(sep) for k, sep in ((i, first), (j, second)) if k >= 0]
    return min(ends) if ends else -1


def _opaque_block(block: bytes, *, top: bool) -> bool:
    """Whether a body under these headers is opaque to the parser: its type is declared and
    is neither multipart/* nor message/* (the top level may rely on the text/plain default;
    a part may not: inside multipart/digest the default is message/rfc822)."""
    lower = block.lower()
    types = []
    at = lower.find(b"content-type:")
    while at >= 0:
        if at == 0 or lower[at - 1] == 10:  # at the start of a line: a header field
            m = _TYPE_VALUE.match(lower, at + 13)
            types.append(m.group(1) if m else b"")
        at = lower.find(b"content-type:", at + 13)
    if not types:
        return top
    return all(t and not t.startswith((b"multipart/", b"message/")) for t in types)


def _restore_bodies(msg: Message, elided: dict[str, str]) -> bool:
    """Put the elided bodies back; False unless every stand-in came back exactly once."""
    found = 0
    stack = [msg]
    while stack:
        part = stack.pop()
        payload = _raw(part)
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
        elif isinstance(payload, str):
            restored, count = _put_back(payload, elided)
            if count:
                part.set_payload(restored)
                found += count
        for name in ("preamble", "epilogue"):
            text = getattr(part, name, None)
            if isinstance(text, str):
                restored, count = _put_back(text, elided)
                setattr(part, name, restored)
                found += count
    return found == len(elided)


def _put_back(text: str, elided: dict[str, str]) -> tuple[str, int]:
    if text in elided:  # the usual case: the whole payload is one stand-in
        return elided[text], 1
    count = 0
    if "maild-elided-" in text:
        for key, body in elided.items():
            n = text.count(key)
            if n:
                text, count = text.replace(key, body), count + n
    return text, count


# -- text decoding ------------------------------------------------------------------------------

# Charsets named in mail that Python lacks or that mean a superset in practice (WHATWG).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "",
    "ascii": "", "unknown-8bit": "", "x-unknown": "", "default": "", "unknown": "",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949", "shift_jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874", "tis-620": "cp874",
    "big5": "big5hkscs", "utf8": "utf-8",
}
# Codecs that are no mail charset and are slow or strange on hostile input (punycode is
# quadratic): treated as unknown.
_REFUSED_CODECS = frozenset({"punycode", "idna", "undefined", "unicode-escape",
                             "raw-unicode-escape", "unicode_escape", "raw_unicode_escape"})
_SAFE_CODECS = frozenset({"utf-8", "cp1252", "ascii", "latin-1", "iso8859-15", "cp1250"})
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@lru_cache(maxsize=256)
def _codec(charset: str | None) -> str:
    """The Python codec for a charset name, "" when unknown (then: utf-8, else cp1252)."""
    name = (charset or "").strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name or len(name) > 40:
        return ""
    try:
        codec = codecs.lookup(name).name
        b"".decode(codec)  # rejects bytes-to-bytes codecs such as base64 and rot13
    except (LookupError, ValueError):
        return ""
    return "" if codec in _REFUSED_CODECS else codec


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Text of `data` in `charset`; never raises, never returns lone surrogates."""
    codec = _codec(charset)
    if not codec:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, ValueError, LookupError):
        return data.decode("utf-8", "replace")
    if codec not in _SAFE_CODECS and _SURROGATES.search(text):  # utf-7 can produce them
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _from_8bit(value: str) -> str:
    """A header value as text: raw 8-bit bytes (kept by the parser as surrogates) decoded."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return _decode_bytes(data, None)


_FOLD = re.compile(r"[ \t]*[\r\n]+[ \t]*")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unfold(value: str) -> str:
    """One line: folding (CR/LF and the indentation after them) and control chars → a space."""
    if not _HEADER_CONTROL.search(value):
        return value.strip()
    return _HEADER_CONTROL.sub(" ", _FOLD.sub(" ", value)).strip()


_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")


def _decode_words(value: str) -> str:
    """RFC 2047: encoded-words decoded; the space between two of them dropped; adjacent words
    in one charset joined before decoding (mailers split multi-byte characters across them);
    a word that does not decode is kept as it was written."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []  # decoded bytes of adjacent words in `charset`
    charset, after_word, pos = "", False, 0
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        data = _word_bytes(m.group(2), m.group(3))
        word_charset = m.group(1).split("*", 1)[0]  # RFC 2231: charset*language
        joined = not gap or (after_word and gap.isspace())
        if data is None or not joined or word_charset.lower() != charset.lower():
            out.append(_decode_bytes(b"".join(pending), charset))
            pending = []
            if not joined or data is None:
                out.append(gap)
        if data is None:
            out.append(m.group(0))
        else:
            pending.append(data)
            charset = word_charset
        after_word, pos = data is not None, m.end()
    out.append(_decode_bytes(b"".join(pending), charset))
    out.append(value[pos:])
    return _HEADER_CONTROL.sub(" ", "".join(out))


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        if encoding in "bB":  # a missing padding is common and harmless
            return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _clean_body(text: str) -> str:
    """Body text with "\n" line ends and no NUL or other control characters (tab, form feed
    stay): databases refuse NUL and terminals obey escape sequences."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub("", text)


# -- header values ------------------------------------------------------------------------------

def _first(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


_MSGID_IN_BRACKETS = re.compile(r"<\s*([^<>\s]+)\s*>")
_MSGID = re.compile(r"[^\x00-\x20\x7f<>]+@[^\x00-\x20\x7f<>]+")


def _message_ids(value: str) -> tuple[str, ...]:
    """`<id>` tokens of a Message-ID / In-Reply-To / References value, in order, without
    duplicates; brackets added where a mailer left them out; anything without an @ dropped."""
    tokens = _MSGID_IN_BRACKETS.findall(value) if "<" in value else value.replace(",", " ").split()
    out: dict[str, None] = {}
    for token in tokens:
        if len(token) <= 250 and _MSGID.fullmatch(token):
            out.setdefault(f"<{token}>", None)
    return tuple(out)


def _own_loop(headers: list[tuple[str, str]], message_id: str | None,
              signer: Signer | None) -> bool:
    """Whether a loop mark signed by this installation names this Message-ID."""
    if signer is None or message_id is None:
        return False
    marks = [v for k, v in headers if k == "x-maild-loop"]
    # compare_digest refuses non-ASCII str, and no mark of ours contains any.
    return any(m.isascii() and signer.verify_loop_mark(message_id, m) for m in marks)


# -- addresses ------------------------------------------------------------------------------------

_ADDR_TOKEN = re.compile(
    r"""(?P<qs>"(?:[^"\\]|\\.)*+")"""
    r"""|(?P<comment>\((?:[^()\\]|\\.)*+\))"""
    r"""|(?P<ws>\s++)"""
    r"""|(?P<atom>[^\s"(),.:;<>@\[\]\\]++)"""
    r"""|(?P<special>.)""",
    re.DOTALL,
)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\ud7ff\ue000-\U0010ffff-]"
_LABEL_CHAR = r"[A-Za-z0-9\u00a0-\ud7ff\ue000-\U0010ffff]"
_LABEL = rf"{_LABEL_CHAR}(?:[A-Za-z0-9\u00a0-\ud7ff\ue000-\U0010ffff-]{{0,61}}{_LABEL_CHAR})?"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR_SPEC = re.compile(rf'(?:({_DOT_ATOM})|"({_DOT_ATOM})")@({_LABEL}(?:\.{_LABEL})*)')

_Token = tuple[str, str]  # (kind, text)


@dataclass
class _Item:
    """One list member of an address header, as tokens; `bad` when its structure is broken."""

    tokens: list[_Token] = field(default_factory=list)
    bad: bool = False
    in_group: bool = False


def _address_items(value: str) -> list[_Item]:
    """Split an address header at top-level commas, understanding groups (`name: a, b;`)."""
    items = [_Item()]
    angle, group = 0, False
    for m in _ADDR_TOKEN.finditer(value):
        kind, text = m.lastgroup or "special", m.group()
        item = items[-1]
        if kind == "special" and text in ",;:<>" and not (angle and text in ",;:"):
            if text == "<":
                item.bad |= angle > 0
                angle += 1
            elif text == ">":
                item.bad |= angle == 0
                angle = max(angle - 1, 0)
            elif text == ":":
                item.bad |= group or any(k == "special" and t == "<" for k, t in item.tokens)
                group, item.tokens = True, []  # the group's name is no address
                item.in_group = True
                continue
            else:
                item.bad |= text == ";" and not group
                group = group and text != ";"
                items.append(_Item(in_group=group))
                continue
        item.tokens.append((kind, text))
    items[-1].bad |= angle > 0  # an unclosed group at the end is forgiven, not an unclosed <
    return [i for i in items if any(k not in ("ws", "comment") for k, _ in i.tokens) or i.bad]


def _mailbox(item: _Item) -> Address | None:
    """The address of one list member, or None when it is malformed or ambiguous."""
    if item.bad:
        return None
    tokens = item.tokens
    opens = [i for i, (k, t) in enumerate(tokens) if k == "special" and t == "<"]
    if not opens:
        core = _trim(tokens)
        comments = " ".join(t[1:-1] for k, t in tokens if k == "comment")
        addr = _addr_spec(core)
        return Address(addr=addr, name=_display(comments)) if addr else None
    start = opens[0]
    close = next(i for i in range(start, len(tokens)) if tokens[i] == ("special", ">"))
    if any(k not in ("ws", "comment") for k, _ in tokens[close + 1 :]):
        return None  # text after the <address>: which one was meant?
    addr = _addr_spec(tokens[start + 1 : close])
    if addr is None:
        return None
    phrase = _trim([t for t in tokens[:start] if t[0] != "comment"])
    if all(k in ("atom", "qs", "ws") or t == "." for k, t in phrase):
        return Address(addr=addr, name=_display(_phrase_text(phrase)))
    # `a@b.example <a@b.example>` is common and harmless; any other bare specials are not.
    if "".join(t for k, t in phrase if k != "ws").lower() == addr:
        return Address(addr=addr)
    return None


def _trim(tokens: list[_Token]) -> list[_Token]:
    """Tokens without comments and without whitespace at either end."""
    kept = [t for t in tokens if t[0] != "comment"]
    while kept and kept[0][0] == "ws":
        kept.pop(0)
    while kept and kept[-1][0] == "ws":
        kept.pop()
    return kept


def _addr_spec(tokens: list[_Token]) -> str | None:
    """`local@domain`, lower-cased, when the tokens are exactly that (no spaces, comments,
    routes or domain literals)."""
    if any(k in ("ws", "comment") or (k == "special" and t not in ".@") for k, t in tokens):
        return None
    return _valid_addr("".join(t for _, t in tokens))


def _valid_addr(text: str) -> str | None:
    """`text` lower-cased if it is a plain addr-spec; a domain needs a dot unless localhost."""
    m = _ADDR_SPEC.fullmatch(text)
    if m is None:
        return None
    local, domain = m.group(1) or m.group(2), m.group(3).lower()
    if len(local) > 64 or len(domain) > 253 or ("." not in domain and domain != "localhost"):
        return None
    # RFC 6532 allows UTF-8, but only letters, marks and digits of it: an invisible character
    # (zero-width space, right-to-left override) would make a look-alike of another address.
    if not text.isascii() and any(unicodedata.category(ch)[0] not in "LMN"
                                  for ch in text if ord(ch) > 127):
        return None
    return f"{local}@{domain}".lower()


def _phrase_text(tokens: list[_Token]) -> str:
    parts = []
    for kind, text in tokens:
        if kind == "qs":
            parts.append(re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL))
        else:
            parts.append(" " if kind == "ws" else text)
    return "".join(parts)


def _display(text: str) -> str:
    return " ".join(_decode_words(text).split())


_SPECIALS = r'"(),:;<>@\[\]\\'
# The usual one-mailbox header (`Name <a@b>`, `"Name" <a@b>`, `a@b`), read by one regex with
# exactly the rules of the token parser below, which handles all the rest.
_SIMPLE_MAILBOX = re.compile(
    rf'\s*(?:"((?:[^"\\]|\\.)*+)"|([^{_SPECIALS}]*+))<([^\s{_SPECIALS}]+@[^\s{_SPECIALS}]+)>\s*'
    rf'|\s*([^\s{_SPECIALS}]+@[^\s{_SPECIALS}]+)\s*',
    re.DOTALL)


def _mailboxes(value: str) -> list[tuple[Address | None, bool]]:
    """(address or None when invalid, whether it is a group member) for each list member."""
    m = _SIMPLE_MAILBOX.fullmatch(value)
    if m is None:
        return [(_mailbox(i), i.in_group) for i in _address_items(value)]
    quoted, plain, addr, bare = m.groups()
    valid = _valid_addr(addr or bare)
    if valid is None:
        return [(None, False)]
    name = re.sub(r"\\(.)", r"\1", quoted, flags=re.DOTALL) if quoted is not None else plain
    return [(Address(addr=valid, name=_display(name or "")), False)]


def _sender(raw_headers: list[tuple[str, str]]) -> Address | None:
    """The one mailbox of the one From header; None for anything else."""
    values = [v for k, v in raw_headers if k == "from"]
    if len(values) != 1:
        return None
    found = _mailboxes(values[0])
    if len(found) != 1 or found[0][1]:
        return None
    return found[0][0]


def _address_list(raw_headers: list[tuple[str, str]], name: str
                  ) -> tuple[tuple[Address, ...], int]:
    """The valid, distinct addresses of every `name` header, and how many members there were."""
    members = [a for k, v in raw_headers if k == name for a, _ in _mailboxes(v)]
    found: dict[str, Address] = {}
    for address in members:
        if address is not None:
            found.setdefault(address.addr, address)
    return tuple(found.values()), len(members)


# -- the MIME tree ---------------------------------------------------------------------------

_BODY_TYPES = ("text/plain", "text/html")


@dataclass
class _Body:
    """What the walk found: the body parts, and the attachment parts as (part, content type,
    the name it gives itself)."""

    text_part: Message | None = None
    html_part: Message | None = None
    files: list[tuple[Message, str, str | None]] = field(default_factory=list)
    parts: int = 0


def _walk(msg: Message, limits: LimitSettings, started: float) -> _Body:
    """Find the body parts and the attachments, counting parts and depth on the way.

    Iterative, so no nesting the parser accepted can exhaust the stack here. Parts inside an
    attached mail (message/rfc822) are counted but belong to that attachment.
    """
    body = _Body()
    stack: list[tuple[Message, int, str, bool]] = [(msg, 0, "", False)]
    while stack:
        part, depth, parent, inside = stack.pop()
        body.parts += 1
        _check_part(part, depth, body.parts, limits, is_top=part is msg)
        if body.parts % 32 == 0:
            _check_time(started, limits)
        ctype = part.get_content_type()
        payload = _raw(part)
        if isinstance(payload, list):
            if ctype.startswith("message/") and part is not msg and not inside:
                body.files.append((part, ctype, _raw_filename(part)))
                inside = True
            stack.extend((child, depth + 1, ctype, inside)
                         for child in reversed(payload) if isinstance(child, Message))
        elif not inside:
            _leaf(body, part, ctype, parent)
    return body


def _check_part(part: Message, depth: int, count: int, limits: LimitSettings, *,
                is_top: bool) -> None:
    if depth > limits.max_mime_depth:
        raise _exceeded(depth, "levels of MIME nesting", limits.max_mime_depth,
                        "max_mime_depth")
    if count > limits.max_mime_parts:
        raise _exceeded(count, "MIME parts", limits.max_mime_parts, "max_mime_parts")
    if is_top:
        return  # checked on the raw bytes already
    if len(part) > limits.max_headers:
        raise _exceeded(len(part), "header lines in a MIME part", limits.max_headers,
                        "max_headers")
    size = sum(len(k) + len(str(v)) + 2 for k, v in part.raw_items())
    if size > limits.max_header_bytes:
        raise _exceeded(size, "bytes of header lines in a MIME part", limits.max_header_bytes,
                        "max_header_bytes")


def _leaf(body: _Body, part: Message, ctype: str, parent: str) -> None:
    """A part without children: the text body, the HTML body, or an attachment."""
    filename = _raw_filename(part)
    # A multipart without a boundary could not be split; the parser left it as text.
    as_type = "text/plain" if ctype.startswith("multipart/") else ctype
    if filename is None and part.get_content_disposition() != "attachment" \
            and as_type in _BODY_TYPES:
        if as_type == "text/plain" and body.text_part is None:
            body.text_part = part
            return
        if as_type == "text/html" and body.html_part is None:
            body.html_part = part
            return
        if parent == "multipart/alternative":
            return  # one more rendering of a body we already have
    body.files.append((part, ctype, filename))


def _attachments(body: _Body, limits: LimitSettings) -> tuple[Attachment, ...]:
    """The files, decoded once (after the walk: an attached mail is only written out once all
    its parts passed the limits)."""
    found: list[Attachment] = []
    for part, ctype, filename in body.files:
        data = _attachment_bytes(part)
        if not data and filename is None:
            continue  # an empty part without a name carries nothing
        name = _display_filename(filename, len(found) + 1, ctype)
        if len(data) > limits.max_attachment_size:
            raise _exceeded(f"attachment {name!r} of {len(data)}", "bytes",
                            limits.max_attachment_size, "max_attachment_size")
        found.append(Attachment(filename=name, content_type=ctype, data=data))
    return tuple(found)


class _AsSent(Compat32):
    """Writes an attached mail back with its headers as they came, CRLF line ends.

    compat32 would refold every header through email.header.Header, which is slow on long
    values and raises HeaderParseError on values that look like they hide another header.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


_AS_SENT = _AsSent(linesep="\r\n")


def _attachment_bytes(part: Message) -> bytes:
    payload = _raw(part)
    if isinstance(payload, list):  # an attached mail, or the blocks of a delivery-status
        return b"".join(_flatten(m) for m in payload if isinstance(m, Message))
    return _decoded(part, payload)


def _flatten(msg: Message) -> bytes:
    try:
        return msg.as_bytes(policy=_AS_SENT)
    except (UnicodeError, LookupError, ValueError, TypeError, MessageError):
        # The generator trips over some broken structures (a multipart left as text with
        # 8-bit bytes): keep the headers and the text as they came.
        head = b"".join(_AS_SENT.fold_binary(k, str(v)) for k, v in msg.raw_items())
        text = _raw(msg)
        body = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
        return head + b"\r\n" + body


def _decoded(part: Message, payload: object) -> bytes:
    """The payload with its transfer encoding undone.

    base64 and quoted-printable are decoded here in one C call: the stdlib first copies,
    splits and re-joins the lines and runs a validating regex over them (5× slower), and it
    leaves "base64 " with a stray space undecoded. The rest goes through the stdlib.
    """
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable") and isinstance(payload, str):
        try:
            data = payload.encode("ascii", "surrogateescape")  # 8-bit bytes as they came
        except UnicodeEncodeError:
            data = payload.encode("utf-8", "replace")
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
        for padding in (b"", b"=="):  # "==" repairs a missing padding, as the stdlib does
            try:
                return binascii.a2b_base64(data + padding)
            except binascii.Error:
                continue
        return data  # not decodable at all: the stdlib also hands back the encoded text
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _raw_filename(part: Message) -> str | None:
    """The name a part gives itself (RFC 2231 decoded by the stdlib), or None."""
    if "content-disposition" not in part \
            and "name" not in str(part.get("content-type", "")).lower():
        return None  # no parameter to look at: skip parsing them (most body parts)
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError, TypeError, IndexError):
        return None  # a parameter the stdlib cannot read (e.g. an absurd RFC 2231 index)
    return name if name and name.strip() else None


_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "text/csv": ".csv",
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
    "application/pdf": ".pdf", "application/zip": ".zip", "message/rfc822": ".eml",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}


def _display_filename(raw: str | None, index: int, ctype: str) -> str:
    """A name fit to show: decoded, without directories or control/format characters."""
    name = " ".join(_decode_words(_from_8bit(raw)).split()) if raw else ""  # tabs, folding
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = name.strip()
    if name in ("", ".", ".."):
        return f"attachment-{index}{_EXTENSIONS.get(ctype, '.bin')}"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = f".{ext}" if dot and stem and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME - len(keep)] + keep
    return name


def _part_text(part: Message) -> str:
    raw = _decoded(part, _raw(part))
    return _clean_body(_decode_bytes(raw, part.get_content_charset()))


def _body_text(body: _Body) -> tuple[str, str | None]:
    """(readable text, sanitised HTML or None): the text part, else text made from the HTML
    (also when the text part is blank, as some mailers send beside a real HTML body)."""
    html_source = _part_text(body.html_part) if body.html_part is not None else None
    html = sanitize_html(html_source) if html_source is not None else None
    text = _part_text(body.text_part) if body.text_part is not None else ""
    if html_source is not None and not text.strip():
        text = html_to_text(html_source)
    return text, html


# -- delivery reports ---------------------------------------------------------------------------

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                   "message/global-headers", "message/rfc822-headers")
# An enhanced status code (RFC 3463), not the start of an IP address such as 5.9.100.1.
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_FIELD = re.compile(r"^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.MULTILINE)
_MSGID_FIELD = re.compile(r"^[ \t]*message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
                          re.IGNORECASE | re.MULTILINE)


def _report(msg: Message, sender: Address | None, raw_headers: list[tuple[str, str]],
            subject: str, text: str) -> DeliveryReport | None:
    """The delivery report of a DSN (RFC 3464) or of a common non-standard bounce."""
    children = [c for c in _children(msg) if isinstance(c, Message)]
    if msg.get_content_type() == "multipart/report":
        status = next((c for c in children if c.get_content_type() in _DSN_TYPES), None)
        if status is not None:
            return _dsn(_dsn_blocks(status), _original_id(children))
    if not _from_machine(sender, raw_headers):
        return None
    return _plain_bounce(subject, text, _original_id(children))


def _children(msg: Message) -> list[Any]:
    payload = _raw(msg)
    return payload if isinstance(payload, list) else []


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part (the first is about the whole message)."""
    payload = _raw(part)
    if not isinstance(payload, list):
        return _text_blocks(_part_text(part))
    blocks: list[dict[str, str]] = []
    for block in payload:
        if isinstance(block, Message):
            fields: dict[str, str] = {}
            for name, value in block.raw_items():
                fields.setdefault(name.lower(), _unfold(_from_8bit(str(value))))
            blocks.append(fields)
            rest = _raw(block)
            if isinstance(rest, str) and rest.strip():  # global-delivery-status: one message
                blocks.extend(_text_blocks(rest))
    return blocks


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        for m in _FIELD.finditer(chunk):
            fields.setdefault(m.group(1).lower(), _unfold(m.group(2)))
        if fields:
            blocks.append(fields)
    return blocks


def _dsn(blocks: list[dict[str, str]], original: str | None) -> DeliveryReport:
    """Failed recipients, else delayed ones (a temporary report); success reports list none."""
    failed: list[tuple[str, str, str]] = []
    delayed: list[tuple[str, str, str]] = []
    first_status = ""
    for fields in blocks:
        # The Original-Recipient is the address we wrote; Final-Recipient may be an alias.
        rcpt = _dsn_address(fields.get("original-recipient", "")) \
            or _dsn_address(fields.get("final-recipient", ""))
        if rcpt is None:
            continue
        action = fields.get("action", "").lower()
        m = _STATUS.search(fields.get("status", "")) or _STATUS.search(
            fields.get("diagnostic-code", ""))
        status = m.group() if m else ""
        first_status = first_status or status
        diagnostic = fields.get("diagnostic-code", "").partition(";")[2].strip() \
            or fields.get("diagnostic-code", "")
        entry = (rcpt, status, diagnostic[:1000])
        if action == "failed" or status.startswith("5"):
            failed.append(entry)
        elif action == "delayed" or status.startswith("4"):
            delayed.append(entry)
    chosen = failed or delayed
    return DeliveryReport(
        recipients=tuple(dict.fromkeys(r for r, _, _ in chosen)),
        status=chosen[0][1] if chosen else first_status,
        diagnostic=chosen[0][2] if chosen else "",
        original_message_id=original, permanent=bool(failed))


def _dsn_address(value: str) -> str | None:
    """`rfc822; alice@example.org` → alice@example.org."""
    addr = value.partition(";")[2] if ";" in value else value
    addr = addr.strip().strip("<>").strip().lower()
    return addr if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", addr) else None


def _original_id(children: list[Message]) -> str | None:
    """The Message-ID of the returned mail, from its attached copy or headers."""
    for child in children:
        ctype = child.get_content_type()
        if ctype not in _ORIGINAL_TYPES:
            continue
        inner = _children(child)
        if inner and isinstance(inner[0], Message):
            value = next((str(v) for k, v in inner[0].raw_items() if k.lower() == "message-id"),
                         "")
        else:
            m = _MSGID_FIELD.search(_part_text(child))
            value = m.group(1) if m else ""
        ids = _message_ids(_unfold(value))
        if ids:
            return ids[0]
    return None


# The first lines of the bounces common MTAs send without a DSN, and their subjects.
_BOUNCE_TEXT = re.compile(
    r"This is the qmail-send program|I'm afraid I wasn't able to deliver your message"
    r"|This message was created automatically by mail delivery software"
    r"|A message that you sent could not be delivered|The following address\(es\) failed"
    r"|This is the mail system at host|I'm sorry to have to inform you that your message"
    r"|The following addresses had permanent fatal errors|Transcript of session follows"
    r"|Delivery has failed to these recipients|Your message did not reach some or all"
    r"|The following recipient\(s\) cannot be reached",
    re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"\s*(?:Undeliverable|Undelivered Mail Returned to Sender|Returned mail"
    r"|Mail delivery failed|Delivery Status Notification \(Failure\)|failure notice"
    r"|Delivery failure|Undeliverable mail|Nondeliverable mail)", re.IGNORECASE)
# Where the bounce stops talking and the copy of the returned mail begins.
_BOUNCE_END = re.compile(
    r"^[ \t]*(?:--- Below this line is a copy of the message|------ This is a copy of the"
    r"|-+ ?(?:Original|Returned) message|-+ Transcript of session follows"
    r"|Original message headers:|-+ ?The header of the original message)",
    re.IGNORECASE | re.MULTILINE)
_RECIPIENT_LINE = re.compile(
    r"^[ \t]*<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?"
    r"(?=[:\s(<]|$)", re.MULTILINE)
_TEMPORARY = re.compile(r"has not yet been delivered|will (?:continue|keep) trying"
                        r"|temporar(?:y|ily) (?:error|failure|problem)|\bdelayed\b",
                        re.IGNORECASE)
_SMTP_REPLY = re.compile(r"\b[45]\d\d\b")
_MACHINE_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "mailer_daemon"})


def _from_machine(sender: Address | None, raw_headers: list[tuple[str, str]]) -> bool:
    """Sent by a mail system: MAILER-DAEMON / postmaster / Exchange, or a null return path."""
    if _first(raw_headers, "return-path").strip() == "<>":
        return True
    if sender is not None:
        local = sender.addr.rpartition("@")[0]
        return local in _MACHINE_LOCAL_PARTS or local.startswith("microsoftexchange")
    return bool(re.search(r"mailer-daemon|postmaster", _first(raw_headers, "from"),
                          re.IGNORECASE))


def _plain_bounce(subject: str, text: str, original: str | None) -> DeliveryReport | None:
    """qmail, Exim, old Postfix/Sendmail and Exchange bounces: recipients from the lines that
    start with an address, between the bounce's first words and the returned copy."""
    opening = _BOUNCE_TEXT.search(text, 0, 20_000)
    if opening is None and not _BOUNCE_SUBJECT.match(subject):
        return None
    start = opening.start() if opening else 0
    end_match = _BOUNCE_END.search(text, start, start + 20_000)
    section = text[start : end_match.start() if end_match else start + 20_000]
    recipients = tuple(dict.fromkeys(m.group(1).lower()
                                     for m in _RECIPIENT_LINE.finditer(section)))[:100]
    status = _STATUS.search(section)
    first_rcpt = _RECIPIENT_LINE.search(section)
    after = section[first_rcpt.end() :] if first_rcpt else section
    lines = [line.strip(" \t:") for line in after.splitlines()[:20] if line.strip(" \t:")]
    # The MTA's reply when one is quoted (Exim, Postfix, Exchange), else its own words (qmail).
    diagnostic = next((line for line in lines if _SMTP_REPLY.search(line)),
                      lines[0] if lines and first_rcpt else "")
    temporary = bool(_TEMPORARY.search(section)) or (status is not None
                                                      and status.group(1) == "4")
    if original is None:
        copy = end_match.start() if end_match else 0
        m = _MSGID_FIELD.search(text, copy, copy + 100_000)
        ids = _message_ids(_unfold(m.group(1))) if m else ()
        original = ids[0] if ids else None
    return DeliveryReport(recipients=recipients, status=status.group() if status else "",
                          diagnostic=diagnostic[:1000], original_message_id=original,
                          permanent=not temporary)
