"""Raw mail into the journal with group commit: one transaction for every mail that is
waiting, so concurrent SMTP sessions share a commit and each gets its 250 only after it.

Sharing a transaction must not share a fate: when a batch fails for something one of its
mails holds (a value the database refuses), its mails are committed again each alone, so only
that one fails. A failure of the database itself (unreachable, locked, read-only: a
`TransientStoreError`) fails the batch at once, since each alone would fail too, only later.
The intake's health (part "intake") is failing while commits fail, and ok again after one
succeeds; an outage is logged once (`Episode`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from maild.clock import Clock
from maild.errors import StoreError, TransientStoreError
from maild.supervise import Backoff, Episode, Health, describe
from store.journal import Incoming
from store.unit import Database

log = logging.getLogger("maild.intake")
MAX_BATCH = 64

Waiter = tuple[Incoming, asyncio.Future[int]]


class Intake:
    def __init__(self, db: Database, clock: Clock,
                 on_committed: Callable[[], None] = lambda: None, *,
                 health: Health | None = None) -> None:
        self._db = db
        self._clock = clock
        self._on_committed = on_committed
        self._queue: list[Waiter] = []
        self._flushing: asyncio.Task[None] | None = None
        self._episode = Episode(log, "journal commit", health=health, part="intake")
        self._probing: asyncio.Task[None] | None = None

    async def submit(self, item: Incoming) -> int:
        """Commit one mail to the journal; returns its id once the commit is done."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                ids = await asyncio.to_thread(self._commit, [item for item, _ in batch])
            except Exception as exc:  # every waiter must hear about the failure
                await self._each_alone(batch, exc)
                continue
            for (_, fut), jid in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(jid)
            self._episode.recovered()
            self._on_committed()

    async def _each_alone(self, batch: list[Waiter], exc: Exception) -> None:
        """After a failed batch: commit its mails one by one, so only a culprit fails."""
        if len(batch) == 1 or isinstance(exc, TransientStoreError):
            self._fail(batch, exc)
            return
        failed: list[tuple[Incoming, Exception]] = []
        for i, (item, fut) in enumerate(batch):
            try:
                [jid] = await asyncio.to_thread(self._commit, [item])
            except TransientStoreError as down:  # the database went away meanwhile
                self._fail(batch[i:], down)
                return
            except Exception as bad:  # its sender hears 451 and may try again
                failed.append((item, bad))
                if not fut.done():
                    fut.set_exception(bad)
                continue
            if not fut.done():
                fut.set_result(jid)
        if len(failed) == len(batch):  # not the mails: the store (an episode, said once)
            self._episode.failed(exc)
            self._until_back()
            return
        log.warning("journal commit of %d mails failed (%s); each alone, %d failed",
                    len(batch), describe(exc), len(failed))
        for item, why in failed:  # with the traceback when it is a fault of ours
            log.error("journal commit failed for the mail from %r (%s, %d bytes): %s",
                      item.envelope.mail_from, item.source, len(item.raw), describe(why),
                      exc_info=None if isinstance(why, StoreError) else why)
        self._episode.recovered()
        self._on_committed()

    def _fail(self, batch: list[Waiter], exc: Exception) -> None:
        self._episode.failed(exc)
        self._until_back()
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc)

    def _until_back(self) -> None:
        """While the database is away, ask it now and then whether it is back: when no mail
        comes to try again, health would otherwise say 'failing' long after it returned."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._probe(), name="intake probe")

    async def _probe(self) -> None:
        if await asyncio.to_thread(self._db.ping) is None:
            return  # it answers but refused the mail (read-only, full…): only a commit says ok
        backoff = Backoff(first=0.5, cap=10.0)
        while self._episode.failing:
            await asyncio.sleep(backoff.next())
            if self._episode.failing and await asyncio.to_thread(self._db.ping) is None:
                self._episode.recovered()

    def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()

    def _commit(self, items: list[Incoming]) -> list[int]:
        with self._db.write() as tx:
            return tx.journal.insert_many(items, self._clock.now())

    def commit_now(self, item: Incoming) -> int:
        """Synchronous form for the CLI (`maild inject`) and IMAP batches."""
        ids = self._commit([item])
        self._on_committed()
        return ids[0]
