"""Big bodies past the line-by-line parser: the stand-in trick that makes parsing a large
mail cheap, used by `inbound.parse` before and after it feeds the stdlib parser.

The stdlib parser handles every line of a mail in Python (~2 µs a line): a 150 KB
attachment costs 5 ms, 25 MB of short lines seconds. Yet the lines of a body whose headers
declare a non-multipart, non-message type are opaque to it: it only joins them into the
payload. So such bodies are cut out of the bytes before the parse, each replaced by a
one-line stand-in with a per-parse random nonce, and put back into the payloads after it:
the same Message, for a fraction of the cost. A body is only cut out when nothing in it can
end it: no line in it starts with "--" (a boundary) and it ends right before a "--" line.
If a stand-in does not come back from a payload, preamble or epilogue exactly once (the
parser saw the structure differently), the original bytes are parsed instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from email.message import Message

from maild.inbound.payloads import _raw

ELIDE_FROM = 16 * 1024  # mails shorter than this are parsed as they are
ELIDE_MIN = 4 * 1024  # bodies shorter than this stay in
MAX_BLOCK = 64 * 1024  # a header block longer than this ends the search for bodies
_STANDIN = "maild-elided-{nonce}-{index:06d}-end"
_TYPE_VALUE = re.compile(rb"[ \t\r\n]*([^;\s]*)")  # always matches


def _elide_bodies(raw: bytes, elided: dict[str, str]) -> bytes:
    """`raw` with its opaque bodies replaced by stand-ins, recorded in `elided` (stand-in →
    body); `raw` itself when it is short or has no body worth eliding."""
    if len(raw) < ELIDE_FROM:
        return raw
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

