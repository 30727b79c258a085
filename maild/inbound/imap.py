"""Mailboxes over IMAP (aioimaplib): at least once into the journal, never twice.

Per mailbox the store keeps (in `meta`, see `imap_state`) the UIDVALIDITY, the highest UID
done and what was left out on purpose. A round: select the folder; on first contact take
the baseline (with `after = "seen"` only unseen mail is read, with `since` only mail since
that date); finish the after-action (move, seen, delete) of messages already committed but
still there (a crash between the commit and the action); fetch what is new in batches with
BODY.PEEK (the server's \\Seen flag is not touched before the commit); commit each batch,
with the new high-water UID, in one transaction, skipping contents the journal already has
(sha256: a changed UIDVALIDITY re-scans the folder and nothing is taken twice); then act on
the batch. Between rounds: IDLE when the server offers it, else a poll. A dropped connection
reconnects with backoff; one unreadable message is isolated, not a stop for the mailbox.
After the journal, the same pipeline as SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from aioimaplib import (
    IMAP4,
    IMAP4_SSL,
    STOP_WAIT_SERVER_PUSH,
    AioImapException,
    IMAP4ClientProtocol,
    Response,
)

from maild.domain import Channel, Envelope
from maild.errors import StoreError, TransientStoreError
from maild.inbound.imap_envelope import UNKNOWN_SENDER, envelope_of, journal_source
from maild.inbound.imap_state import ImapJournal, Isolation, MailboxState, first_contact
from maild.settings import ImapSettings
from maild.supervise import Episode, Health, describe, sleep_or
from store.journal import Incoming

__all__ = ["Counters", "ImapError", "ImapJournal", "MailboxReader", "connect", "parse_fetch",
           "uid_set"]

log = logging.getLogger("maild.imap")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The server refused something; the message says what (never the password)."""


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
    except asyncio.CancelledError:  # stopping: no LOGOUT, the socket closed at once
        await _close(client, polite=False)
        raise
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

# What a failing server, network or store raises; anything else is logged with its traceback.
_EXPECTED = (OSError, TimeoutError, ImapError, StoreError, AioImapException)


@dataclass
class Counters:
    rounds: int = 0
    committed: int = 0
    skipped: int = 0  # already in the journal
    connections: int = 0
    given_up: int = 0  # messages the server would not give (or the journal not take): left


class MailboxReader:
    """Reads one `[[inbound.imap]]` mailbox for as long as the daemon runs.

    It supervises itself. A connection attempt that fails (the server down, the login
    refused, the folder missing, the database gone while committing) is tried again after
    a capped backoff, and the outage is logged once (`Episode`: ERROR when it starts, INFO
    when it ends); `health` hears the part `imap KEY` failing once `unhealthy_after`
    attempts in a row have failed, and ok once a connection has gone through a round.
    One message the server will not give (FETCH refused, the connection dropped while
    fetching it, a reply without it) or the journal will not take is tried again, alone,
    up to `give_up_after` times; then it is left in the folder untouched, logged as an
    ERROR and counted, and the others go on. Nothing but cancellation leaves `run`.
    """

    def __init__(self, box: ImapSettings, store: ImapJournal, *, group_address: str,
                 reply_local: str, reply_domain: str,
                 on_committed: Callable[[], None] = lambda: None,
                 first_backoff: float = 1.0, max_backoff: float = 60.0,
                 health: Health | None = None, unhealthy_after: int = 3,
                 give_up_after: int = 3) -> None:
        self.box = box
        self.store = store
        self.group_address = group_address
        self.reply_local = reply_local
        self.reply_domain = reply_domain
        self.on_committed = on_committed
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.health = health
        self.part = f"imap {box.key}"
        self.unhealthy_after = unhealthy_after
        self.counters = Counters()
        self.fail_after_commit: Callable[[], None] | None = None  # tests: a crash point
        self._episode = Episode(log, f"IMAP mailbox {box.key}")
        self._synced = False  # the current connection went through a round
        self._uids = Isolation(box.key, box.folder, give_up_after)
        self._fetching: list[int] = []  # the UIDs of the FETCH in flight
        self._retry_soon = False
        self._lost = asyncio.Event()  # set when the current connection drops

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            delay = await self._connection(stop)
            if delay:
                await sleep_or(stop, delay)

    async def _connection(self, stop: asyncio.Event) -> float:
        """One connection, for as long as it lasts; how long to wait before the next."""
        client: IMAP4 | None = None
        lost = self._lost = asyncio.Event()
        self._synced = False
        try:
            client = await _unless_stopped(connect(self.box, on_lost=_setter(lost)), stop)
            if client is None:
                return 0.0
            self.counters.connections += 1
            await self._prepare(client)
            await _until_lost(self._session(client, stop), lost)
            return 0.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server went away, refused, or spoke nonsense
            return self._failed(exc)
        finally:
            if client is not None:  # a LOGOUT on a dropped connection would wait for nothing
                await _close(client, polite=not lost.is_set())

    def _failed(self, exc: Exception) -> float:
        fetching, self._fetching = self._fetching, []
        if fetching:  # perhaps those messages' fault (Dovecot says BYE on an unreadable one)
            if len(fetching) > 1:
                self._uids.alone.update(fetching)
                log.warning("%s: the connection failed while fetching UIDs %s (%s); fetching "
                            "them one at a time", self.box.key, uid_set(fetching), describe(exc))
            else:
                self._strike(fetching[0], f"the connection failed while fetching it: "
                                          f"{describe(exc)}")
            return self.first_backoff
        if self._synced:  # a working connection ended: reconnect before calling it an outage
            log.warning("%s: connection lost (%s); reconnecting", self.box.key, describe(exc))
            return self.first_backoff
        tries = self._episode.failures + 1  # failed connection attempts in a row, this one too
        delay = min(self.first_backoff * 2.0 ** min(tries - 1, 30), self.max_backoff)
        if not self._episode.failing and not isinstance(exc, _EXPECTED):
            log.warning("%s: unexpected error", self.box.key, exc_info=exc)
        self._episode.failed(exc, retry_in=delay)
        if self.health is not None and tries >= self.unhealthy_after:
            self.health.failing(self.part, describe(exc))
        return delay

    def _healthy(self) -> None:
        if self._synced:
            return
        self._synced = True
        self._episode.recovered()
        if self.health is not None:
            self.health.ok(self.part)

    async def _session(self, client: IMAP4, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Mail that arrived during a busy round was announced inside its replies, not
            # to a later IDLE: go round again until a round finds nothing new.
            added = await self.sync_once(client)
            self._healthy()
            if self._retry_soon:  # a message failed: its next try comes soon, alone
                await sleep_or(stop, self.first_backoff)
            elif added == 0:
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
        self._retry_soon = False
        selected = _ok(await client.select(box.folder), f"select {box.folder}")
        state = await self._state(client, selected)
        left = set(state.given_up)
        for query, low, high in state.done_searches(unseen=box.after == "seen"):
            # committed earlier, but the after-action may not have happened
            done = [u for u in await self._search(client, query, low, high) if u not in left]
            if done:
                await self._after(client, done)
        new: set[int] = set()
        for query, low, high in state.new_searches():
            new.update(await self._search(client, query, low, high))
        above = self._uids.done_above = {u for u in self._uids.done_above if u > state.last_uid}
        todo = sorted(new - left - above)
        added = 0
        waiting: set[int] = set()  # failed in this round, tried again in the next
        for i in range(0, len(todo), box.batch):
            state, n = await self._read(client, state, todo[i:i + box.batch], waiting)
            added += n
        if added:
            log.info("%s: %d new message(s) journaled", box.key, added)
        return added

    async def _state(self, client: IMAP4, selected: Response) -> MailboxState:
        """The mailbox's state; on first contact (or a new UIDVALIDITY, or a new `since`)
        the baseline of what is there already, saved at once."""
        box = self.box
        validity = _uidvalidity(selected)
        self._uids.numbering(validity)
        stored = await asyncio.to_thread(self.store.state, box.key)
        since = box.since.isoformat() if box.since is not None else None
        if stored is not None and stored.uidvalidity == validity and (
                since is None or stored.since == since):
            return stored.give_up(sorted(self._uids.given_up))
        if stored is None:
            why = "first contact"
        elif stored.uidvalidity != validity:
            why = f"UIDVALIDITY changed ({stored.uidvalidity} → {validity})"
        else:
            why = f"since changed to {since}"
        kept = stored.given_up if stored is not None and stored.uidvalidity == validity else ()
        state = first_contact(validity, await self._top(client, selected), after=box.after,
                              since=box.since, given_up=kept)
        what = (f"the messages matching {state.criteria} and all new ones" if state.criteria
                else "every message in the folder")
        log.log(logging.INFO if stored is None else logging.WARNING, "%s: %s; reading %s",
                box.key, why, what)
        await asyncio.to_thread(self.store.commit, box.key, state, [])
        return state

    async def _top(self, client: IMAP4, selected: Response) -> int:
        """The highest UID the folder may hold now (UIDNEXT - 1)."""
        for line in selected.lines:
            m = _UIDNEXT.search(bytes(line))
            if m:
                return int(m.group(1)) - 1
        return max(await self._search(client, "ALL", 1, None), default=0)

    async def _search(self, client: IMAP4, query: str, low: int,
                      high: int | None) -> list[int]:
        # a server answers "UID n:*" with the highest UID even when it is below n
        reply = _ok(await client.uid_search(query, charset=None), "search")
        return [u for u in _uids(reply) if u >= low and (high is None or u <= high)]

    async def _read(self, client: IMAP4, state: MailboxState, batch: list[int],
                    waiting: set[int]) -> tuple[MailboxState, int]:
        """Fetch, journal and act on one batch; the state after it, and how many were added.
        The high-water mark never passes a message that failed in this round (`waiting`: it
        is tried again) unless it was given up (then it is remembered as left in the folder)."""
        key = self.box.key
        fetched, failed = await self._fetch(client, batch)
        items = {uid: Incoming(envelope=self._envelope(uid, raw), raw=raw,
                               source=journal_source(key, state.uidvalidity, uid))
                 for uid, raw in fetched}
        waiting.update(uid for uid, why in failed.items() if not self._strike(uid, why))
        try:
            new = self._advanced(state, batch, waiting)
            n = await asyncio.to_thread(self.store.commit, key, new, list(items.values()))
            taken = list(items)
        except TransientStoreError:
            raise  # the database, not the batch: the loop's problem
        except Exception as exc:  # something in one of them: each alone finds which
            log.warning("%s: journaling UIDs %s failed (%s); each alone", key,
                        uid_set(list(items)), describe(exc))
            n, taken = 0, []
            for uid, item in items.items():
                try:
                    n += await asyncio.to_thread(self.store.commit, key, state, [item])
                except TransientStoreError:
                    raise
                except Exception as bad:
                    if not self._strike(uid, f"the journal refused it: {describe(bad)}"):
                        waiting.add(uid)
                else:
                    taken.append(uid)
            new = self._advanced(state, batch, waiting)
            await asyncio.to_thread(self.store.commit, key, new, [])
        self.counters.committed += n
        self.counters.skipped += len(taken) - n
        if n:
            self.on_committed()
        if self.fail_after_commit is not None:
            self.fail_after_commit()
        self._uids.done_above.update(u for u in taken if u > new.last_uid)
        await self._after(client, taken)
        return new, n

    def _advanced(self, state: MailboxState, batch: list[int],
                  waiting: set[int]) -> MailboxState:
        high = min(waiting) - 1 if waiting else max(batch)
        return replace(state.give_up(sorted(self._uids.given_up)),
                       last_uid=max(state.last_uid, high))

    async def _fetch(self, client: IMAP4,
                     batch: list[int]) -> tuple[list[tuple[int, bytes]], dict[int, str]]:
        """The batch's messages, and why the others did not come. A batch holding a message
        that failed before is fetched one message at a time, so one cannot hold back the
        rest (Dovecot drops the connection on a message it cannot read)."""
        fetched: list[tuple[int, bytes]] = []
        rest = batch
        if len(batch) > 1 and self._uids.alone.isdisjoint(batch):
            reply = await self._fetch_reply(client, batch)
            if reply.result == "OK":
                fetched = [(uid, raw) for uid, raw in parse_fetch(reply) if uid in batch]
                got = {uid for uid, _ in fetched}
                rest = [uid for uid in batch if uid not in got]
            else:
                log.warning("%s: FETCH of UIDs %s refused (%s); one at a time", self.box.key,
                            uid_set(batch), _text(reply))
        failed: dict[int, str] = {}
        for uid in rest:
            reply = await self._fetch_reply(client, [uid])
            one = [raw for u, raw in parse_fetch(reply) if u == uid] if reply.result == "OK" \
                else []
            if one:
                fetched.append((uid, one[0]))
            elif reply.result == "OK":  # expunged meanwhile, or a reply we cannot read
                failed[uid] = "not in the FETCH reply"
            else:
                failed[uid] = f"FETCH refused: {_text(reply)}"
        return sorted(fetched), failed

    async def _fetch_reply(self, client: IMAP4, uids: list[int]) -> Response:
        self._fetching = uids  # read by _failed when the connection dies meanwhile
        reply = await client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])")
        self._fetching = []
        return reply

    def _strike(self, uid: int, why: str) -> bool:
        """Count a failed try at one message; whether it is given up now."""
        if self._uids.strike(uid, why):
            self.counters.given_up += 1
            return True
        self._retry_soon = True
        return False

    def _envelope(self, uid: int, raw: bytes) -> Envelope:
        try:
            return self.envelope(raw)
        except Exception as exc:  # a header no parser expected: the mail is still kept
            log.warning("%s: UID %d: cannot read the envelope from its headers (%s); "
                        "journaled for the group address", self.box.key, uid, describe(exc))
            return Envelope(mail_from=UNKNOWN_SENDER, rcpt_tos=(self.group_address,),
                            channel=Channel.IMAP)

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
            await sleep_or(stop, self.box.poll_seconds)
            return
        idle = await client.idle_start(timeout=self.box.poll_seconds)
        stopping = asyncio.ensure_future(stop.wait())
        push: asyncio.Future[Any] | None = None
        try:
            while client.has_pending_idle():
                push = asyncio.ensure_future(client.wait_server_push())
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
            if self._lost.is_set():  # no answer will come: waiting for it took 10 s
                idle.cancel()
            else:
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(idle, 10)

    def envelope(self, raw: bytes) -> Envelope:
        """Who the mail was for and who sent it, as far as its headers say."""
        return envelope_of(raw, reply_local=self.reply_local, reply_domain=self.reply_domain,
                           group_address=self.group_address)


def _uidvalidity(reply: Response) -> int:
    for line in reply.lines:
        m = _UIDVALIDITY.search(bytes(line))
        if m:
            return int(m.group(1))
    raise ImapError("the server gave no UIDVALIDITY for the folder")


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _unless_stopped(connecting: Coroutine[Any, Any, IMAP4],
                          stop: asyncio.Event) -> IMAP4 | None:
    """The connection, or None when the daemon stops first (a login can take seconds)."""
    task = asyncio.ensure_future(connecting)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


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


async def _close(client: IMAP4, *, polite: bool = True) -> None:
    """LOGOUT (when `polite`), then the socket closed whatever happened, even when a
    cancellation comes meanwhile, and a connection still being made abandoned."""
    try:
        if polite:
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(client.logout(), 5)
    except Exception:  # already gone
        pass
    finally:
        connecting = getattr(client, "_client_task", None)
        if connecting is not None and not connecting.done():
            connecting.cancel()
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
