"""`compose` takes whatever an outbox row holds: the world's addresses, names and Message-IDs
either make a clean mail or a declared failure for that one row, never an injected header."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.parser import Parser
from email.policy import SMTPUTF8
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.domain import Notification, Recipient
from maild.errors import DeliveryError
from maild.outbound.compose import Identity, UncomposableError, compose
from maild.outbound.render import Rendered
from maild.tokens import Signer
from store.outbox_rows import OutgoingMail

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ME = Identity(from_addr="support@example.com", from_name="Example Support",
              reply_local="support", reply_domain="example.com")
SIGNER = Signer("test-secret-key-0123456789abcdef")
OURS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "reply-to",
        "auto-submitted", "x-auto-response-suppress", "x-maild-loop", "x-maild-ticket",
        "mime-version", "content-type", "content-transfer-encoding"}


def row(*, to: str = "alice@customer.example", name: str = "Alice",
        message_id: str | None = None, in_reply_to: str | None = None,
        references: tuple[str, ...] = (), ticket_id: int | None = 7,
        user_id: int | None = None) -> OutgoingMail:
    note = Notification(template="ticket/customer/created",
                        recipient=Recipient(email=to, name=name, user_id=user_id),
                        message_id=(f"<{uuid.uuid4().hex}@example.com>" if message_id is None
                                    else message_id),
                        ticket_id=ticket_id, group_id=1, in_reply_to=in_reply_to,
                        references=references)
    return OutgoingMail(id=1, attempts=1, created_at=NOW, notification=note)


def rendered(subject: str = "[#7] Printer on fire", text: str = "We are on it.\n",
             html: str | None = "<p>We are on it.</p>") -> Rendered:
    return Rendered(subject=subject, text=text, html=html)


def parse(message: bytes) -> EmailMessage:
    """As a reader does: UTF-8 headers (RFC 6532) read as UTF-8."""
    parsed = Parser(policy=SMTPUTF8).parsestr(message.decode("utf-8"))
    assert isinstance(parsed, EmailMessage)
    return parsed


def head_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def assert_clean_head(message: bytes, utf8: bool) -> dict[str, int]:
    """Every header line CRLF-ended, no bare CR or LF, no control character, continuation
    lines indented, only maild's own fields, each once; the field counts."""
    head = head_of(message)
    seen: dict[str, int] = {}
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line), line
        assert len(line) <= 998
        text = line.decode("utf-8" if utf8 else "ascii")
        if text[:1] in (" ", "\t"):
            continue
        name, colon, _ = text.partition(":")
        assert colon and re.fullmatch(r"[!-9;-~]+", name), line
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
    assert set(seen) <= OURS, set(seen) - OURS
    assert all(n == 1 for n in seen.values()), seen
    return seen


def test_a_non_ascii_message_id_is_not_referenced_and_the_mail_goes() -> None:
    mail = row(in_reply_to="<caf\u00e9@customer.example>",
               references=("<a@customer.example>", "<\u00f1o\udcff@x.example>",
                           "<b@customer.example>"))
    out = compose(mail, rendered(), signer=SIGNER, me=ME, now=NOW)
    assert not out.utf8
    parsed = message_from_bytes(out.message)
    assert parsed["In-Reply-To"] is None
    assert parsed["References"].split() == ["<a@customer.example>", "<b@customer.example>"]
    assert parsed["Message-ID"] == mail.message_id
    assert_clean_head(out.message, utf8=False)


def test_an_internationalised_address_makes_a_utf8_mail() -> None:
    out = compose(row(to="j\u00f6s\u00e9@example.org", name="Jos\u00e9 \u00d6"), rendered(),
                  signer=SIGNER, me=ME, now=NOW)
    assert out.utf8 and out.recipients == ("j\u00f6s\u00e9@example.org",)
    parsed = parse(out.message)
    [to] = parsed["To"].addresses
    assert (to.addr_spec, to.display_name) == ("j\u00f6s\u00e9@example.org", "Jos\u00e9 \u00d6")
    assert b"=?utf-8?" in head_of(out.message)  # the name stays RFC 2047
    assert_clean_head(out.message, utf8=True)


def test_an_internationalised_domain_goes_as_idna_to_any_relay() -> None:
    out = compose(row(to="ana@b\u00fccher.example"), rendered(), signer=SIGNER, me=ME, now=NOW)
    assert not out.utf8 and out.recipients == ("ana@xn--bcher-kva.example",)
    assert b"To: Alice <ana@xn--bcher-kva.example>" in out.message


@pytest.mark.parametrize("name", ["Eve\r\nBcc: victim@example.org", "Eve\nBcc: v@x.example",
                                  "Eve\rBcc: v@x.example", "Eve\x00\x1b[31m", "Eve\u2028Bcc: v@x",
                                  "Eve\x85Bcc: v@x", "\"Eve\" <evil@x.example>, other@x",
                                  "Eve \udcc3\udca9", "Eve\ud800"])
def test_names_and_subjects_never_add_a_header(name: str) -> None:
    out = compose(row(name=name), rendered(subject=name, text=name, html=name), signer=SIGNER,
                  me=ME, now=NOW)
    seen = assert_clean_head(out.message, utf8=False)
    assert "bcc" not in seen
    parsed = parse(out.message)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["alice@customer.example"]


def test_surrogateescaped_utf8_reads_as_the_text_it_was() -> None:
    name = "Jos\u00e9".encode().decode("ascii", "surrogateescape")  # raw 8-bit, as kept
    out = compose(row(name=name), rendered(subject=name, text=name + "\n"), signer=SIGNER,
                  me=ME, now=NOW)
    parsed = parse(out.message)
    assert parsed["To"].addresses[0].display_name == "Jos\u00e9"
    assert str(parsed["Subject"]) == "Jos\u00e9"


@pytest.mark.parametrize(("to", "message_id"), [
    ("alice@customer.example\r\nRCPT TO:<x@y.example>", None),
    ("alice customer@example.org", None), ("a@b.example, c@d.example", None),
    ("<alice@customer.example>", None), ("no-at-sign", None), ("", None),
    ("alice\x00@customer.example", None), ("al\ud800ice@customer.example", None),
    ("alice@customer.example", "<caf\u00e9@example.com>"),
    ("alice@customer.example", "<a b@example.com>"),
    ("alice@customer.example", "no-brackets@example.com"),
])
def test_a_row_that_can_never_be_a_mail_is_a_declared_failure(to: str,
                                                               message_id: str | None) -> None:
    with pytest.raises(UncomposableError) as caught:
        compose(row(to=to, message_id=message_id), rendered(), signer=SIGNER, me=ME, now=NOW)
    assert repr(to) in str(caught.value) or "Message-ID" in str(caught.value)


def test_long_subjects_and_names_fold_within_the_line_limit() -> None:
    word = "x" * 1500
    out = compose(row(name=word, references=tuple(f"<{i}{'r' * 60}@x.example>"
                                                  for i in range(40))),
                  rendered(subject=f"{word} and \u00fcber {word}"), signer=SIGNER, me=ME,
                  now=NOW)
    assert all(len(line) <= 100 for line in head_of(out.message).split(b"\r\n"))
    parsed = parse(out.message)
    assert str(parsed["Subject"]) == f"{word} and \u00fcber {word}"
    assert len(parsed["References"].split()) == 40


def test_a_work_order_attachment_with_odd_text_composes() -> None:
    out = compose(row(), rendered(text="caf\udcc3\udca9 \ud800\n", html=None), signer=SIGNER,
                  me=ME, now=NOW, attachments=(("work\u00f6rder\r\n.pdf", "application/pdf",
                                                b"%PDF-1.4"),))
    parsed = parse(out.message)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed", "text/plain", "application/pdf"]
    assert parsed.get_body(("plain",)).get_content().startswith("caf\u00e9")
    assert_clean_head(out.message, utf8=False)


# -- the property --------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
NASTY = st.sampled_from(["\r\n", "\r", "\n", "\x00", "\t", "\u2028", "\x85", "\x0b",
                         "Bcc: evil@x.example", "=?utf-8?q?x?=", '"', "<", ">", ",", "@",
                         "\\", ":", ";", " ", "\ud800", "\udcff", "j\u00f6s\u00e9", "\u00a0"])
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=8).map("".join),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(st.sampled_from("ab "), min_size=100, max_size=1200))
ASCII_ADDRESS = st.emails()
ADDRESS = st.one_of(
    ASCII_ADDRESS,
    st.builds(lambda u, d: f"{u}@{d}", st.text(ANY_CHAR, min_size=1, max_size=12),
              st.sampled_from(["example.org", "b\u00fccher.example", "x.example"])),
    TEXT)
ASCII_ID = st.from_regex(r"\A<[a-z0-9.$%+-]{1,30}@[a-z0-9.-]{1,20}>\Z")
MESSAGE_ID = st.one_of(ASCII_ID, TEXT.map(lambda t: f"<{t}@x.example>"), TEXT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to=ADDRESS, name=TEXT, subject=TEXT, body=TEXT, own=st.one_of(ASCII_ID, MESSAGE_ID),
       in_reply_to=st.none() | MESSAGE_ID, references=st.lists(MESSAGE_ID, max_size=5),
       user=st.none() | st.integers(1, 5), html=st.booleans())
def test_compose_never_raises_undeclared_and_never_injects(
        to: str, name: str, subject: str, body: str, own: str, in_reply_to: str | None,
        references: list[str], user: int | None, html: bool) -> None:
    mail = row(to=to, name=name, message_id=own, in_reply_to=in_reply_to,
               references=tuple(references), user_id=user)
    try:
        out = compose(mail, rendered(subject=subject, text=body, html=body if html else None),
                      signer=SIGNER, me=ME, now=NOW)
    except DeliveryError as exc:
        assert isinstance(exc, UncomposableError) and str(exc)
        # Only a recipient or an own Message-ID that really is unusable may fail a row.
        plain = re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+", to)
        good_id = re.fullmatch(r"<[!-;=?-~]+@[!-;=?-~]+>", own) and len(own) <= 250
        assert not (plain and good_id), (to, own, exc)
        return
    seen = assert_clean_head(out.message, out.utf8)
    assert seen["to"] == 1 and seen["message-id"] == 1
    parsed = parse(out.message)
    assert len(parsed["To"].addresses) == 1
    raw = message_from_bytes(out.message)  # compat32: the fields as written, undecoded
    assert raw["Message-ID"] == own
    assert out.recipients[0] in str(parsed["To"])
    assert out.utf8 == (not out.recipients[0].isascii())
    for ref in [*(raw["References"] or "").split(), raw["In-Reply-To"] or ""]:
        assert ref == "" or (ref.isascii() and ref in [in_reply_to, *references])
    text: Any = parsed.get_body(("plain",))
    assert text is not None and isinstance(text.get_content(), str)
