"""Mail classification: each rule, the order of the checks, and plain customer mail."""

from __future__ import annotations

import pytest

from maild.domain import Address, DeliveryReport, Envelope, Parsed
from maild.inbound.classify import AutoReply, Bounce, Loop, Mail, Verdict, classify

OWN = frozenset({"support@example.com", "helpdesk@example.com", "maild@example.com"})
CUSTOMER = Address(addr="jane@customer.example", name="Jane Doe")
ENVELOPE = Envelope(mail_from="jane@customer.example", rcpt_tos=("support@example.com",))
NULL_ENVELOPE = Envelope(mail_from="", rcpt_tos=("support@example.com",))
REPORT = DeliveryReport(
    recipients=("gone@customer.example",),
    status="5.1.1",
    diagnostic="550 5.1.1 User unknown",
    original_message_id="<ticket-12@example.com>",
)


def mail(
    *headers: tuple[str, str],
    subject: str = "Printer on floor 3 is broken",
    sender: Address | None = CUSTOMER,
    report: DeliveryReport | None = None,
    own_loop: bool = False,
) -> Parsed:
    """A customer's mail to support; `headers` as (name, value) like parse stores them."""
    return Parsed(
        message_id="<c1@customer.example>",
        subject=subject,
        sender=sender,
        to=(Address(addr="support@example.com"),),
        headers=(("from", "Jane Doe <jane@customer.example>"), *headers),
        text="Hello,\n\nthe printer on floor 3 prints blank pages.\n\nJane",
        report=report,
        own_loop=own_loop,
    )


def verdict(parsed: Parsed, envelope: Envelope = ENVELOPE) -> Verdict:
    return classify(parsed, envelope, own_addresses=OWN)


def test_customer_mail_is_plain_mail() -> None:
    assert verdict(mail()) == Mail(automated=False, reasons=())


def test_mail_without_a_sender_is_still_mail() -> None:
    assert verdict(mail(sender=None)) == Mail(automated=False)


# -- Loop ---------------------------------------------------------------------------------


def test_verified_loop_header_is_a_loop() -> None:
    assert isinstance(verdict(mail(own_loop=True)), Loop)


@pytest.mark.parametrize(
    "addr",
    [
        "support@example.com",
        "helpdesk@example.com",
        "support+r4kq7zt2mbx3@example.com",  # a reply address: base support@example.com
        "Support+TOKEN@Example.COM",
    ],
)
def test_mail_from_our_own_address_is_a_loop(addr: str) -> None:
    result = verdict(mail(sender=Address(addr=addr)))
    assert isinstance(result, Loop)
    assert addr.lower() in result.reason


@pytest.mark.parametrize(
    "addr",
    ["support@example.org", "support@sub.example.com", "support-team@example.com", "x+support@ex"],
)
def test_similar_addresses_are_not_ours(addr: str) -> None:
    assert verdict(mail(sender=Address(addr=addr))) == Mail(automated=False)


# -- Bounce -------------------------------------------------------------------------------


def test_delivery_report_is_a_bounce_carrying_the_report() -> None:
    result = verdict(mail(report=REPORT))
    assert isinstance(result, Bounce)
    assert result.report == REPORT


@pytest.mark.parametrize("mail_from", ["", "<>", " "])
def test_null_return_path_is_a_bounce(mail_from: str) -> None:
    envelope = Envelope(mail_from=mail_from, rcpt_tos=("support@example.com",))
    assert verdict(mail(), envelope) == Bounce(report=None, reason="null return path")


@pytest.mark.parametrize(
    "addr", ["mailer-daemon@mx.customer.example", "MAILER-DAEMON@mx.example.org", "postmaster@x.io"]
)
def test_mailer_daemon_and_postmaster_are_bounces(addr: str) -> None:
    result = verdict(mail(sender=Address(addr=addr)))
    assert isinstance(result, Bounce)
    assert result.report is None


def test_mailer_daemon_as_a_display_name_is_not_a_bounce() -> None:
    sender = Address(addr="jane@customer.example", name="MAILER-DAEMON")
    assert verdict(mail(sender=sender)) == Mail(automated=False)


# -- AutoReply ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ("auto-submitted", "auto-replied"),
        ("auto-submitted", '  Auto-Replied ; owner-email="jane@customer.example"'),
        ("x-autoreply", "yes"),
        ("x-autorespond", "Vacation"),
        ("x-autoresponder", "true"),
        ("x-ms-exchange-generated-message-source", "Mailbox Rules Agent"),
        ("x-ms-exchange-inbox-rules-loop", "jane@customer.example"),
        ("precedence", "auto_reply"),
        ("precedence", " AUTO_REPLY "),
    ],
    ids=lambda header: f"{header[0]}={header[1].strip()[:12]}",
)
def test_auto_reply_markers(header: tuple[str, str]) -> None:
    result = verdict(mail(header))
    assert isinstance(result, AutoReply)
    assert header[0] in result.reason


@pytest.mark.parametrize(
    "header",
    [
        ("x-autoreply", "no"),
        ("x-autoreply", ""),
        ("x-autorespond", " NO "),
        ("x-autoreply", "false"),
    ],
)
def test_negative_autoreply_flags_are_ignored(header: tuple[str, str]) -> None:
    assert verdict(mail(header)) == Mail(automated=False)


def test_auto_response_suppress_is_a_request_not_a_marker() -> None:
    assert verdict(mail(("x-auto-response-suppress", "All"))) == Mail(automated=False)


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer on floor 3 is broken",
        "Automatic reply: [#12] Printer",
        "Abwesenheitsnotiz: Drucker",
        "Réponse automatique : Imprimante",
        "Respuesta automática: Impresora",
    ],
)
def test_out_of_office_subject_alone_is_plain_mail(subject: str) -> None:
    assert verdict(mail(subject=subject)) == Mail(automated=False)


@pytest.mark.parametrize(
    "header", [("auto-submitted", "auto-generated"), ("precedence", "bulk"), ("precedence", "junk")]
)
def test_out_of_office_subject_with_an_automation_header_is_an_auto_reply(
    header: tuple[str, str],
) -> None:
    result = verdict(mail(header, subject="Out of Office: Printer"))
    assert isinstance(result, AutoReply)
    assert "out-of-office" in result.reason


def test_out_of_office_subject_on_a_list_is_automated_mail() -> None:
    result = verdict(mail(("list-id", "<staff.example.com>"), subject="Out of office next week"))
    assert result == Mail(automated=True, reasons=("list-id: <staff.example.com>",))


def test_auto_reply_to_the_helpdesk_itself_is_a_loop_not_an_auto_reply() -> None:
    parsed = mail(("auto-submitted", "auto-replied"), sender=Address(addr="support@example.com"))
    assert isinstance(verdict(parsed), Loop)


# -- Mail(automated=True) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (("auto-submitted", "auto-generated"), "auto-submitted: auto-generated"),
        (("auto-submitted", "auto-notified; owner-email=x@y"), "auto-submitted: auto-notified;"),
        (("precedence", "bulk"), "precedence: bulk"),
        (("precedence", "Junk"), "precedence: Junk"),
        (("precedence", "list"), "precedence: list"),
        (("list-id", "Printers <printers.lists.example.org>"), "list-id: Printers"),
        (("list-unsubscribe", "<mailto:leave@lists.example.org>"), "list-unsubscribe: <mailto"),
    ],
)
def test_automated_mail_is_processed_but_marked(header: tuple[str, str], reason: str) -> None:
    result = verdict(mail(header))
    assert isinstance(result, Mail)
    assert result.automated
    assert len(result.reasons) == 1
    assert result.reasons[0].startswith(reason)


@pytest.mark.parametrize(
    "header", [("auto-submitted", "no"), ("auto-submitted", " No "), ("precedence", "first-class")]
)
def test_human_markers_leave_mail_unautomated(header: tuple[str, str]) -> None:
    assert verdict(mail(header)) == Mail(automated=False)


@pytest.mark.parametrize(
    "addr",
    [
        "noreply@shop.example",
        "no-reply@shop.example",
        "No_Reply@shop.example",
        "do-not-reply@bank.example",
        "donotreply@bank.example",
        "noreply-invoices@billing.example",
        "no.reply+abc@shop.example",
    ],
)
def test_no_reply_senders_are_automated(addr: str) -> None:
    result = verdict(mail(sender=Address(addr=addr)))
    assert isinstance(result, Mail)
    assert result.automated
    assert result.reasons == (f"no-reply sender {addr}",)


@pytest.mark.parametrize(
    "addr", ["nora@shop.example", "reply@shop.example", "info@noreply.example"]
)
def test_ordinary_senders_are_not_no_reply(addr: str) -> None:
    assert verdict(mail(sender=Address(addr=addr))) == Mail(automated=False)


def test_reasons_collect_every_automation_marker_in_order() -> None:
    parsed = mail(
        ("list-unsubscribe", "<https://lists.example.org/leave>"),
        ("precedence", "list"),
        ("auto-submitted", "auto-generated"),
        sender=Address(addr="no-reply@lists.example.org"),
    )
    assert verdict(parsed) == Mail(
        automated=True,
        reasons=(
            "auto-submitted: auto-generated",
            "precedence: list",
            "list-unsubscribe: <https://lists.example.org/leave>",
            "no-reply sender no-reply@lists.example.org",
        ),
    )


def test_logged_header_values_are_one_bounded_line() -> None:
    result = verdict(mail(("list-id", "a\r\n b" + "x" * 500)))
    assert isinstance(result, Mail)
    assert result.reasons == ("list-id: a b" + "x" * 77,)


# -- order: Loop, report, AutoReply, machine mail, Mail ----------------------------------


def test_loop_beats_bounce() -> None:
    parsed = mail(report=REPORT, own_loop=True)
    assert isinstance(verdict(parsed, NULL_ENVELOPE), Loop)


def test_own_address_beats_null_return_path() -> None:
    parsed = mail(sender=Address(addr="maild@example.com"))
    assert isinstance(verdict(parsed, NULL_ENVELOPE), Loop)


def test_bounce_beats_auto_reply() -> None:
    parsed = mail(("auto-submitted", "auto-replied"), report=REPORT)
    assert isinstance(verdict(parsed), Bounce)


def test_auto_reply_with_null_return_path_is_an_auto_reply() -> None:
    # RFC 3834 §3.3 asks responders to send with a null return path: an out-of-office answer
    # to our VERP address must not be recorded as a bounce of the customer's address.
    parsed = mail(("auto-submitted", "auto-replied"))
    assert isinstance(verdict(parsed, NULL_ENVELOPE), AutoReply)


def test_auto_reply_beats_automated_mail() -> None:
    parsed = mail(("list-id", "<x.example>"), ("x-autoreply", "yes"))
    assert isinstance(verdict(parsed), AutoReply)
