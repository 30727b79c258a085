"""The IMAP client maild speaks through: aioimaplib behind the few commands the reader uses.

The one module that imports aioimaplib. It knows the protocol (greeting, STARTTLS, LOGIN or
XOAUTH2, SELECT, UID SEARCH/FETCH/STORE/MOVE/COPY/EXPUNGE, IDLE, LOGOUT) and how to read
the replies; what to read and when is the reader's (`imap_sync`, `imap`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioimaplib import (
    IMAP4,
    IMAP4_SSL,
    STOP_WAIT_SERVER_PUSH,
    AioImapException,
    IMAP4ClientProtocol,
    Response,
)

__all__ = ["TRANSPORT_ERRORS", "Fetched", "ImapClient", "ImapError", "Selected",
           "parse_fetch", "uid_set"]


class ImapError(Exception):
    """The server refused something; the message says what (never the password)."""


# What a failing server or network raises (as opposed to a bug of ours).
TRANSPORT_ERRORS = (OSError, TimeoutError, ImapError, AioImapException)

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


@dataclass(frozen=True)
class Selected:
    """What SELECT said of the folder."""

    uidvalidity: int
    top: int | None  # the highest UID the folder may hold now (UIDNEXT - 1), when told


@dataclass(frozen=True)
class Fetched:
    """A UID FETCH's (uid, raw message) pairs, or None and why when it was refused."""

    messages: list[tuple[int, bytes]] | None
    refusal: str = ""


class ImapClient:
    """One logged-in connection."""

    def __init__(self, imap: IMAP4) -> None:
        self._imap = imap

    @classmethod
    async def open(cls, host: str, port: int, *, tls: str, ca_file: Path | None, user: str,
                   secret: Callable[[], str], oauth2: bool, io_seconds: float = 30.0,
                   on_lost: Callable[[Exception | None], None] | None = None) -> ImapClient:
        """Connect and log in; `secret` (which may run a command) is asked in a thread."""
        client = cls(_imap(host, port, tls, ca_file, io_seconds))
        imap = client._imap
        # aioimaplib leaves a command waiting for its timeout when the connection drops;
        # being told at once lets the reader reconnect at once.
        imap.protocol.conn_lost_cb = on_lost
        try:
            await imap.wait_hello_from_server()
            password = await asyncio.to_thread(secret)
            if oauth2:
                reply = await imap.xoauth2(user, password.encode())
            else:
                reply = await imap.login(user, password)
            if reply.result != "OK":
                raise ImapError(f"login as {user} refused: {_text(reply)}")
        except asyncio.CancelledError:  # stopping: no LOGOUT, the socket closed at once
            await client.close(polite=False)
            raise
        except BaseException:
            await client.close()
            raise
        return client

    def has_capability(self, name: str) -> bool:
        return bool(self._imap.has_capability(name))

    async def ensure_folder(self, folder: str) -> None:
        reply = await self._imap.create(folder)  # fails harmlessly when it exists
        if reply.result != "OK" and b"exists" not in b" ".join(map(bytes, reply.lines)):
            raise ImapError(f"cannot create {folder}: {_text(reply)}")

    async def select(self, folder: str) -> Selected:
        reply = _ok(await self._imap.select(folder), f"select {folder}")
        return Selected(uidvalidity=_uidvalidity(reply), top=_top(reply))

    async def search(self, query: str) -> list[int]:
        """UID SEARCH: the UIDs, as the server gave them."""
        reply = _ok(await self._imap.uid_search(query, charset=None), "search")
        return _uids(reply)

    async def fetch(self, uids: list[int]) -> Fetched:
        """UID FETCH of the whole messages, without setting \\Seen."""
        reply = await self._imap.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])")
        if reply.result != "OK":
            return Fetched(None, _text(reply))
        return Fetched(parse_fetch(reply))

    async def flag(self, uids: list[int], flag: str, what: str) -> None:
        _ok(await self._imap.uid("store", uid_set(uids), "+FLAGS.SILENT", f"({flag})"), what)

    async def move(self, uids: list[int], folder: str) -> None:
        _ok(await self._imap.uid("move", uid_set(uids), _quote(folder)), "move")

    async def copy(self, uids: list[int], folder: str) -> None:
        _ok(await self._imap.uid("copy", uid_set(uids), _quote(folder)), "copy")

    async def expunge(self, uids: list[int]) -> None:
        """Expunge these (UIDPLUS), or every \\Deleted message when the server cannot."""
        if self.has_capability("UIDPLUS"):
            _ok(await self._imap.uid("expunge", uid_set(uids)), "expunge")
        else:
            _ok(await self._imap.expunge(), "expunge")

    async def idle(self, seconds: float, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """IDLE until the folder has news, `seconds` pass, or `stop` is set."""
        imap = self._imap
        idle = await imap.idle_start(timeout=seconds)
        stopping = asyncio.ensure_future(stop.wait())
        push: asyncio.Future[Any] | None = None
        try:
            while imap.has_pending_idle():
                push = asyncio.ensure_future(imap.wait_server_push())
                done, _ = await asyncio.wait({push, stopping},
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    break
                lines = push.result()
                if lines == STOP_WAIT_SERVER_PUSH or any(
                        b"EXISTS" in bytes(x) for x in lines):
                    break
        finally:
            stopping.cancel()
            if push is not None:
                push.cancel()
            if lost.is_set():  # no answer will come: waiting for it took 10 s
                idle.cancel()
            else:
                if imap.has_pending_idle():
                    imap.idle_done()
                await asyncio.wait_for(idle, 10)

    async def close(self, *, polite: bool = True) -> None:
        """LOGOUT (when `polite`), then the socket closed whatever happened, even when a
        cancellation comes meanwhile, and a connection still being made abandoned."""
        imap = self._imap
        try:
            if polite:
                if imap.has_pending_idle():
                    imap.idle_done()
                await asyncio.wait_for(imap.logout(), 5)
        except Exception:  # already gone
            pass
        finally:
            connecting = getattr(imap, "_client_task", None)
            if connecting is not None and not connecting.done():
                connecting.cancel()
            transport = getattr(imap.protocol, "transport", None)
            if transport is not None:
                transport.close()


def _imap(host: str, port: int, tls: str, ca_file: Path | None, io_seconds: float) -> IMAP4:
    context = None
    if tls != "none":
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if tls == "implicit":
        return IMAP4_SSL(host, port, ssl_context=context, timeout=io_seconds)
    if tls == "starttls":
        return _StartTls(host, port, ssl_context=context, timeout=io_seconds)
    return IMAP4(host, port, timeout=io_seconds)


def _text(reply: Response) -> str:
    return " ".join(bytes(x).decode(errors="replace") for x in reply.lines)[:300]


def _ok(reply: Response, what: str) -> Response:
    if reply.result != "OK":
        raise ImapError(f"{what}: {_text(reply)}")
    return reply


def uid_set(uids: list[int]) -> str:
    """1,2,3,5 → "1:3,5"."""
    parts: list[str] = []
    for uid in sorted(uids):
        if parts and parts[-1].split(":")[-1] == str(uid - 1):
            parts[-1] = f"{parts[-1].split(':')[0]}:{uid}"
        else:
            parts.append(str(uid))
    return ",".join(parts)


def parse_fetch(reply: Response) -> list[tuple[int, bytes]]:
    """(uid, raw message) from a `UID FETCH … (UID BODY.PEEK[])` reply."""
    out: list[tuple[int, bytes]] = []
    lines = reply.lines
    for i, line in enumerate(lines):
        if isinstance(line, bytearray) and i > 0:
            head = bytes(lines[i - 1])
            m = _FETCH_UID.search(head) or _FETCH_UID.search(
                bytes(lines[i + 1]) if i + 1 < len(lines) else b"")
            if m is not None:
                out.append((int(m.group(1)), bytes(line)))
    return out


def _uids(reply: Response) -> list[int]:
    for line in reply.lines:
        text = bytes(line)
        if text and all(p.isdigit() for p in text.split()):
            return [int(p) for p in text.split()]
    return []


def _uidvalidity(reply: Response) -> int:
    for line in reply.lines:
        m = _UIDVALIDITY.search(bytes(line))
        if m:
            return int(m.group(1))
    raise ImapError("the server gave no UIDVALIDITY for the folder")


def _top(reply: Response) -> int | None:
    for line in reply.lines:
        m = _UIDNEXT.search(bytes(line))
        if m:
            return int(m.group(1)) - 1
    return None


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _StartTls(IMAP4):  # type: ignore[misc]  # aioimaplib ships no type hints
    """IMAP4 upgraded with STARTTLS before aioimaplib's protocol takes the connection
    (aioimaplib has no STARTTLS of its own)."""

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = IMAP4ClientProtocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            self._upgrade(local_loop, host, port, ssl_context or ssl.create_default_context()))

    async def _upgrade(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                       context: ssl.SSLContext) -> None:
        family, kind, proto, _, address = (await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM))[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            greeting = await _line(loop, sock)
            if not greeting.startswith(b"* OK"):
                raise ImapError(f"unexpected greeting {greeting[:80]!r}")
            await loop.sock_sendall(sock, b"M0 STARTTLS\r\n")
            while not (line := await _line(loop, sock)).startswith(b"M0 "):
                pass
            if not line.startswith(b"M0 OK"):
                raise ImapError(f"STARTTLS refused: {line.decode(errors='replace')}")
            # asyncio does the TLS handshake on the socket and hands the protocol the
            # encrypted transport; there is no greeting after STARTTLS, so the protocol is
            # given one to start its state machine (and to ask CAPABILITY again).
            await loop.create_connection(lambda: self.protocol, sock=sock, ssl=context,
                                         server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.protocol.data_received(b"* OK TLS established\r\n")


async def _line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """One line read a byte at a time: nothing past it may be taken before TLS starts."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = await loop.sock_recv(sock, 1)
        if not b:
            raise ImapError("the server closed the connection at STARTTLS")
        out += b
        if len(out) > 8192:
            raise ImapError("an overlong line from the server at STARTTLS")
    return bytes(out)
