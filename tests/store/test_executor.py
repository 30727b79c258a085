"""The store's writes that used to go through the ORM's unit of work (upserts, adoption of a
customer by the config, retries, bounces, ratings), now Core statements through the one
executor: what they write reads back, on SQLite files and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.domain import Access, OutboxState, UserKind
from maild.errors import MaildError
from store import db, meta, outbox, people, ratings, ticket_reads, tickets
from store.directory import load_directory
from store.sync import GroupSpec, UserSpec, sync

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def factory(database: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def test_meta_is_an_upsert(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        assert meta.meta(s, "k") is None
        meta.set_meta(s, "k", "one")
        meta.set_meta(s, "k", "two")
        assert meta.meta(s, "k") == "two"


def test_sync_adopts_a_customer_who_becomes_staff(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        customer = people.insert_customer(s, address="ana@example.com", name="Ana", now=NOW)
        assert people.customer_by_address(s, "ana@example.com") == customer
        assert customer.kind is UserKind.CUSTOMER and customer.login is None
    spec = UserSpec(login="ana", name="Ana Staff", emails=("ana@example.com", "a@example.com"),
                    groups={"Support": Access.EDIT}, company="Acme")
    group = GroupSpec(name="Support", addresses=("support@example.com",), default_owner="ana")
    with db.transaction(factory) as s:
        sync(s, [group], [spec], NOW)
        sync(s, [group], [spec], NOW)  # a second start changes nothing
    with db.transaction(factory) as s:
        d = load_directory(s)
        ana = d.staff_for_address("a@example.com")
        assert ana is not None and ana.id == customer.id and ana.kind is UserKind.STAFF
        assert (ana.login, ana.name, ana.email, ana.company) == (
            "ana", "Ana Staff", "ana@example.com", "Acme")
        g = people.group_by_name(s, "Support")
        assert g is not None and g.default_owner_id == ana.id and d.groups[g.id] == g
        assert d.level(ana.id, g.id) is Access.EDIT
    with db.transaction(factory) as s:  # dropped from the config: kept, inactive
        sync(s, [], [], NOW)
    with db.transaction(factory) as s:
        d = load_directory(s)
        assert not d.staff and not d.groups


def test_ratings_put_twice_changes_the_one_rating(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        sync(s, [GroupSpec(name="G", addresses=("g@example.com",), default_owner=None)], [],
             NOW)
        group = people.group_by_name(s, "G")
        assert group is not None
        user = people.insert_customer(s, address="c@example.com", name="C", now=NOW)
        tid = tickets.insert_ticket(s, title="t", status="closed", priority="normal",
                                    group_id=group.id, editor="smtp", thread_id="<t@x>",
                                    created_at=NOW, updated_at=NOW, creator_id=user.id)
        ratings.put(s, ticket_id=tid, user_id=user.id, good=True, comment="", now=NOW)
        later = NOW + timedelta(hours=1)
        ratings.put(s, ticket_id=tid, user_id=user.id, good=False, comment="slow", now=later)
        r = ratings.get(s, tid)
        assert r is not None and (r.good, r.comment, r.rated_at, r.changed_at) == (
            False, "slow", NOW, later)
        assert ratings.summary(s, group_id=group.id) == (0, 1)
        assert ratings.metrics(s)["tickets_opened"] == 1
        view = ticket_reads.ticket_view(s, tid)
        assert (view.title, view.group, view.creator, view.custom) == ("t", "G",
                                                                       "c@example.com", {})


def test_outbox_retry_and_bounce(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        oid = outbox.add(s, now=NOW, template="t", to_addr="x@example.com", to_user_id=None,
                         ticket_id=None, group_id=None, message_id="<r@example.com>",
                         context={"recipient": {"name": "X", "email": "x@example.com"}})
        outbox.mark_failed(s, oid, "550 no", retry_at=None)
        assert outbox.by_id(s, oid) == outbox.entry(s, oid)
        assert outbox.entry(s, oid).recipient_name == "X"
        assert outbox.retry(s, oid, NOW + timedelta(hours=1)) == OutboxState.DEAD.value
        e = outbox.entry(s, oid)
        # due again, its last error kept until the next try: pending, shown as failing
        assert (e.state, e.next_attempt_at) == (outbox.FAILED, NOW + timedelta(hours=1))
        bid = outbox.record_bounce(s, now=NOW, address="x@example.com", outbox_id=oid,
                                   journal_id=None, status="5.1.1", diagnostic="no such user",
                                   permanent=True)
        assert bid > 0 and outbox.entry(s, oid).bounced_at == NOW
        assert outbox.outbox_by_message_id(s, "<r@example.com>") == oid
        outbox.mark_sent(s, [oid], NOW)
        with pytest.raises(MaildError, match="not retried"):
            outbox.retry(s, oid, NOW)
        assert [x.id for x in outbox.entries(s, state="sent")] == [oid]
