"""Where composed mail goes: an SMTP relay (aiosmtplib), a maildir sink, or memory.

One method, `send`; SMTP errors are translated here into DeliveryError (permanent) or
TransientDeliveryError (retry) so nothing above knows aiosmtplib.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib

from maild.errors import DeliveryError, TransientDeliveryError
from maild.outbound.compose import Composed


class TransportUnavailable(TransientDeliveryError):
    """The relay (or the maildir) cannot take any mail now, whichever mail it is: the
    delivery worker treats it as one outage, not as a failure of each notification."""


class Transport(Protocol):
    async def send(self, mail: Composed) -> None: ...
    async def close(self) -> None: ...


@dataclass
class MemoryTransport:
    """The in-memory twin: keeps what was sent, for tests and --dry-run."""

    sent: list[Composed] = field(default_factory=list)

    async def send(self, mail: Composed) -> None:
        self.sent.append(mail)

    async def close(self) -> None:
        return None


class MaildirSink:
    """Writes each mail into a maildir: the embedded default when no relay is configured.

    As the maildir convention asks (and `mailbox.Maildir.add` does not): the file is written
    in tmp/, fsynced, renamed into new/, and new/ is fsynced, so a mail marked sent is on
    disk, power cut or not.

    A mail with UTF-8 headers (`Composed.utf8`, RFC 6532) is written as it is: there is no
    relay to negotiate SMTPUTF8 with, and the readers of a maildir (Dovecot, mutt, Thunderbird)
    read UTF-8 headers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):  # also in a data folder made earlier or by hand
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        self._count = itertools.count()

    async def send(self, mail: Composed) -> None:
        await asyncio.to_thread(self._write, mail)

    def _write(self, mail: Composed) -> None:
        head = (f"Return-Path: <{mail.envelope_from}>\r\n"
                f"Delivered-To: {', '.join(mail.recipients)}\r\n").encode()
        now = time.time()
        name = (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._count)}"
                f".{self._host}")
        tmp, new = self.path / "tmp" / name, self.path / "new" / name
        try:
            with open(tmp, "xb") as fh:
                fh.write(head + mail.message)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, new)
            folder = os.open(new.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:  # full, read-only, gone: no mail can go there now
            tmp.unlink(missing_ok=True)
            raise TransportUnavailable(f"maildir {self.path}: {exc}") from exc

    async def close(self) -> None:
        return None


class SmtpRelay:
    """A small pool of persistent connections to the relay, reconnected on failure.

    Every step has a deadline: connecting and each SMTP command time out after `timeout`
    seconds (aiosmtplib's timeout covers the connect, the greeting and every command), and a
    whole send after four times that, so a relay that hangs is a transient failure, never a
    stuck worker. A mail whose address is not ASCII (`Composed.utf8`) goes with SMTPUTF8
    when the relay offers it, and fails for good (that one mail) when it does not.
    """

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 size: int = 4, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.tls else 25)
        self.user, self.password, self.timeout = user, password, timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)
        self._local_name: str | None = None

    @property
    def where(self) -> str:
        return f"relay {self.host}:{self.port}"

    async def _ehlo_name(self) -> str:
        """Our name for EHLO, looked up once (aiosmtplib would look it up, without a
        deadline, on every connection)."""
        if self._local_name is None:
            try:
                self._local_name = await asyncio.wait_for(asyncio.to_thread(socket.getfqdn),
                                                          self.timeout)
            except TimeoutError:
                self._local_name = socket.gethostname()
        return self._local_name

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls,
                                 start_tls=False if self.tls else None, timeout=self.timeout,
                                 local_hostname=await self._ehlo_name())
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if self.user:
                await client.login(self.user, self.password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            # refused, down, hanging, greeting 4xx/5xx, credentials refused: no mail can go
            raise TransportUnavailable(f"{self.where}: {_say(exc)}") from exc
        except BaseException:
            client.close()
            raise
        return client

    async def send(self, mail: Composed) -> None:
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            if client is not None and not client.is_connected:
                client = None
            try:
                async with asyncio.timeout(self.timeout * 4):
                    if client is not None:
                        try:
                            await self._transaction(client, mail)
                            return
                        except aiosmtplib.SMTPServerDisconnected:
                            client.close()  # it went stale while idle: once more, afresh
                            client = None
                    client = await self._connect()
                    await self._transaction(client, mail)
            except aiosmtplib.SMTPResponseException as exc:  # the relay's answer to this mail
                await _quit(client)
                client = None
                if 400 <= exc.code < 500:
                    raise TransientDeliveryError(f"{exc.code} {exc.message}") from exc
                raise DeliveryError(f"{exc.code} {exc.message}") from exc
            except DeliveryError:
                raise
            except (aiosmtplib.SMTPException, OSError) as exc:  # timeouts are OSErrors too
                if client is not None:
                    client.close()
                    client = None
                raise TransportUnavailable(f"{self.where}: {_say(exc)}") from exc
            except BaseException:
                if client is not None:
                    client.close()
                    client = None
                raise
            finally:
                if client is not None:
                    self._idle.put_nowait(client)

    async def _transaction(self, client: aiosmtplib.SMTP, mail: Composed) -> None:
        options: list[str] = []
        if mail.utf8:
            if not client.supports_extension("smtputf8"):
                raise DeliveryError(
                    f"the relay does not offer SMTPUTF8, which a mail to "
                    f"{', '.join(mail.recipients)} needs (the address is not ASCII)")
            options = ["SMTPUTF8"]
            if client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        try:
            await client.sendmail(mail.envelope_from, list(mail.recipients), mail.message,
                                  mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 550
            text = first.message if first is not None else str(exc)
            if 400 <= code < 500:
                raise TransientDeliveryError(f"{code} {text}") from exc
            raise DeliveryError(f"{code} {text}") from exc
        except (ValueError, UnicodeError) as exc:  # an address aiosmtplib will not write
            raise DeliveryError(f"address not sendable: {exc}") from exc

    async def close(self) -> None:
        """QUIT on every idle connection, all at once and briefly: a relay that hangs
        does not hold up a shutdown."""
        idle = []
        while not self._idle.empty():
            idle.append(self._idle.get_nowait())
        await asyncio.gather(*(_quit(c, seconds=min(self.timeout, QUIT_SECONDS)) for c in idle))


QUIT_SECONDS = 2.0


def _say(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _quit(client: aiosmtplib.SMTP | None, *, seconds: float = QUIT_SECONDS) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await client.quit(timeout=seconds)
    except (aiosmtplib.SMTPException, OSError):
        client.close()
