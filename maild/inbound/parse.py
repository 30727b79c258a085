"""Inbound parsing: raw RFC 5322 bytes → `Parsed`, the first step after the journal.

The one module that imports mail-parser. The message object comes from the same stdlib parse
mail-parser's `MailParser.from_bytes` runs (`email` with the compat32 policy), fed here in
chunks so the parse time limit is checked while parsing; `MailParser` itself is not built,
because its forensic extras (received chains, address diagnostics, base64 re-encoding of
every attachment) double the cost of a parse and we use none of them. mail-parser's RFC 5322
date parser reads the Date header.

Everything a sender controls is bounded (`ParseLimits`): header count and size and the MIME
part count are estimated from the raw bytes before the parse, the rest is counted during it.
Bad input ends in `ParseError` (its subclass `LimitExceeded` for a passed cap), never in any
other exception. Only the display values are decoded; nothing here trusts a decoded value for
structure: addresses are parsed strictly, and an ambiguous From gives no sender at all.

This module owns the entry point, the limits, feeding the parser and the walk over the MIME
tree; the steps it calls live beside it: `decode` (charsets, encoded words, header values),
`addresses` (From / To / Cc), `elide` (big bodies cut out of the parse and put back),
`payloads` (part payloads, attachment bytes and names) and `reports` (bounces).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.message import Message
from typing import Any, Protocol

import mailparser.dates

from maild.domain import Attachment, Parsed
from maild.errors import LimitExceeded, MaildError, ParseError
from maild.inbound.addresses import _address_list, _sender
from maild.inbound.decode import _decode_words, _first, _from_8bit, _message_ids, _unfold
from maild.inbound.elide import _blank_line_end, _elide_bodies, _restore_bodies
from maild.inbound.payloads import (
    _attachment_bytes,
    _display_filename,
    _part_text,
    _raw,
    _raw_filename,
)
from maild.inbound.reports import _report
from maild.inbound.sanitize import html_to_text, sanitize_html
from maild.tokens import Signer

log = logging.getLogger(__name__)

FEED_CHUNK = 64 * 1024  # bytes fed to the parser between two checks of the time limit
MAX_PARAMS_CHARS = 8 * 1024  # a Content-Type / -Disposition longer than this has no params
MAX_PARAMS = 100  # … and so has one with more ";" than this (see _BoundedMessage)


class ParseLimits(Protocol):
    """The caps a sender's mail is held to (`[limits]`'s `LimitSettings` has them): inbound
    declares what it reads, the settings' type supplies it."""

    @property
    def max_headers(self) -> int: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_mime_depth(self) -> int: ...
    @property
    def max_mime_parts(self) -> int: ...
    @property
    def max_addresses(self) -> int: ...
    @property
    def max_attachment_size(self) -> int: ...
    @property
    def parse_seconds(self) -> float: ...


def parse_mail(raw: bytes, *, limits: ParseLimits, signer: Signer | None = None) -> Parsed:
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


def _parse(raw: bytes, limits: ParseLimits, signer: Signer | None, started: float) -> Parsed:
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


def _own_loop(headers: list[tuple[str, str]], message_id: str | None,
              signer: Signer | None) -> bool:
    """Whether a loop mark signed by this installation names this Message-ID."""
    if signer is None or message_id is None:
        return False
    marks = [v for k, v in headers if k == "x-maild-loop"]
    # compare_digest refuses non-ASCII str, and no mark of ours contains any.
    return any(m.isascii() and signer.verify_loop_mark(message_id, m) for m in marks)


# -- limits ------------------------------------------------------------------------------------

def _exceeded(value: object, what: str, limit: object, key: str) -> LimitExceeded:
    return LimitExceeded(f"{value} {what}, limit {limit} ([limits] {key})")


def _check_time(started: float, limits: ParseLimits) -> None:
    elapsed = time.monotonic() - started
    if elapsed > limits.parse_seconds:
        raise LimitExceeded(f"parsing took {elapsed:.1f} s, limit {limits.parse_seconds:g} s"
                            " ([limits] parse_seconds)")


def _prescan(raw: bytes, limits: ParseLimits) -> None:
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


# -- feeding the parser ---------------------------------------------------------------------

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


def _parse_bytes(raw: bytes, limits: ParseLimits, started: float) -> Message:
    if not raw or raw.isspace():
        raise ParseError("empty message")
    elided: dict[str, str] = {}
    source = _elide_bodies(raw, elided)
    # The elided bodies hold no "--" line and no header: the cheap checks are as good on the
    # short stand-in version, and much cheaper.
    _prescan(source, limits)
    msg = _feed(source, limits, started)
    if elided and not _restore_bodies(msg, elided):
        msg = _feed(raw, limits, started)  # a stand-in did not land in a body: parse as is
    if len(msg) == 0:  # compat32: len() is the number of header fields
        raise ParseError("no header fields: this is not a mail")
    return msg


def _feed(raw: bytes, limits: ParseLimits, started: float) -> Message:
    parser = BytesFeedParser(_factory=_BoundedMessage)  # compat32, as mail-parser parses
    for start in range(0, len(raw), FEED_CHUNK):
        parser.feed(raw[start : start + FEED_CHUNK])
        _check_time(started, limits)
    return parser.close()


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


def _walk(msg: Message, limits: ParseLimits, started: float) -> _Body:
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


def _check_part(part: Message, depth: int, count: int, limits: ParseLimits, *,
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


def _attachments(body: _Body, limits: ParseLimits) -> tuple[Attachment, ...]:
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


def _body_text(body: _Body) -> tuple[str, str | None]:
    """(readable text, sanitised HTML or None): the text part, else text made from the HTML
    (also when the text part is blank, as some mailers send beside a real HTML body).

    The HTML is sanitised and kept only when it is the body, not when it is the alternative
    of a text part: nothing shows it then, bleach is the costliest step of ingest (~7 ms a
    body), and the raw mail in the journal still has it."""
    text = _part_text(body.text_part) if body.text_part is not None else ""
    if body.html_part is None or text.strip():
        return text, None
    html_source = _part_text(body.html_part)
    return html_to_text(html_source), sanitize_html(html_source)
