"""The SMTP DATA phase read in blocks instead of line by line.

aiosmtpd reads DATA one line at a time (an `await readuntil(b"\\r\\n")` and a handful of
checks per line): for the ~250 lines of a typical mail that loop was most of the listener's
CPU. `read_data` finds the end of the data (CRLF "." CRLF, nothing else: a bare LF never ends
it, which is what keeps SMTP smuggling out) with `StreamReader.readuntil(b".\\r\\n")` over
whole buffers, then applies aiosmtpd's rules to the block at once: the size limit (552), the
line-length limit (500), and dot-unstuffing (RFC 5321 §4.5.2). Nothing after the end of the
data is consumed, so pipelined commands stay in the reader.

`FastData` puts it into aiosmtpd's `SMTP`/`LMTP` in place of their `smtp_DATA`; the rest of
that method (status codes, envelope fields, handler hook) is kept as aiosmtpd has it.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax

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
    """
    buf = bytearray()
    tail = b"\r\n"  # the last two bytes read before this chunk: DATA starts at a line start
    state = DataState.NOMINAL
    while True:
        try:
            chunk = await reader.readuntil(END)
            # The end of the data only if this "." starts a line.
            before = chunk[-5:-3] if len(chunk) >= 5 else (tail + chunk[:-3])[-2:]
            done = before == b"\r\n"
        except asyncio.LimitOverrunError as exc:
            # No ".\r\n" within the reader's limit: take what is buffered (the reader keeps
            # the last two bytes, so ".\r\n" is never split between two reads) and go on.
            chunk = await reader.read(exc.consumed)
            if not chunk:  # end of stream (aiosmtpd cancels us first; never spin on it)
                raise ConnectionResetError("connection closed during DATA") from None
            done = False
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
    if _too_long(buf, line_limit):
        return Data(DataState.TOO_LONG, b"")
    # De-transparency: every line that starts with "." loses that dot.
    if buf.startswith(b"."):
        del buf[0]
    return Data(DataState.NOMINAL, bytes(buf.replace(b"\r\n.", b"\r\n")))


class FastData(SMTP):
    """aiosmtpd's SMTP with DATA read by `read_data`; everything else is aiosmtpd's."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # From here to the 354 and from the content on: aiosmtpd 1.4.6's smtp_DATA.
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_data(self._reader, size_limit=self.data_size_limit,
                                   line_limit=self.line_length_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection was reset during DATA
            raise
        if data.state is DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()
            return
        if data.state is DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()
            return
        # decode_data=False: content and original_content are the same bytes.
        self.envelope.content = data.content
        self.envelope.original_content = data.content
        status: Any = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class FastDataLMTP(FastData, LMTP):
    """LMTP (LHLO instead of HELO/EHLO) with the same DATA phase."""
