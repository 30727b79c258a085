"""Mailboxes over IMAP: at least once into the journal, never twice.

A `MailboxReader` keeps one connection per mailbox and goes round (`imap_sync`) on it:
per mailbox the store keeps (in `meta`, see `imap_state`) the UIDVALIDITY, the highest UID
done and what was left out on purpose, and each batch is committed with its new high-water
UID in one transaction, skipping contents the journal already has (sha256: a changed
UIDVALIDITY re-scans the folder and nothing is taken twice). Between rounds: IDLE when the
server offers it, else a poll. A dropped connection reconnects with backoff; one unreadable
message is isolated, not a stop for the mailbox. The protocol itself is `imap_client`'s.
After the journal, the same pipeline as SMTP.

Several nodes on one database: a reader reads only while `gate` says its node holds the
mailbox's lease (`maild.node.imap_lease`). Otherwise it stands by, unconnected and healthy,
asking again every `gate_seconds`. While reading it asks again before each round and before
each commit, and IDLE is cut into slices of `gate_seconds` so a lost lease is noticed; then
it disconnects and stands by. The UID ledger is in the shared database, so the next holder
goes on where the last commit left off. A commit in the moment between a check and a lapse
is still harmless: it only journals what it fetched itself (contents the journal has are
skipped, by sha256) and a high-water mark set back is read again without doubling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

from maild.errors import StoreError
from maild.inbound.imap_client import TRANSPORT_ERRORS, ImapClient, ImapError, uid_set
from maild.inbound.imap_state import ImapJournal
from maild.inbound.imap_sync import Counters, MailboxSource, MailboxSync
from maild.supervise import Episode, Health, describe, sleep_or

__all__ = ["Counters", "ImapError", "ImapJournal", "MailboxReader", "connect"]

log = logging.getLogger("maild.imap")

# What a failing server, network or store raises; anything else is logged with its traceback.
_EXPECTED = (*TRANSPORT_ERRORS, StoreError)


class MailboxReader(MailboxSync):
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

    def __init__(self, box: MailboxSource, store: ImapJournal, *, group_address: str,
                 reply_local: str, reply_domain: str,
                 on_committed: Callable[[], None] = lambda: None,
                 first_backoff: float = 1.0, max_backoff: float = 60.0,
                 health: Health | None = None, unhealthy_after: int = 3,
                 give_up_after: int = 3, gate: Callable[[], bool] | None = None,
                 gate_seconds: float = 5.0) -> None:
        super().__init__(box, store, group_address=group_address, reply_local=reply_local,
                         reply_domain=reply_domain, on_committed=on_committed,
                         give_up_after=give_up_after)
        self.box: MailboxSource = box
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.health = health
        self.part = f"imap {box.key}"
        self.unhealthy_after = unhealthy_after
        self._episode = Episode(log, f"IMAP mailbox {box.key}")
        self._synced = False  # the current connection went through a round
        self._lost = asyncio.Event()  # set when the current connection drops
        # Several nodes: whether this node holds the mailbox's lease now (a blocking call,
        # run off the loop; it takes or renews the lease). None: one node, always.
        self.gate = gate
        self.gate_seconds = gate_seconds  # how often the lease is asked for again
        self.reading = False  # holds the lease (or has no gate) and reads
        self.standbys = 0  # times it went to stand by for another node

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            delay = await self._standby(stop)
            if delay is None:
                delay = await self._connection(stop)
            if delay:
                await sleep_or(stop, delay)

    async def _standby(self, stop: asyncio.Event) -> float | None:
        """Wait until this node holds the mailbox's lease (None), or how long to wait after
        the lease could not be asked for (the database away)."""
        while self.gate is not None and not stop.is_set():
            try:
                if await asyncio.to_thread(self.gate):
                    return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return self._failed(exc)
            if self.reading or self.standbys == 0:
                log.info("%s: standing by: another node reads it", self.box.key)
                self.standbys += 1
            self.reading = False
            self._episode.recovered()  # standing by is working
            if self.health is not None:
                self.health.ok(self.part, note="standing by: another node reads this mailbox")
            await sleep_or(stop, min(self.box.poll_seconds, self.gate_seconds))
        return None if not stop.is_set() else 0.0

    async def _may_commit(self) -> None:
        if self.gate is not None and not await asyncio.to_thread(self.gate):
            raise _LeaseLost

    async def _connection(self, stop: asyncio.Event) -> float:
        """One connection, for as long as it lasts; how long to wait before the next."""
        client: ImapClient | None = None
        lost = self._lost = asyncio.Event()
        self._synced = False
        try:
            client = await _unless_stopped(connect(self.box, on_lost=_setter(lost)), stop)
            if client is None:
                return 0.0
            self.counters.connections += 1
            await self._prepare(client)
            self.reading = True
            await _until_lost(self._session(client, stop), lost)
            return 0.0
        except asyncio.CancelledError:
            raise
        except _LeaseLost:  # another node reads the mailbox now: disconnect, stand by
            self._fetching, self._synced = [], False
            log.info("%s: the mailbox's lease passed to another node; disconnecting",
                     self.box.key)
            return 0.0
        except Exception as exc:  # the server went away, refused, or spoke nonsense
            return self._failed(exc)
        finally:
            if client is not None:  # a LOGOUT on a dropped connection would wait for nothing
                await client.close(polite=not lost.is_set())

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

    async def _session(self, client: ImapClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._may_commit()  # still this node's mailbox?
            # Mail that arrived during a busy round was announced inside its replies, not
            # to a later IDLE: go round again until a round finds nothing new.
            added = await self.sync_once(client)
            self._healthy()
            if self._retry_soon:  # a message failed: its next try comes soon, alone
                await sleep_or(stop, self.first_backoff)
            elif added == 0:
                await self._wait_for_news(client, stop)

    async def _prepare(self, client: ImapClient) -> None:
        if self.box.after == "move" and self.box.move_to:
            await client.ensure_folder(self.box.move_to)

    async def _wait_for_news(self, client: ImapClient, stop: asyncio.Event) -> None:
        # under a lease, no longer than it takes to notice the lease lost
        seconds = self.box.poll_seconds if self.gate is None else min(
            self.box.poll_seconds, self.gate_seconds)
        if not (self.box.idle and client.has_capability("IDLE")):
            await sleep_or(stop, seconds)
            return
        await client.idle(seconds, stop, self._lost)


class _LeaseLost(Exception):
    """The node no longer holds the mailbox's lease: another node reads it now."""


async def connect(box: MailboxSource, io_seconds: float = 30.0,
                  on_lost: Callable[[Exception | None], None] | None = None) -> ImapClient:
    return await ImapClient.open(box.host, box.port, tls=box.tls, ca_file=box.ca_file,
                                 user=box.user, secret=lambda: _secret(box),
                                 oauth2=box.oauth2_command is not None,
                                 io_seconds=io_seconds, on_lost=on_lost)


def _secret(box: MailboxSource) -> str:
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


async def _unless_stopped(connecting: Coroutine[Any, Any, ImapClient],
                          stop: asyncio.Event) -> ImapClient | None:
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
