"""What an IMAP mailbox's state says is read, first contact, one message's failures, and the
envelope of a mail read over IMAP (the Dovecot tests are in tests/flow/test_imap.py)."""

from __future__ import annotations

import locale
import logging
from collections.abc import Callable
from datetime import date

import pytest

from maild.errors import ConfigError
from maild.inbound.imap_envelope import SOURCE_MAX, UNKNOWN_SENDER, envelope_of, journal_source
from maild.inbound.imap_state import Isolation, MailboxState, first_contact, imap_date
from maild.settings import Settings


def test_a_state_written_before_first_contact_existed_still_reads() -> None:
    old = MailboxState.from_json('{"uidvalidity": 7, "last_uid": 42}')
    assert old == MailboxState(uidvalidity=7, last_uid=42)
    assert old.new_searches() == [("UID 43:*", 43, None)]
    assert old.done_searches(unseen=True) == [("UID 1:42 UNSEEN", 1, 42)]


def test_state_round_trip() -> None:
    state = MailboxState(uidvalidity=7, last_uid=5, upto=9, criteria="UNSEEN",
                         since="2026-11-01", given_up=(3,))
    assert MailboxState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("after", "since", "criteria"),
    [
        ("seen", None, "UNSEEN"),
        ("move", None, ""),
        ("delete", None, ""),
        ("seen", date(2026, 11, 1), "SINCE 1-Nov-2026"),
        ("move", date(2026, 12, 24), "SINCE 24-Dec-2026"),
    ],
)
def test_first_contact(after: str, since: date | None, criteria: str) -> None:
    state = first_contact(9, 120, after=after, since=since)
    assert state.criteria == criteria and state.last_uid == 0
    if criteria:
        assert state.new_searches() == [(f"UID 1:120 {criteria}", 1, 120),
                                        ("UID 121:*", 121, None)]
    else:
        assert state.new_searches() == [("UID 1:*", 1, None)]


def test_after_first_contact_only_new_uids_are_searched_and_acted_on() -> None:
    state = MailboxState(uidvalidity=9, last_uid=150, upto=120, criteria="SINCE 1-Nov-2026")
    assert state.new_searches() == [("UID 151:*", 151, None)]
    # the after-action never reaches a message older than `since` (it was never read)
    assert state.done_searches(unseen=False) == [("UID 1:120 SINCE 1-Nov-2026", 1, 120),
                                                 ("UID 121:150", 121, 150)]
    assert first_contact(9, 0, after="seen", since=None).new_searches() == [("UID 1:*", 1, None)]


def test_imap_dates_are_english_whatever_the_locale() -> None:
    saved = locale.setlocale(locale.LC_TIME)
    try:
        for name in ("de_DE.UTF-8", "fr_FR.UTF-8"):
            try:
                locale.setlocale(locale.LC_TIME, name)
                break
            except locale.Error:
                continue
        assert imap_date(date(2026, 3, 4)) == "4-Mar-2026"
    finally:
        locale.setlocale(locale.LC_TIME, saved)


def test_one_message_is_given_up_after_its_tries(caplog: pytest.LogCaptureFixture) -> None:
    memory = Isolation("imap:support@mx:993/INBOX", "INBOX", give_up_after=3)
    memory.numbering(5)
    assert [memory.strike(8, "FETCH refused") for _ in range(3)] == [False, False, True]
    assert memory.given_up == {8} and 8 in memory.alone
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "UID 8 left in INBOX after 3 failed tries" in errors[0].message
    memory.numbering(6)  # a new UIDVALIDITY: UID 8 is another message now
    assert memory.given_up == set() and memory.strikes == {}


# -- the envelope -------------------------------------------------------------------------------


def env(head: bytes) -> tuple[str, tuple[str, ...]]:
    e = envelope_of(head + b"\r\n\r\nbody\r\n", reply_local="support",
                    reply_domain="example.com", group_address="support@example.com")
    return e.mail_from, e.rcpt_tos


@pytest.mark.parametrize(
    ("head", "sender"),
    [
        (b"Return-Path: <bounces@list.example>\r\nFrom: a@b.example", "bounces@list.example"),
        (b"Return-Path: <>\r\nFrom: a@b.example", ""),
        (b"From: Jane <jane@customer.example>", "jane@customer.example"),
        (b"Return-Path: \r\nFrom: jane@customer.example", "jane@customer.example"),
        (b"Return-Path: ,\r\nFrom: jane@customer.example", "jane@customer.example"),
        (b"Return-Path: <" + b"x" * 400 + b"@e.example>\r\nFrom: j@c.example", "j@c.example"),
        (b"From: =?utf-8?q?Jos=C3=A9?= <jos\xc3\xa9@c.example>", "jos\u00e9@c.example"),
        (b"From: <j\xffo@customer.example>", "j\ufffdo@customer.example"),
        (b"From: <jo\x00e@customer.example>", "joe@customer.example"),
        (b"Subject: no sender at all", UNKNOWN_SENDER),
    ],
)
def test_the_sender_is_always_one_the_journal_can_store(head: bytes, sender: str) -> None:
    assert env(head)[0] == sender


def test_reply_addresses_come_before_the_group_address() -> None:
    head = (b"From: j@c.example\r\nDelivered-To: support+tok3n@example.com\r\n"
            b"To: support+other@example.com, someone@else.example, support+\xff@example.com")
    assert env(head)[1] == ("support+tok3n@example.com", "support+other@example.com",
                            "support+\ufffd@example.com", "support@example.com")


def test_the_source_fits_its_column() -> None:
    source = journal_source("imap:u@h:993/" + "F" * 300, 123456789, 4242)
    assert len(source) == SOURCE_MAX and source.endswith(";uidvalidity=123456789;uid=4242")


# -- the setting --------------------------------------------------------------------------------

IMAP = """
[[inbound.imap]]
host = "127.0.0.1"
tls = "none"
user = "support"
password = "x"
group = "Support"
"""


@pytest.mark.parametrize(("line", "day"), [("since = 2026-11-01", date(2026, 11, 1)),
                                           ('since = "2026-11-01"', date(2026, 11, 1)),
                                           ("", None)])
def test_since_is_a_date(make_settings: Callable[..., Settings], line: str,
                         day: date | None) -> None:
    [box] = make_settings(extra=IMAP + line).inbound.imap
    assert box.since == day


@pytest.mark.parametrize("line", ['since = "yesterday"', "since = 2026-11-01T10:00:00",
                                  "since = 20261101", 'since = "2026-13-01"'])
def test_since_must_be_a_date(make_settings: Callable[..., Settings], line: str) -> None:
    with pytest.raises(ConfigError, match=r"inbound\.imap\[0\]\.since"):
        make_settings(extra=IMAP + line)
