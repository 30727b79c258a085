"""Raw mail into the journal with group commit: one transaction for every mail that is
waiting, so concurrent SMTP sessions share a commit and each gets its 250 only after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.store import journal
from maild.store.db import transaction
from maild.store.journal import Incoming

log = logging.getLogger("maild.intake")
MAX_BATCH = 64


class Intake:
    def __init__(self, factory: sessionmaker[Session], clock: Clock,
                 on_committed: Callable[[], None] = lambda: None) -> None:
        self._factory = factory
        self._clock = clock
        self._on_committed = on_committed
        self._queue: list[tuple[Incoming, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None

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
                log.error("journal commit failed for %d mail(s): %s", len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), jid in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(jid)
            self._on_committed()

    def _commit(self, items: list[Incoming]) -> list[int]:
        with transaction(self._factory) as s:
            return journal.insert_many(s, items, self._clock.now())

    def commit_now(self, item: Incoming) -> int:
        """Synchronous form for the CLI (`maild inject`) and IMAP batches."""
        ids = self._commit([item])
        self._on_committed()
        return ids[0]
