"""Mailboxes over IMAP (aioimaplib): at least once into the journal, never twice.

Per mailbox the journal keeps (in `meta`) the UIDVALIDITY and the highest UID committed. A
round: select the folder; finish the after-action (move, seen, delete) of messages already
committed but still there (a crash between the commit and the action); fetch what is new in
batches with BODY.PEEK (the server's \\Seen flag is not touched before the commit); commit
each batch, with the new high-water UID, in one transaction, skipping contents the journal
already has (sha256: a changed UIDVALIDITY re-scans the folder and nothing is taken twice);
then act on the batch. Between rounds: IDLE when the server offers it, else a poll. A
dropped connection reconnects with backoff. After the journal, the same pipeline as SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from aioimaplib import IMAP4, IMAP4_SSL, STOP_WAIT_SERVER_PUSH, IMAP4ClientProtocol, Response
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.domain import Channel, Envelope
from maild.settings import ImapSettings
from maild.store import journal, meta
from maild.store.db import transaction
from maild.store.journal import Incoming
from maild.tokens import split_address

log = logging.getLogger("maild.imap")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The server refused something; the message says what (never the password)."""


# -- one round's storage ---------------------------------------------------------------------------

class ImapJournal:
    """The journal side of a mailbox, called in a worker thread (it blocks)."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self.factory = factory
        self.clock = clock

    def state(self, key: str) -> tuple[int | None, int]:
        with transaction(self.factory) as s:
            return _read_state(s, key)

    def commit(self, key: str, uidvalidity: int, last_uid: int,
               items: list[Incoming]) -> int:
        """The batch and the mailbox's new high-water mark in one transaction; contents
        already journaled are skipped. Returns how many rows were added."""
        with transaction(self.factory) as s:
            digests = [hashlib.sha256(i.raw).hexdigest() for i in items]
            known = journal.known_sha256(s, digests)
            fresh, seen = [], set(known)
            for item, digest in zip(items, digests, strict=True):
                if digest not in seen:
                    fresh.append(item)
                    seen.add(digest)
            journal.insert_many(s, fresh, self.clock.now())
            meta.set_meta(s, key, json.dumps({"uidvalidity": uidvalidity, "last_uid": last_uid}))
            return len(fresh)


def _read_state(s: Session, key: str) -> tuple[int | None, int]:
    raw = meta.meta(s, key)
    if raw is None:
        return None, 0
    data = json.loads(raw)
    return int(data["uidvalidity"]), int(data["last_uid"])


# -- connecting ----------------------------------------------------------------------------------

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


def _secret(box: ImapSettings) -> str:
    if box.password is not None:
        return box.password
    if box.password_file is not None:
        return box.password_file.read_text(encoding="utf-8").strip()
    if box.password_env is not None:
        value = os.environ.get(box.password_env)
        if value is None:
            raise ImapError(f"the environment has no {box.password_env}")
        return value
    assert box.oauth2_command is not None
    done = subprocess.run(shlex.split(box.oauth2_command), capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise ImapError(f"oauth2_command failed ({done.returncode}): "
                        f"{done.stderr.strip()[:200]}")
    return done.stdout.strip()


async def connect(box: ImapSettings, io_seconds: float = 30.0,
                  on_lost: Callable[[Exception | None], None] | None = None) -> IMAP4:
    context = None
    if box.tls != "none":
        context = ssl.create_default_context(cafile=str(box.ca_file) if box.ca_file else None)
    client: IMAP4
    if box.tls == "implicit":
        client = IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=io_seconds)
    elif box.tls == "starttls":
        client = _StartTls(box.host, box.port, ssl_context=context, timeout=io_seconds)
    else:
        client = IMAP4(box.host, box.port, timeout=io_seconds)
    # aioimaplib leaves a command waiting for its timeout when the connection drops; being
    # told at once lets the reader reconnect at once.
    client.protocol.conn_lost_cb = on_lost
    try:
        await client.wait_hello_from_server()
        secret = await asyncio.to_thread(_secret, box)
        if box.oauth2_command is not None:
            reply = await client.xoauth2(box.user, secret.encode())
        else:
            reply = await client.login(box.user, secret)
        if reply.result != "OK":
            raise ImapError(f"login as {box.user} refused: {_text(reply)}")
    except BaseException:
        await _close(client)
        raise
    return client


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


# -- the reader ------------------------------------------------------------------------------------

@dataclass
class Counters:
    rounds: int = 0
    committed: int = 0
    skipped: int = 0  # already in the journal
    connections: int = 0


class MailboxReader:
    """Reads one `[[inbound.imap]]` mailbox for as long as the daemon runs."""

    def __init__(self, box: ImapSettings, store: ImapJournal, *, group_address: str,
                 reply_local: str, reply_domain: str,
                 on_committed: Callable[[], None] = lambda: None,
                 first_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self.box = box
        self.store = store
        self.group_address = group_address
        self.reply_local = reply_local
        self.reply_domain = reply_domain
        self.on_committed = on_committed
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.counters = Counters()
        self.fail_after_commit: Callable[[], None] | None = None  # tests: a crash point

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.first_backoff
        while not stop.is_set():
            client: IMAP4 | None = None
            lost = asyncio.Event()
            try:
                client = await connect(self.box, on_lost=_setter(lost))
                self.counters.connections += 1
                await self._prepare(client)
                backoff = self.first_backoff
                await _until_lost(self._session(client, stop), lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away, refused, or spoke nonsense
                log.warning("%s: %s: %s; reconnecting in %.2g s", self.box.key,
                            type(exc).__name__, exc, backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                if client is not None:
                    await _close(client)

    async def _session(self, client: IMAP4, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Mail that arrived during a busy round was announced inside its replies, not
            # to a later IDLE: go round again until a round finds nothing new.
            if await self.sync_once(client) == 0:
                await self._wait_for_news(client, stop)

    async def _prepare(self, client: IMAP4) -> None:
        if self.box.after == "move" and self.box.move_to:
            reply = await client.create(self.box.move_to)  # fails harmlessly when it exists
            if reply.result != "OK" and b"exists" not in b" ".join(map(bytes, reply.lines)):
                raise ImapError(f"cannot create {self.box.move_to}: {_text(reply)}")

    async def sync_once(self, client: IMAP4) -> int:
        """One round; returns how many messages were added to the journal."""
        box = self.box
        self.counters.rounds += 1
        selected = _ok(await client.select(box.folder), f"select {box.folder}")
        validity = _uidvalidity(selected)
        stored, last = await asyncio.to_thread(self.store.state, box.key)
        if stored is not None and stored != validity:
            log.warning("%s: UIDVALIDITY changed (%s → %s); re-reading the folder, the journal "
                        "keeps out what it already has", box.key, stored, validity)
            last = 0
        elif stored is None:
            last = 0
        if last:  # committed earlier, but the after-action may not have happened
            query = f"UID 1:{last}" + (" UNSEEN" if box.after == "seen" else "")
            leftover = [u for u in _uids(_ok(await client.uid_search(query, charset=None),
                                                "search")) if u <= last]
            if leftover:
                await self._after(client, leftover)
        reply = _ok(await client.uid_search(f"UID {last + 1}:*", charset=None), "search")
        new = sorted(u for u in _uids(reply) if u > last)
        added = 0
        for i in range(0, len(new), box.batch):
            batch = new[i:i + box.batch]
            fetched = parse_fetch(_ok(await client.uid("fetch", uid_set(batch),
                                                       "(UID BODY.PEEK[])"), "fetch"))
            got = {uid for uid, _ in fetched}
            missing = [u for u in batch if u not in got]
            # The high-water mark never passes a message that did not come back, so it is
            # neither skipped nor moved away unread (it is asked for again next round).
            high = min(missing) - 1 if missing else max(batch)
            if missing:
                log.warning("%s: UID(s) %s did not come back from FETCH (expunged meanwhile, "
                            "or unreadable); asked for again next round", box.key,
                            uid_set(missing))
            items = [Incoming(envelope=self.envelope(raw), raw=raw,
                              source=f"{box.key};uidvalidity={validity};uid={uid}")
                     for uid, raw in fetched]
            high = max(high, last)
            n = await asyncio.to_thread(self.store.commit, box.key, validity, high, items)
            added += n
            self.counters.committed += n
            self.counters.skipped += len(items) - n
            if n:
                self.on_committed()
            if self.fail_after_commit is not None:
                self.fail_after_commit()
            await self._after(client, [uid for uid, _ in fetched])
            if missing:
                break  # the rest waits for the next round, after the missing ones
        if added:
            log.info("%s: %d new message(s) journaled", box.key, added)
        return added

    async def _after(self, client: IMAP4, uids: list[int]) -> None:
        if not uids:
            return
        which = uid_set(uids)
        if self.box.after == "seen":
            _ok(await client.uid("store", which, "+FLAGS.SILENT", "(\\Seen)"), "flag seen")
            return
        if self.box.after == "move" and client.has_capability("MOVE"):
            _ok(await client.uid("move", which, _quote(self.box.move_to or "")), "move")
            return
        if self.box.after == "move":
            _ok(await client.uid("copy", which, _quote(self.box.move_to or "")), "copy")
        _ok(await client.uid("store", which, "+FLAGS.SILENT", "(\\Deleted)"), "flag deleted")
        if client.has_capability("UIDPLUS"):
            _ok(await client.uid("expunge", which), "expunge")
        else:
            _ok(await client.expunge(), "expunge")

    async def _wait_for_news(self, client: IMAP4, stop: asyncio.Event) -> None:
        if not (self.box.idle and client.has_capability("IDLE")):
            await _sleep_or_stop(stop, self.box.poll_seconds)
            return
        idle = await client.idle_start(timeout=self.box.poll_seconds)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while client.has_pending_idle():
                push = asyncio.ensure_future(client.wait_server_push())
                done, _ = await asyncio.wait({push, stopping},
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    push.cancel()
                    break
                lines = push.result()
                if lines == STOP_WAIT_SERVER_PUSH or any(
                        b"EXISTS" in bytes(x) for x in lines):
                    break
        finally:
            stopping.cancel()
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(idle, 10)

    def envelope(self, raw: bytes) -> Envelope:
        """Who the mail was for, as far as its headers say: reply addresses first (their
        tokens thread it), then the mailbox's group address."""
        end = raw.find(b"\r\n\r\n")
        end = raw.find(b"\n\n") if end < 0 else end
        head = raw[:end if 0 <= end < 256 * 1024 else 256 * 1024]  # the headers only
        headers = BytesHeaderParser().parsebytes(head)
        found: list[str] = []
        for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
            for _, addr in getaddresses([str(v) for v in headers.get_all(name) or []]):
                addr = addr.strip().lower()
                if addr and split_address(addr, self.reply_local, self.reply_domain) is not None:
                    found.append(addr)
        rcpts = (*dict.fromkeys(found), self.group_address)
        # Return-Path is the envelope sender the last MTA saw ("<>": a bounce); a mail put
        # into the box without one has its From as the nearest stand-in, not a null sender.
        path = headers.get("Return-Path")
        if path is not None:
            sender = getaddresses([str(path)])[0][1] if str(path).strip() != "<>" else ""
        else:
            sender = (getaddresses([str(headers.get("From") or "")]) or [("", "")])[0][1]
        return Envelope(mail_from=sender, rcpt_tos=rcpts, channel=Channel.IMAP)


def _uidvalidity(reply: Response) -> int:
    for line in reply.lines:
        m = _UIDVALIDITY.search(bytes(line))
        if m:
            return int(m.group(1))
    raise ImapError("the server gave no UIDVALIDITY for the folder")


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _setter(event: asyncio.Event) -> Callable[[Exception | None], None]:
    return lambda _exc: event.set()


async def _until_lost(work: Coroutine[Any, Any, None], lost: asyncio.Event) -> None:
    """Run `work` until it ends or the connection is lost, whichever comes first."""
    task = asyncio.ensure_future(work)
    waiting = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if task in done:
        task.result()
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ConnectionError("the server closed the connection")


async def _close(client: IMAP4) -> None:
    try:
        if client.has_pending_idle():
            client.idle_done()
        await asyncio.wait_for(client.logout(), 5)
    except Exception:  # already gone
        pass
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()
