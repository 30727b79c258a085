"""The store's face to the rest of maild: a `Database` that hands out units of work.

`Database.write()` / `Database.read()` give a `Tx`: one transaction, with the store's
operations on it grouped by aggregate (`tx.tickets.ticket_row(7)`, `tx.outbox.due(now, 50)`).
Callers never see an engine, a sessionmaker, a Session or an ORM object: only `Tx` and the
typed records the operations return. Each operation is a module function of the store that
takes the session first; `op` binds it to the transaction's session and keeps its signature,
so mypy checks every call site.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from store import (
    backlog,
    blob_rows,
    db,
    directory,
    journal,
    locks,
    meta,
    nodes,
    outbox,
    people,
    ratings,
    reports,
    search,
    sla,
    sync,
    ticket_reads,
    tickets,
)

P = ParamSpec("P")
R = TypeVar("R")


class Ops:
    """One aggregate's operations, bound to a transaction's session."""

    __slots__ = ("_s",)

    def __init__(self, s: Session) -> None:
        self._s = s


class op(Generic[P, R]):  # lower case: it reads as a marker in the class bodies below
    """A store function `f(session, *args)` seen from a `Tx` as `f(*args)`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[Session, P], R]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Ops] | None = None) -> op[P, R]: ...
    @overload
    def __get__(self, obj: Ops, owner: type[Ops] | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: Ops | None,
                owner: type[Ops] | None = None) -> op[P, R] | Callable[P, R]:
        if obj is None:  # read on the class (a test planting a fault there)
            return self
        return cast(Callable[P, R], partial(self.fn, obj._s))


class Journal(Ops):
    __slots__ = ()
    insert_many = op(journal.insert_many)
    known_sha256 = op(journal.known_sha256)
    load = op(journal.load)
    finish = op(journal.finish)
    requeue = op(journal.requeue)
    pending_ids = op(journal.pending_ids)
    load_pending = op(journal.load_pending)
    claim = op(journal.claim)
    unclaim = op(journal.unclaim)
    load_many = op(journal.load_many)
    newest_id = op(journal.newest_id)
    seen_message_id = op(journal.seen_message_id)
    raws = op(journal.raws)
    raw = op(journal.raw)
    entries = op(journal.entries)
    entry = op(journal.entry)
    oldest_pending = op(backlog.oldest_pending_journal)


class Tickets(Ops):
    __slots__ = ()
    # writes
    insert_ticket = op(tickets.insert_ticket)
    insert_workunit = op(tickets.insert_workunit)
    insert_attachments = op(tickets.insert_attachments)
    insert_history = op(tickets.insert_history)
    insert_message_refs = op(tickets.insert_message_refs)
    insert_awaited_refs = op(tickets.insert_awaited_refs)
    touch = op(tickets.touch)
    set_status = op(tickets.set_status)
    update_ticket = op(tickets.update_ticket)
    update_ticket_if = op(tickets.update_ticket_if)
    record_first_response = op(tickets.record_first_response)
    add_cc = op(tickets.add_cc)
    remove_cc = op(tickets.remove_cc)
    # reads
    ticket_row = op(ticket_reads.ticket_row)
    ticket_rows = op(ticket_reads.ticket_rows)
    ticket_cc = op(ticket_reads.ticket_cc)
    ancestors = op(ticket_reads.ancestors)
    children = op(ticket_reads.children)
    time_used = op(ticket_reads.time_used)
    ticket_entered_as = op(ticket_reads.ticket_entered_as)
    ticket_exists = op(ticket_reads.ticket_exists)
    ticket_for_message_ids = op(ticket_reads.ticket_for_message_ids)
    message_id_known = op(ticket_reads.message_id_known)
    associated_user_ids = op(ticket_reads.associated_user_ids)
    is_associated = op(ticket_reads.is_associated)
    may_reply = op(ticket_reads.may_reply)
    tickets_of_creator = op(ticket_reads.tickets_of_creator)
    tickets_opened_since = op(ticket_reads.tickets_opened_since)
    ticket_view = op(ticket_reads.ticket_view)
    list_tickets = op(ticket_reads.list_tickets)


class People(Ops):
    __slots__ = ()
    insert_customer = op(people.insert_customer)
    customer_by_address = op(people.customer_by_address)
    user_ref = op(people.user_ref)
    user_refs = op(people.user_refs)
    user_by_address = op(people.user_by_address)
    user_by_login = op(people.user_by_login)
    is_qa = op(people.is_qa)
    group_by_name = op(people.group_by_name)
    directory = op(directory.load_directory)
    sync = op(sync.sync)


class Outbox(Ops):
    __slots__ = ()
    add = op(outbox.add)
    add_many = op(outbox.add_many)
    automatic_since = op(outbox.automatic_since)
    due = op(outbox.due)
    lease = op(outbox.lease)
    renew = op(outbox.renew)
    holders_on = op(outbox.holders_on)
    next_lease_end = op(outbox.next_lease_end)
    release = op(outbox.release)
    mark_sent = op(outbox.mark_sent)
    mark_failed = op(outbox.mark_failed)
    next_due = op(outbox.next_due)
    counts = op(outbox.counts)
    entries = op(outbox.entries)
    entry = op(outbox.entry)
    retry = op(outbox.retry)
    record_bounce = op(outbox.record_bounce)
    by_id = op(outbox.by_id)
    by_message_id = op(outbox.outbox_by_message_id)
    oldest_due = op(backlog.oldest_due_outbox)


class Sla(Ops):
    __slots__ = ()
    rows = op(sla.rows)
    due_ids = op(sla.due_ids)
    open_ids = op(sla.open_ids)
    set_due = op(sla.set_due)
    start_breaches = op(sla.start_breaches)
    end_breaches = op(sla.end_breaches)
    breaches = op(sla.breaches)
    counting_in_group = op(sla.counting_in_group)
    pending_close_before = op(sla.pending_close_before)
    count_due = op(sla.count_due)


class Ratings(Ops):
    __slots__ = ()
    get = op(ratings.get)
    put = op(ratings.put)
    summary = op(ratings.summary)
    metrics = op(ratings.metrics)


class Reports(Ops):
    __slots__ = ()
    ticket_ids = op(reports.ticket_ids)
    lives = op(reports.lives)
    work = op(reports.work)


class Search(Ops):
    __slots__ = ()
    run = op(search.run)
    save = op(search.save)
    load = op(search.load)
    names = op(search.names)


class Meta(Ops):
    __slots__ = ()
    get = op(meta.meta)
    set = op(meta.set_meta)


class Nodes(Ops):
    __slots__ = ()
    register = op(nodes.register)
    beat = op(nodes.beat)
    stopped = op(nodes.stopped)
    take = op(nodes.take)
    release = op(nodes.release)
    holder = op(nodes.holder)
    all = op(nodes.nodes)
    leases = op(nodes.leases)


class Blobs(Ops):
    __slots__ = ()
    put = op(blob_rows.put)
    get = op(blob_rows.get)
    attachment = op(blob_rows.attachment)


class Locks(Ops):
    __slots__ = ()
    hold = op(locks.hold)


class Tx:
    """One unit of work: every operation on it runs in one transaction, committed when the
    `with` block ends normally and rolled back when it raises. `memo` holds what the caller
    wants remembered for this transaction only (it dies with it, rollback included)."""

    __slots__ = (
        "_s",
        "blobs",
        "journal",
        "locks",
        "memo",
        "meta",
        "nodes",
        "outbox",
        "people",
        "ratings",
        "reports",
        "search",
        "sla",
        "tickets",
    )

    def __init__(self, s: Session) -> None:
        self._s = s
        self.journal = Journal(s)
        self.tickets = Tickets(s)
        self.people = People(s)
        self.outbox = Outbox(s)
        self.sla = Sla(s)
        self.ratings = Ratings(s)
        self.reports = Reports(s)
        self.search = Search(s)
        self.meta = Meta(s)
        self.nodes = Nodes(s)
        self.blobs = Blobs(s)
        self.locks = Locks(s)
        self.memo: dict[str, dict[Any, Any]] = {}


class Database:
    """One database: its engine, writers' and readers' sessions, its schema."""

    def __init__(self, url: str, *, synced: bool = True, echo: bool = False) -> None:
        self._use(db.make_engine(url, echo=echo, synced=synced))

    @classmethod
    def over(cls, engine: Engine) -> Database:
        """A Database on an engine made elsewhere (a test that plants a fault in the
        connection: a read-only file, a proxy)."""
        self = cls.__new__(cls)
        self._use(engine)
        return self

    def _use(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = db.session_factory(engine)
        self._reader = db.read_only_factory(engine)

    @property
    def engine(self) -> Engine:
        """For Alembic and for tests that look into the tables; maild's code never uses it."""
        return self._engine

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A transaction that may write (on SQLite it queues for the write lock up front)."""
        with db.transaction(self._writer) as s:
            yield Tx(s)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A transaction that only reads (on SQLite it does not wait for writers)."""
        with db.transaction(self._reader) as s:
            yield Tx(s)

    def ping(self) -> str | None:
        """None when the database answers, else why not (for health and supervisors)."""
        return db.ping(self._reader)

    def checkpoint(self) -> None:
        db.checkpoint(self._engine)

    def is_empty(self) -> bool:
        return db.is_empty(self._engine)

    def needs_upgrade(self) -> bool:
        return db.needs_upgrade(self._engine)

    def upgrade(self) -> None:
        db.upgrade(self._engine)

    def dispose(self) -> None:
        """Close every pooled connection (a stopping process, a test's teardown)."""
        self._engine.dispose()
