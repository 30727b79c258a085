"""The SMTP/LMTP listener (aiosmtpd, in our own event loop).

250 is answered only after the raw bytes are committed to the journal; a store failure
before that answers 451 so the sending server retries. Recipients are checked at RCPT time:
a group address or a reply/return-path address of ours, otherwise 550 5.1.1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from maild.domain import Channel, Envelope
from maild.errors import MaildError
from maild.inbound.intake import Intake
from maild.inbound.smtp_data import DataState, read_data
from maild.store.journal import Incoming
from maild.tokens import split_address

log = logging.getLogger("maild.smtp")
MAX_RECIPIENTS = 100


class MailHandler:
    """aiosmtpd handler: recipient checks and journal commit."""

    def __init__(self, intake: Intake, *, accepts: Callable[[str], bool],
                 channel: Channel) -> None:
        self.intake = intake
        self.accepts = accepts
        self.channel = channel

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not self.accepts(address):
            log.info("refused recipient %s from %s", address, session.peer)
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
        except MaildError as exc:
            log.error("could not commit mail from %s: %s", env.mail_from, exc)
            return self._status("451 4.3.0 Temporary failure storing the message, try again",
                                len(env.rcpt_tos))
        return self._status(f"250 2.0.0 OK queued as J{jid}", len(env.rcpt_tos))

    def _status(self, line: str, recipients: int) -> str:
        # LMTP answers DATA once per accepted recipient (RFC 2033 §4.2).
        if self.channel is Channel.LMTP:
            return "\r\n".join([line] * max(recipients, 1))
        return line


def _strip(addr: str) -> str:
    return addr.strip().strip("<>")


def recipient_filter(group_addresses: frozenset[str], reply_local: str,
                     reply_domain: str) -> Callable[[str], bool]:
    """A group address, or `reply_local+TOKEN@reply_domain` (the token is checked later)."""

    def accepts(address: str) -> bool:
        addr = _strip(address).lower()
        if addr in group_addresses:
            return True
        return split_address(addr, reply_local, reply_domain) is not None

    return accepts


REFUSALS = {DataState.TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
            DataState.TOO_MUCH: "552 Error: Too much mail data"}  # aiosmtpd's own words


class FastData(SMTP):
    """aiosmtpd's SMTP with DATA read by `read_data` and a leaner `_getaddr`; everything else
    is aiosmtpd's."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4.6's own, less the `typing.Protocol` class it defines on every call
        # (a class creation for each MAIL FROM and RCPT TO: a tenth of the listener's CPU).
        if not arg:
            return "", ""
        try:
            parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
            address, rest = parse(arg)
        except HeaderParseError:
            return None, None
        addr: str = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

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
        refusal = REFUSALS.get(data.state)
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        # decode_data=False: content and original_content are the same bytes.
        self.envelope.content = data.content
        self.envelope.original_content = data.content
        status: Any = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class FastDataLMTP(FastData, LMTP):
    """LMTP (LHLO instead of HELO/EHLO) with the same DATA phase."""


async def start_server(handler: MailHandler, *, host: str, port: int, protocol: str,
                       max_message_size: int, hostname: str) -> asyncio.Server:
    """Serve SMTP or LMTP in the running loop; port 0 picks a free port."""
    loop = asyncio.get_running_loop()
    cls: Any = FastDataLMTP if protocol == "lmtp" else FastData

    def factory() -> SMTP:
        server: SMTP = cls(handler, data_size_limit=max_message_size, enable_SMTPUTF8=True,
                           decode_data=False, hostname=hostname, ident="maild", loop=loop)
        return server

    return await loop.create_server(factory, host=host, port=port)
