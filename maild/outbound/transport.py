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
    disk, power cut or not."""

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
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TransientDeliveryError(f"maildir {self.path}: {exc}") from exc

    async def close(self) -> None:
        return None


class SmtpRelay:
    """A small pool of persistent connections to the relay, reconnected on failure."""

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 size: int = 4, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.tls else 25)
        self.user, self.password, self.timeout = user, password, timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls,
                                 start_tls=False if self.tls else None, timeout=self.timeout)
        await client.connect()
        if self.user:
            await client.login(self.user, self.password or "")
        return client

    async def send(self, mail: Composed) -> None:
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                await client.sendmail(mail.envelope_from, list(mail.recipients), mail.message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                first = exc.recipients[0] if exc.recipients else None
                code = first.code if first is not None else 550
                text = first.message if first is not None else str(exc)
                if 400 <= code < 500:
                    raise TransientDeliveryError(f"{code} {text}") from exc
                raise DeliveryError(f"{code} {text}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                await _quit(client)
                client = None
                if 400 <= exc.code < 500:
                    raise TransientDeliveryError(f"{exc.code} {exc.message}") from exc
                raise DeliveryError(f"{exc.code} {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _quit(client)
                client = None
                raise TransientDeliveryError(f"relay {self.host}:{self.port}: {exc}") from exc
            finally:
                if client is not None:
                    self._idle.put_nowait(client)

    async def close(self) -> None:
        while not self._idle.empty():
            await _quit(self._idle.get_nowait())


async def _quit(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
