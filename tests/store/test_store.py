"""One contract suite for every store: SQLite files and the PostgreSQL server."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.domain import Access, Channel, Envelope, JournalState, OutboxState, UserKind
from maild.errors import NotFound
from store import db, journal, outbox, people
from store.blobs import BlobStore
from store.directory import load_directory
from store.journal import Incoming
from store.outbox_rows import OutgoingMail
from store.sync import GroupSpec, UserSpec, sync

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def factory(database: str) -> sessionmaker[Session]:
    engine = db.make_engine(database)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def staff(login: str, *emails: str, **groups: Access) -> UserSpec:
    return UserSpec(login=login, name=login.title(), emails=emails, groups=dict(groups))


def test_migrations_create_every_table(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    assert not db.needs_upgrade(engine)
    db.upgrade(engine)  # idempotent
    # …and the migrations build exactly what the models declare (no forgotten revision)
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from store.models import Base

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_sync_groups_staff_and_addresses(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        sync(s, [GroupSpec(name="Support", addresses=("support@example.com",),
                           default_owner="ramon")],
             [staff("ramon", "ramon@example.com", Support=Access.MANAGE)], NOW)
    with db.transaction(factory) as s:
        d = load_directory(s)
        g = d.group_for_address("SUPPORT@example.com")
        assert g is not None and g.name == "Support"
        ramon = d.staff_for_address("ramon@example.com")
        assert ramon is not None and ramon.kind is UserKind.STAFF
        assert people.user_by_address(s, "ramon@example.com") == ramon
        assert g.default_owner_id == ramon.id
        assert d.level(ramon.id, g.id) is Access.MANAGE
    # a second start with changed config moves the address and the access level
    with db.transaction(factory) as s:
        sync(s, [GroupSpec(name="Support", addresses=("help@example.com",),
                           default_owner="ramon")],
             [staff("ramon", "ramon@new.example", Support=Access.VIEW)], NOW)
    with db.transaction(factory) as s:
        d = load_directory(s)
        assert d.group_for_address("support@example.com") is None
        assert d.group_for_address("help@example.com") is not None
        assert d.staff_for_address("ramon@example.com") is None
        ramon2 = d.staff_for_address("ramon@new.example")
        assert ramon2 is not None and ramon2.id == ramon.id
        assert d.level(ramon.id, g.id) is Access.VIEW


def test_journal_finish_is_an_optimistic_claim_and_requeue(
        factory: sessionmaker[Session]) -> None:
    env = Envelope(mail_from="a@b.example", rcpt_tos=("support@example.com",),
                   channel=Channel.SMTP)
    with db.transaction(factory) as s:
        [jid] = journal.insert_many(s, [Incoming(envelope=env, raw=b"Subject: x\r\n\r\nhi")],
                                   NOW)
    with db.transaction(factory) as s:
        assert journal.pending_ids(s) == [jid]
        assert journal.finish(s, jid, JournalState.QUARANTINED, NOW, outcome="quarantined",
                              reason="boom", only_if_pending=True)
    with db.transaction(factory) as s:
        # a second worker that processed the same row loses: its result is not recorded
        assert not journal.finish(s, jid, JournalState.DONE, NOW, only_if_pending=True)
        e = journal.entry(s, jid)
        assert e.state is JournalState.QUARANTINED and e.reason == "boom"
        assert e.rcpt_tos == ("support@example.com",)
        assert journal.raw(s, jid).endswith(b"hi")
        assert journal.pending_ids(s) == []
        assert journal.requeue(s, jid) is JournalState.QUARANTINED
    with db.transaction(factory) as s:
        assert journal.pending_ids(s) == [jid]
        with pytest.raises(NotFound):
            journal.entry(s, jid + 1000)


def claim(s: Session, now: datetime, limit: int) -> list[OutgoingMail]:
    """What the delivery worker does: read the due rows, then lease those still due."""
    return outbox.lease(s, outbox.due(s, now, limit), now, timedelta(minutes=5))


def test_outbox_lease_retry_and_cap_count(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        ids = [outbox.add(s, now=NOW, template="t", to_addr="x@example.com", to_user_id=None,
                          ticket_id=None, group_id=None, message_id=f"<m{i}@example.com>",
                          context={"i": i}, automatic=True) for i in range(3)]
        outbox.add(s, now=NOW, template="t", to_addr="x@example.com", to_user_id=None,
                   ticket_id=None, group_id=None, message_id="<held@example.com>", context={},
                   automatic=True, state=OutboxState.HELD_BACK)
        assert outbox.automatic_since(s, "x@example.com", NOW - timedelta(days=1)) == 3
    with db.transaction(factory) as s:
        read = outbox.due(s, NOW, 2)
        batch = outbox.lease(s, read, NOW, timedelta(minutes=5))
        assert [m.id for m in batch] == ids[:2]
        assert batch[0].notification.context == {"i": 0}
        # a second worker that read the same rows gets none of them
        assert outbox.lease(s, read, NOW, timedelta(minutes=5)) == []
    with db.transaction(factory) as s:
        rest = claim(s, NOW, 10)
        assert [m.id for m in rest] == ids[2:]  # the leased ones are not handed out twice
        outbox.mark_sent(s, [ids[0]], NOW)
        outbox.mark_failed(s, ids[1], "451 later", retry_at=NOW + timedelta(minutes=1))
        outbox.mark_failed(s, ids[2], "550 no", retry_at=None)
    with db.transaction(factory) as s:
        assert claim(s, NOW, 10) == []
        again = claim(s, NOW + timedelta(minutes=2), 10)
        assert [m.id for m in again] == [ids[1]] and again[0].attempts == 2
        assert outbox.counts(s) == {"sent": 1, "dead": 1, "pending": 1, "held_back": 1}


def test_journal_batch_insert_returns_ids_in_order(factory: sessionmaker[Session]) -> None:
    items = [Incoming(envelope=Envelope(mail_from=f"s{i}@b.example", rcpt_tos=("x@y.example",),
                                        channel=Channel.LMTP), raw=f"Subject: {i}\r\n\r\n".encode(),
                      source=f"peer{i}") for i in range(5)]
    with db.transaction(factory) as s:
        ids = journal.insert_many(s, items, NOW)
    with db.transaction(factory) as s:
        assert [journal.entry(s, j).source for j in ids] == [f"peer{i}" for i in range(5)]
        batch = journal.load_pending(s, limit=10, max_bytes=1)  # always at least one
        assert [jid for jid, _, _ in batch] == ids[:1]
        batch = journal.load_pending(s, limit=10, max_bytes=10_000)
        assert [jid for jid, _, _ in batch] == ids
        assert batch[2][1] == b"Subject: 2\r\n\r\n" and batch[2][2].mail_from == "s2@b.example"


def test_upgrade_keeps_the_mail_of_journal_rows_written_before_0004(database: str) -> None:
    """Migration 0004 moves the raw bytes out of the journal row: mail already in the
    journal of an older install is still there, byte for byte, and can be processed."""
    from alembic import command
    from sqlalchemy import text

    engine = db.make_engine(database)
    try:
        command.upgrade(db.alembic_config(engine), "0003")
        raw = b"Subject: before\r\n\r\n\xe9t\xe9\r\n"
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO journal (id, received_at, channel, source, mail_from, rcpt_tos, raw,"
                " size, sha256, state, attempts) VALUES (7, :at, 'smtp', 'peer', 'a@b.example',"
                " 'x@y.example', :raw, :size, 'abc', 'pending', 0)"),
                {"at": NOW.replace(tzinfo=None), "raw": raw, "size": len(raw)})
        db.upgrade(engine)
        factory = db.session_factory(engine)
        with db.transaction(factory) as s:
            assert journal.raw(s, 7) == raw
            assert [(jid, body) for jid, body, _ in journal.load_pending(s, 10, 10_000)] == [
                (7, raw)]
    finally:
        engine.dispose()


def test_prepared_statements_store_and_read_what_sqlalchemy_does(
        factory: sessionmaker[Session]) -> None:
    """`Prepared` runs Core statements on the DBAPI cursor: what it writes, SQLAlchemy reads
    back unchanged (aware UTC datetimes, JSON, booleans, NULLs), what SQLAlchemy wrote it
    reads the same, a constant of the statement is bound, and a DBAPI error is raised as
    SQLAlchemy's, so `db.transaction` still turns it into a StoreError."""
    from sqlalchemy import bindparam, insert, select

    from maild.errors import StoreError
    from store.models import Outbox
    from store.prepared import Prepared

    when = datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)
    row = {"created_at": when, "ticket_id": None, "group_id": None,
           "template": "ticket/creator/created", "to_addr": "ana@example.org",
           "to_user_id": None, "automatic": True, "message_id": "<p1@x>", "in_reply_to": None,
           "references": None, "context": {"ticket": {"id": 7, "title": "Ñandú ✓"}, "n": None},
           "state": "pending", "attempts": 0, "next_attempt_at": when, "lease_until": None}
    insert_row = Prepared(insert(Outbox).returning(Outbox.id, Outbox.created_at))
    read = Prepared(select(Outbox.created_at, Outbox.context, Outbox.automatic,
                           Outbox.lease_until).where(Outbox.message_id == bindparam("mid"),
                                                     Outbox.state == "pending"))
    with db.transaction(factory) as s:
        new_id, created = insert_row.first(s, row)
        assert created == when and created.tzinfo is not None
        core = s.execute(select(Outbox).where(Outbox.id == new_id)).scalar_one()
        assert (core.created_at, core.context, core.automatic, core.lease_until) == (
            when, row["context"], True, None)
        s.execute(insert(Outbox), [{**row, "message_id": "<p2@x>", "automatic": False,
                                    "created_at": when + timedelta(days=1)}])
        assert tuple(read.first(s, {"mid": "<p2@x>"})) == (
            when + timedelta(days=1), row["context"], False, None)
        assert read.first(s, {"mid": "<none@x>"}) is None
    with pytest.raises(StoreError), db.transaction(factory) as s:
        insert_row.first(s, row)  # the same Message-ID again: unique constraint
    # the connection's cursor, kept for the next statements, still serves after the error
    with db.transaction(factory) as s:
        assert read.first(s, {"mid": "<p2@x>"}) is not None
        assert [r.created_at for r in read.rows(s, {"mid": "<p2@x>"})] == [
            when + timedelta(days=1)]
    with pytest.raises(TypeError, match="expanding"), db.transaction(factory) as s:
        Prepared(select(Outbox.id).where(Outbox.id.in_(bindparam("ids", expanding=True)))
                 ).rows(s, {"ids": [1]})


def test_sqlite_commits_are_synced_to_disk_unless_asked(tmp_path: Path) -> None:
    # A 250 follows the journal commit: it must survive a power cut, not only a crash.
    for synced, level in ((True, 2), (False, 1)):  # FULL; NORMAL (fsync at checkpoints)
        engine = db.make_engine(f"sqlite:///{tmp_path / 'maild.db'}", synced=synced)
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            assert driver.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert driver.execute("PRAGMA synchronous").fetchone()[0] == level
        engine.dispose()


def test_blob_store_keeps_content_once_under_its_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"%PDF-1.4 invoice\n" * 100
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.put(data) == key
    assert store.get(key) == data
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [store.path(key)]  # no temporary file left behind
