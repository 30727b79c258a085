"""The SMTP DATA phase read in blocks instead of line by line.

aiosmtpd reads DATA one line at a time (an `await readuntil(b"\\r\\n")` and a handful of
checks per line): for the ~250 lines of a typical mail that loop was most of the listener's
CPU. `read_data` finds the end of the data (CRLF "." CRLF, nothing else: a bare LF never ends
it, which is what keeps SMTP smuggling out) with `StreamReader.readuntil(b".\\r\\n")` over
whole buffers, then applies aiosmtpd's rules to the block at once: the size limit (552), the
line-length limit (500), and dot-unstuffing (RFC 5321 §4.5.2). Nothing after the end of the
data is consumed, so pipelined commands stay in the reader.

`maild.inbound.smtp.FastData` puts it into aiosmtpd's `SMTP`/`LMTP` in place of their
`smtp_DATA`; the rest of that method (status codes, envelope fields, handler hook) is kept as
aiosmtpd has it.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

END = b".\r\n"


class DataState(enum.Enum):
    NOMINAL = enum.auto()
    TOO_LONG = enum.auto()  # a line over the line-length limit: 500
    TOO_MUCH = enum.auto()  # over the size limit: 552


@dataclass(frozen=True)
class Data:
    state: DataState
    content: bytes  # unstuffed; empty unless NOMINAL


def _too_long(block: bytes | bytearray, line_limit: int) -> bool:
    """Whether a CRLF-terminated line of `block` (CRLF included) is over `line_limit`."""
    if len(block) <= line_limit:
        return False
    return max(map(len, block.split(b"\r\n"))) + 2 > line_limit


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                    line_limit: int) -> Data:
    """Read DATA up to and including CRLF "." CRLF; the bytes before it, checked and unstuffed.

    `size_limit` counts the data as sent (before unstuffing, the final "." line excluded), as
    aiosmtpd does. Over it, the rest is read and dropped, never held in memory, and the
    answer is 552 even if a line was also too long (aiosmtpd answers whichever it met first).
    `line_limit` counts a line as sent, CRLF included.
    """
    buf = bytearray()
    tail = b"\r\n"  # the last two bytes read before this chunk: DATA starts at a line start
    state = DataState.NOMINAL
    while True:
        chunk, done = await _next_chunk(reader, tail)
        tail = (tail + chunk)[-2:]
        if done:
            chunk = chunk[:-3]
        if state is DataState.NOMINAL:
            buf += chunk
            if size_limit and len(buf) > size_limit:
                state = DataState.TOO_MUCH
                buf.clear()  # drained from here on, never held
        if done:
            break
    if state is not DataState.NOMINAL:
        return Data(state, b"")
    return _checked(buf, line_limit)


async def _next_chunk(reader: asyncio.StreamReader, tail: bytes) -> tuple[bytes, bool]:
    """The next chunk as read (END included when it is there), and whether it ends the data.
    `tail`: the last two bytes read before it."""
    try:
        chunk = await reader.readuntil(END)
    except asyncio.LimitOverrunError as exc:
        # No ".\r\n" within the reader's limit: take what is buffered (the reader keeps
        # the last two bytes, so ".\r\n" is never split between two reads) and go on.
        chunk = await reader.read(exc.consumed)
        if not chunk:  # end of stream (aiosmtpd cancels us first; never spin on it)
            raise ConnectionResetError("connection closed during DATA") from None
        return chunk, False
    # The end of the data only if this "." starts a line.
    before = chunk[-5:-3] if len(chunk) >= 5 else (tail + chunk[:-3])[-2:]
    return chunk, before == b"\r\n"


def _checked(buf: bytearray, line_limit: int) -> Data:
    """Data within the size limit: the line-length check, then dot-unstuffing."""
    if _too_long(buf, line_limit):
        return Data(DataState.TOO_LONG, b"")
    # De-transparency: every line that starts with "." loses that dot.
    if buf.startswith(b"."):
        del buf[0]
    return Data(DataState.NOMINAL, bytes(buf.replace(b"\r\n.", b"\r\n")))

