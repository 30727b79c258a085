"""From a committed journal row to ticket changes: one transaction per message.

    parse → classify → match → service, all inside the one write transaction that also marks
    the journal row done. Any unexpected error rolls it back and quarantines the row with the
    reason, so `maild journal replay ID` can run it again once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from maild.clock import Clock
from maild.domain import Envelope, JournalState, Parsed
from maild.doorbell import pause
from maild.errors import MaildError, ParseError, TransientStoreError
from maild.inbound.classify import AutoReply, Bounce, Loop, Mail, classify
from maild.inbound.dedup import content_digest
from maild.inbound.match import ReplyAddressing, bounce_outbox_id
from maild.inbound.parse import ParseLimits, parse_mail
from maild.inbound.route import Router
from maild.service import Desk, Outcome
from maild.supervise import Backoff, Health, Retry, describe
from maild.tokens import Signer
from store.unit import Database, Tx

log = logging.getLogger("maild.process")
TX_SECONDS = 0.015  # a processing transaction takes no more mails after this long
BATCH = 16  # mails parsed, then processed, together (see `Pipeline.run_many`)
CHECKPOINT_SECONDS = 0.5  # while mail flows, the processor checkpoints the WAL this often
TRANSIENT_TRIES = 3  # a mail that fails 'transiently' this often, the database up, is shunted
# Several processors on one database claim the rows they process for this long (wall clock):
# a processor that dies holds them no longer; a live one finishes a batch well within it.
CLAIM_SECONDS = 20.0
THREAD_REFS = 10  # the newest References of a mail locked with its own Message-ID


def thread_names(mails: list[Parsed]) -> list[str]:
    """The conversation locks a transaction processing these mails holds: every Message-ID
    they carry or answer. A reply and the mail it answers share one, so two processors take
    turns on them, and the later sees the ticket the earlier opened."""
    names: list[str] = []
    for m in mails:
        names += [i[:255] for i in (m.message_id, *m.in_reply_to, *m.references[-THREAD_REFS:])
                  if i]
    return names


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    limits: ParseLimits
    addressing: ReplyAddressing
    own_addresses: frozenset[str]
    command_auth: str = "none"  # none | dkim | spf | dkim_or_spf
    authserv_id: str | None = None


class _Conflict(Exception):
    """Another worker finished this journal row first; roll back ours."""


class Pipeline:
    def __init__(self, *, db: Database, desk: Desk, signer: Signer, clock: Clock,
                 config: PipelineConfig) -> None:
        self.db = db
        self.desk = desk
        self.signer = signer
        self.clock = clock
        self.config = config
        self._transient: dict[int, int] = {}  # journal id → transient failures in a row
        self._router = Router(desk=desk, signer=signer, addressing=config.addressing,
                              command_auth=config.command_auth,
                              authserv_id=config.authserv_id)

    def run_one(self, journal_id: int) -> Outcome | None:
        """Process one pending journal row; None when another worker has it."""
        with self.db.read() as tx:
            raw, envelope, state = tx.journal.load(journal_id)
        if state is not JournalState.PENDING:
            return None
        return self.run_loaded(journal_id, raw, envelope)

    def run_loaded(self, journal_id: int, raw: bytes, envelope: Envelope) -> Outcome | None:
        """Process a pending row already read (see `next_batch`)."""
        return self.run_many([(journal_id, raw, envelope)])[0]

    def run_many(self, rows: list[tuple[int, bytes, Envelope]]) -> list[Outcome | None]:
        """Process rows already read, several to a write transaction.

        A commit costs about as much as processing a mail (WAL frames, checkpoints, the
        writer lock), so mails share one. Optimistically: if any mail of the transaction
        fails (or another worker finished its row first), the whole transaction is rolled
        back and its mails are run again one to a transaction, where a failing mail is
        quarantined alone. (SQLite savepoints per mail cost as much as the commits saved.)
        A transaction takes mails for at most `TX_SECONDS`, so the SMTP intake never waits
        long behind it for the writer lock. Parsing, which needs no lock, comes first.
        """
        parsed = [self._parse(jid, raw) for jid, raw, _ in rows]
        self._store_files([p for p in parsed if not isinstance(p, Outcome)])
        out: list[Outcome | None] = [p if isinstance(p, Outcome) else None for p in parsed]
        todo = [i for i, p in enumerate(parsed) if not isinstance(p, Outcome)]
        while todo:
            done = self._run_together(rows, parsed, todo, out)
            todo = todo[len(done):]
        return out

    def _parse(self, journal_id: int, raw: bytes) -> Parsed | Outcome:
        """The parsed mail, or the outcome of quarantining it when it does not parse."""
        try:
            return parse_mail(raw, limits=self.config.limits, signer=self.signer)
        except ParseError as exc:
            return self._quarantine(journal_id, f"cannot parse: {exc}")
        except Exception as exc:  # a parser bug met by this one mail: it alone waits
            log.exception("journal %d: the parser failed", journal_id)
            return self._quarantine(journal_id, f"cannot parse: {type(exc).__name__}: {exc}")

    def _run_together(self, rows: list[tuple[int, bytes, Envelope]],
                      parsed: list[Parsed | Outcome], todo: list[int],
                      out: list[Outcome | None]) -> list[int]:
        """The first mails of `todo` in one write transaction, their outcomes into `out`;
        if it fails, those it took (at least one) one by one instead. Returns which ran."""
        done: list[int] = []
        try:
            with self.db.write() as tx:
                tx.locks.hold(thread_names([m for i in todo
                                            if not isinstance(m := parsed[i], Outcome)]))
                started = time.monotonic()
                for i in todo:
                    if done and time.monotonic() - started > TX_SECONDS:
                        break
                    mail = parsed[i]
                    assert not isinstance(mail, Outcome)
                    out[i] = self._apply(tx, rows[i][0], mail, rows[i][2])
                    done.append(i)
        except Exception:  # anything: redo these one by one, each failure alone
            done = todo[:max(len(done), 1)]
            for i in done:
                mail = parsed[i]
                assert not isinstance(mail, Outcome)
                out[i] = self._run_alone(rows[i][0], mail, rows[i][2])
        else:
            for i in done:  # logged once committed
                outcome = out[i]
                if outcome is not None:
                    log.info("journal %d: %s", rows[i][0], outcome.outcome)
        return done

    def _store_files(self, mails: list[Parsed]) -> None:
        """Attachments into the blob store before the write transaction: writing and syncing
        them there held the writer lock (and kept the SMTP intake waiting) for ~10 % of the
        processor's time. Content-addressed, so the transaction's own `put` then finds them;
        if this fails, that one tries again and its error quarantines the mail as before.
        The files of a mail that ends up refused or held are kept too, like its raw bytes."""
        if not self.desk.blobs.ahead:  # in the database: written with the workunit
            return
        for mail in mails:
            for a in mail.attachments:
                try:
                    self.desk.blobs.put(a.data)
                except OSError as exc:
                    log.warning("attachment not stored ahead of processing: %s", exc)

    def _apply(self, tx: Tx, journal_id: int, parsed: Parsed,
               envelope: Envelope) -> Outcome:
        outcome = self._dispatch(tx, journal_id, parsed, envelope)
        # Optimistic claim: the row must still be pending when we record the result.
        if not tx.journal.finish(journal_id, outcome.state, self.clock.now(),
                              outcome=outcome.outcome, reason=outcome.reason,
                              ticket_id=outcome.ticket_id, only_if_pending=True,
                              message_id=(parsed.message_id or "")[:255] or None):
            raise _Conflict
        return outcome

    def _run_alone(self, journal_id: int, parsed: Parsed,
                   envelope: Envelope) -> Outcome | None:
        try:
            with self.db.write() as tx:
                tx.locks.hold(thread_names([parsed]))
                outcome = self._apply(tx, journal_id, parsed, envelope)
        except _Conflict:
            return None
        except TransientStoreError as exc:
            # Mostly the database is away: the loop waits and tries again, and the mail is
            # not to blame. But if the database answers, this mail trips it every time.
            if self.db.ping() is not None:
                raise
            tries = self._transient[journal_id] = self._transient.get(journal_id, 0) + 1
            if tries < TRANSIENT_TRIES:
                raise
            del self._transient[journal_id]
            log.exception("journal %d quarantined", journal_id)
            return self._quarantine(journal_id, f"{type(exc).__name__} {tries} times while "
                                                f"the database answered: {exc}")
        except Exception as exc:  # the shunt: anything unexpected keeps the mail, with why
            log.exception("journal %d quarantined", journal_id)
            return self._quarantine(journal_id, f"{type(exc).__name__}: {exc}")
        self._transient.pop(journal_id, None)
        log.info("journal %d: %s", journal_id, outcome.outcome)
        return outcome

    def _quarantine(self, journal_id: int, reason: str) -> Outcome:
        with self.db.write() as tx:
            tx.journal.finish(journal_id, JournalState.QUARANTINED, self.clock.now(),
                           outcome="quarantined", reason=reason[:4000], only_if_pending=True)
        log.warning("journal %d quarantined: %s", journal_id, reason)
        return Outcome(state=JournalState.QUARANTINED, outcome="quarantined", reason=reason)

    def _dispatch(self, tx: Tx, journal_id: int, parsed: Parsed,
                  envelope: Envelope) -> Outcome:
        reused: int | None = None  # the earlier mail whose Message-ID this other mail reuses
        if parsed.message_id:
            earlier = tx.journal.seen_message_id(parsed.message_id[:255], journal_id)
            if earlier:
                same = self._same_mail(tx, earlier, parsed)
                if same is not None:
                    return Outcome(state=JournalState.DONE,
                                   outcome=f"ignored: duplicate of journal {same}")
                # Someone else's mail (or another mail) under a Message-ID already used: it
                # is processed as its own, without that Message-ID, which keeps threading
                # to the earlier mail's ticket only.
                reused = earlier[0]
                parsed = dataclasses.replace(parsed, message_id=None)
        verdict = classify(parsed, envelope, own_addresses=self.config.own_addresses)
        outbox_id = bounce_outbox_id(envelope, self.signer, self.config.addressing)
        if outbox_id is not None and not isinstance(verdict, Bounce) and parsed.report is None:
            return Outcome(state=JournalState.DONE,
                           outcome="ignored: mail to a return path that is not a bounce")
        if outbox_id is not None or isinstance(verdict, Bounce):
            return self.desk.record_bounce(tx, outbox_id=outbox_id, report=parsed.report,
                                           journal_id=journal_id)
        if isinstance(verdict, Loop):
            return Outcome(state=JournalState.DONE, outcome=f"ignored: loop ({verdict.reason})")
        if isinstance(verdict, AutoReply):
            return Outcome(state=JournalState.DONE,
                           outcome=f"ignored: auto-reply ({verdict.reason})")
        assert isinstance(verdict, Mail)
        outcome = self._router.route(tx, journal_id, parsed, envelope,
                                     automated=verdict.automated)
        if reused is None:
            return outcome
        return dataclasses.replace(outcome, outcome=f"{outcome.outcome} (its Message-ID was "
                                                    f"already journal {reused}'s, another mail)")

    def _same_mail(self, tx: Tx, earlier: list[int], parsed: Parsed) -> int | None:
        """Which of the earlier journal rows holds this very mail (a redelivery), if any.
        Runs only when a Message-ID comes again, which is rare: parsing them costs little."""
        digest = content_digest(parsed)
        raws = tx.journal.raws(earlier)
        for jid in earlier:
            try:
                before = parse_mail(raws[jid], limits=self.config.limits, signer=self.signer)
            except (KeyError, MaildError):
                continue
            if content_digest(before) == digest:
                return jid
        return None

    def checkpoint(self) -> None:
        """The WAL into the database file, here rather than in an SMTP session's commit."""
        self.db.checkpoint()

    # -- the queue -----------------------------------------------------------------------------
    def next_batch(self, limit: int = 32, max_bytes: int = 16 * 1024 * 1024, *,
                   holder: str | None = None) -> list[tuple[int, bytes, Envelope]]:
        """Pending rows with their mail, read in one transaction (not one per mail). With
        a `holder` (several processors on the database), the rows are first claimed for it
        in a transaction of their own, so no other processor takes them meanwhile."""
        if holder is None:
            with self.db.read() as tx:
                return tx.journal.load_pending(limit, max_bytes)
        now = datetime.now(UTC)
        with self.db.write() as tx:
            ids = tx.journal.claim(holder, now, now + timedelta(seconds=CLAIM_SECONDS),
                                   limit, max_bytes)
        if not ids:
            return []
        with self.db.read() as tx:
            return tx.journal.load_many(ids)

    def unclaim(self, holder: str) -> None:
        """A processor stops: what it claimed and did not process goes back at once."""
        with self.db.write() as tx:
            tx.journal.unclaim(holder)


class Processor:
    """Runs the pipeline off the event loop, woken by intake commits, with a periodic tick.

    Supervised: a mail that fails is quarantined by the pipeline; a failure of the loop
    itself (the database away) is one logged episode, retried with capped backoff until the
    database is back, with the part "processor" failing in `health` meanwhile."""

    def __init__(self, pipeline: Pipeline, *, on_batch: Callable[[], None] = lambda: None,
                 tick_seconds: float = 5.0, busy_poll_seconds: float | None = None,
                 health: Health | None = None, backoff: Backoff | None = None,
                 holder: str | None = None) -> None:
        self.pipeline = pipeline
        self.holder = holder  # claims rows under this name (see Pipeline.next_batch)
        self.on_batch = on_batch  # wakes the delivery worker: new outbox rows may be due
        self.tick = tick_seconds
        self.busy_poll = busy_poll_seconds  # see `doorbell.pause`
        self.health = health or Health()
        self.retry = Retry(log, "journal processing", health=self.health, part="processor",
                           backoff=backoff)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        checkpointed = worked = time.monotonic()
        self.health.ok("processor")
        while not self._stop:
            self._wake.clear()
            try:
                batch = await asyncio.to_thread(self._next)
                if batch:
                    await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # the loop's own trouble: wait, then try again
                await self.retry.failed(exc, self._stopping)
                continue
            self.retry.succeeded()
            if batch:
                self.on_batch()
                worked = time.monotonic()
                if worked - checkpointed > CHECKPOINT_SECONDS:
                    await asyncio.to_thread(self._checkpoint)
                    checkpointed = time.monotonic()
                continue
            await pause(self._wake, tick=self.tick, busy_poll=self.busy_poll,
                        since_work=time.monotonic() - worked)

    def _next(self) -> list[tuple[int, bytes, Envelope]]:
        return self.pipeline.next_batch(holder=self.holder)

    def _checkpoint(self) -> None:
        try:
            self.pipeline.checkpoint()
        except Exception as exc:  # only housekeeping: the next one will do
            log.warning("WAL checkpoint failed: %s", describe(exc))

    def _run_batch(self, batch: list[tuple[int, bytes, Envelope]], *,
                   stoppable: bool = True) -> None:
        for start in range(0, len(batch), BATCH):
            if stoppable and self._stop:
                return
            self.pipeline.run_many(batch[start:start + BATCH])

    def stop(self) -> None:
        self._stop = True
        self._stopping.set()
        self._wake.set()

    async def finish(self, budget_seconds: float) -> None:
        """At shutdown: process what is already committed, within a time budget."""
        loop = asyncio.get_running_loop()
        end = loop.time() + budget_seconds
        while loop.time() < end:
            try:
                batch = await asyncio.to_thread(self._next)
                if not batch:
                    break
                await asyncio.to_thread(self._run_batch, batch, stoppable=False)
            except Exception as exc:  # what is left waits in the journal for the next start
                log.error("stopping with mail unprocessed: %s", describe(exc))
                break
        if self.holder is not None:  # unprocessed claims go back to the other processors
            try:
                await asyncio.to_thread(self.pipeline.unclaim, self.holder)
            except Exception as exc:
                log.warning("claims of %s not given back (%s); they lapse in %.0f s",
                            self.holder, describe(exc), CLAIM_SECONDS)
