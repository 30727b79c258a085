"""The SMTP/LMTP listener (aiosmtpd, in our own event loop).

250 is answered only after the raw bytes are committed to the journal; anything that goes
wrong before that answers 451 4.3.0 so the sending server retries: never a 5xx for our own
fault, never our internals in the reply. Envelope addresses are checked when they are given:
one with a control character, or bytes that are not UTF-8, gets 501 (Postfix's words) and
never reaches the journal's shared commit. Recipients: a group address or a reply/return-path
address of ours, otherwise 550 5.1.1. Sessions are capped, timed out and counted by
`maild.inbound.gate`; lines of mail may be `max_line_length` long.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from maild.domain import Channel, Envelope
from maild.inbound.gate import ConnectionStats, Gate, ListenerLimits, quiet_aiosmtpd
from maild.inbound.intake import Intake
from maild.inbound.smtp_data import DataState, read_data
from maild.supervise import describe
from maild.tokens import split_address
from store.journal import Incoming

log = logging.getLogger("maild.smtp")
MAX_RECIPIENTS = 100
# Never in an address (RFC 5321 4.1.2, RFC 6531 3.3): control characters, and the lone
# surrogates that stand for bytes that were not UTF-8 (aiosmtpd decodes with surrogateescape).
BAD_ADDRESS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
STORE_FAILED = "451 4.3.0 Temporary failure storing the message, try again"


class MailHandler:
    """aiosmtpd handler: recipient checks and journal commit."""

    def __init__(self, intake: Intake, *, accepts: Callable[[str], bool],
                 channel: Channel) -> None:
        self.intake = intake
        self.accepts = accepts
        self.channel = channel

    async def handle_MAIL(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope,
                          address: str, mail_options: list[str]) -> str:
        if BAD_ADDRESS.search(address):
            _note(server, "bad envelope addresses", f"refused sender {address!r}: not UTF-8, "
                  "or a control character")
            return "501 5.1.7 Bad sender address syntax"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if BAD_ADDRESS.search(address):
            _note(server, "bad envelope addresses", f"refused recipient {address!r}: not "
                  "UTF-8, or a control character")
            return "501 5.1.3 Bad recipient address syntax"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not self.accepts(address):
            _note(server, "unknown recipients", f"refused recipient {address!r}: no such "
                  "mailbox here")
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        env = Envelope(mail_from=_strip(envelope.mail_from or ""),
                       rcpt_tos=tuple(envelope.rcpt_tos), channel=self.channel)
        peer = session.peer
        source = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            jid = await self.intake.submit(Incoming(envelope=env, raw=bytes(raw), source=source))
        except Exception as exc:  # whatever it was, the sender keeps the mail and retries
            log.info("answered 451 to mail from %r (%s): %s", env.mail_from, source,
                     describe(exc))  # the intake logs the failure itself
            return self._status(STORE_FAILED, len(env.rcpt_tos))
        return self._status(f"250 2.0.0 OK queued as J{jid}", len(env.rcpt_tos))

    def _status(self, line: str, recipients: int) -> str:
        # LMTP answers DATA once per accepted recipient (RFC 2033 §4.2).
        if self.channel is Channel.LMTP:
            return "\r\n".join([line] * max(recipients, 1))
        return line


def _strip(addr: str) -> str:
    return addr.strip().strip("<>")


def _note(server: SMTP, what: str, detail: str) -> None:
    """A refusal a client may repeat at will: summed up in a flood (see `FloodLog`)."""
    if isinstance(server, FastData):
        server.note(what, detail)
    else:
        log.info("%s (%s)", detail, server.session.peer if server.session else "?")


def recipient_filter(group_addresses: frozenset[str], reply_local: str,
                     reply_domain: str) -> Callable[[str], bool]:
    """A group address, or `reply_local+TOKEN@reply_domain` (the token is checked later)."""

    def accepts(address: str) -> bool:
        addr = _strip(address).lower()
        if addr in group_addresses:
            return True
        return split_address(addr, reply_local, reply_domain) is not None

    return accepts


TOO_MUCH = "552 Error: Too much mail data"  # aiosmtpd's own words


class FastData(SMTP):
    """aiosmtpd's SMTP with DATA read by `read_data`, and the listener's limits: admission by
    the `gate`, idle timeouts (`timeout=` between commands, as aiosmtpd has it; `data_timeout`
    of silence within DATA), `max_line_length` for lines of mail (None: aiosmtpd's 998), and
    no exception text in any reply. Everything else is aiosmtpd's.

    `smtp_DATA` is aiosmtpd 1.4.6's with its private `_reader`, `_set_post_data_state` and
    `_call_handler_hook`: kept because with aiosmtpd's line-by-line DATA the listener spends
    46 % more CPU per mail and end-to-end ingest is 12–37 % slower (benchmarks/ingest.py,
    3 alternating A/B pairs); fenced by
    the aiosmtpd pin in pyproject.toml and tests/inbound/test_fastdata_aiosmtpd.py, which
    runs aiosmtpd's own SMTP, LMTP and smuggling tests against this class."""

    def __init__(self, handler: Any, *, gate: Gate | None = None,
                 data_timeout: float | None = None, max_line_length: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._gate = gate
        self._ip = ""
        self._admitted = False
        self._data_timeout = data_timeout or self._timeout_duration
        self._max_line = 998 if max_line_length is None else max_line_length
        # As sent: CRLF, and the dot a client puts before a line that starts with one.
        self._data_line_limit = self._max_line + 3
        self._in_data = False
        self._data_seen = 0.0

    # -- admission and timeouts ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._gate is not None and self.transport is None:  # not the STARTTLS re-entry
            peer = transport.get_extra_info("peername")
            self._ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            refusal = self._gate.enter(self._ip)
            if refusal is not None:  # the 421 is the greeting; no session is made
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal)
                transport.close()
                return
            self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is None:  # refused at the door
            return
        if self._admitted and self._gate is not None:
            self._admitted = False
            self._gate.leave(self._ip)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        if self._in_data:  # the data timeout counts from the last block received
            left = self._data_seen + self._data_timeout - self.loop.time()
            if left > 0:
                self._reset_timeout(left)
                return
        if self._gate is not None:
            self._gate.timed_out(self._ip, self._in_data)
        if self.transport is not None:
            assert isinstance(self.transport, asyncio.WriteTransport)
            name = self.hostname.encode("ascii", "replace")
            self.transport.write(b"421 4.4.2 %s Error: timeout exceeded\r\n" % name)
            self.transport.close()

    def note(self, what: str, detail: str) -> None:
        if self._gate is not None:
            self._gate.flood.note(what, self._ip, detail)
        else:
            log.info("%s (%s)", detail, self.session.peer if self.session else "?")

    def data_received(self, data: bytes) -> None:
        self._data_seen = self.loop.time()  # for the data timeout: silence, not slowness
        super().data_received(data)

    async def _handle_client(self) -> None:
        try:
            await super()._handle_client()
        except ConnectionError:  # the client went away: nothing to answer, no traceback
            pass

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's own answers "500 Error: (Type) message": a permanent failure for a fault
        # of ours, and our internals in the reply.
        if self._gate is not None:
            self._gate.flood.note("internal errors", self._ip, "internal error in an SMTP "
                                  f"session: {describe(error)}", level=logging.ERROR,
                                  exc_info=error)
        else:
            log.error("internal error in an SMTP session: %s", describe(error), exc_info=error)
        return "451 4.3.0 Local error in processing, try again later"

    # -- envelope and data ---------------------------------------------------------------

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
        self._in_data, self._data_seen = True, self.loop.time()
        self._reset_timeout(self._data_timeout)
        try:
            data = await read_data(self._reader, size_limit=self.data_size_limit,
                                   line_limit=self._data_line_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection was reset during DATA
            raise
        finally:
            self._in_data = False
        self._reset_timeout()  # our answer, then the next command: the command timeout
        if data.state is not DataState.NOMINAL:
            await self.push(TOO_MUCH if data.state is DataState.TOO_MUCH
                            else f"500 5.5.2 Line too long (max {self._max_line} octets)")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        # decode_data=False: content and original_content are the same bytes.
        self.envelope.content = data.content
        self.envelope.original_content = data.content
        try:
            status: Any = await self._call_handler_hook("DATA")
        finally:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class FastDataLMTP(FastData, LMTP):
    """LMTP (LHLO instead of HELO/EHLO) with the same DATA phase."""


class _Refuse(asyncio.Protocol):
    """A connection that arrives while every session is taken: 421 and closed, without the
    cost of a session (aiosmtpd's is ~0.2 ms of CPU to make)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        peer = transport.get_extra_info("peername")
        transport.write(self.gate.refuse_early(
            str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)))
        transport.close()


async def start_server(handler: MailHandler, *, host: str, port: int, protocol: str,
                       max_message_size: int, hostname: str,
                       limits: ListenerLimits | None = None,
                       stats: ConnectionStats | None = None) -> asyncio.Server:
    """Serve SMTP or LMTP in the running loop; port 0 picks a free port. `stats` (for
    /metrics) is kept up to date with the sessions open, refused and timed out."""
    loop = asyncio.get_running_loop()
    cls: Any = FastDataLMTP if protocol == "lmtp" else FastData
    limits = limits or ListenerLimits()
    gate = Gate(limits, stats if stats is not None else ConnectionStats(), hostname)
    quiet_aiosmtpd(gate.flood)

    def factory() -> asyncio.Protocol:
        if gate.full:
            return _Refuse(gate)
        server: SMTP = cls(handler, data_size_limit=max_message_size, enable_SMTPUTF8=True,
                           decode_data=False, hostname=hostname, ident="maild", loop=loop,
                           timeout=limits.command_timeout, gate=gate,
                           data_timeout=limits.data_timeout,
                           max_line_length=limits.max_line_length)
        return server

    return await loop.create_server(factory, host=host, port=port)
