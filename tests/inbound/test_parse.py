"""Inbound parsing: what a user sees of a mail (subject, sender, body, attachments, bounce
report), the caps on sender-controlled sizes, and that bad input only ever ends in ParseError."""

from __future__ import annotations

import base64
import random
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.domain import Address, Parsed
from maild.errors import LimitExceeded, ParseError
from maild.inbound import addresses as addresses_module
from maild.inbound import elide as elide_module
from maild.inbound import parse as parse_module
from maild.inbound import payloads as payloads_module
from maild.inbound.parse import parse_mail
from maild.settings import LimitSettings
from maild.tokens import Signer

MAIL_DIR = Path(__file__).resolve().parent.parent / "mail"
LIMITS = LimitSettings()
SIGNER = Signer("parse-test-secret-0123456789")
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load(name: str) -> bytes:
    return (MAIL_DIR / name).read_bytes()


def parse(raw: bytes | str, limits: LimitSettings = LIMITS) -> Parsed:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return parse_mail(data, limits=limits, signer=SIGNER)


def mail(*headers: str, body: str = "Hello.\n", sender: str = "Jane <jane@customer.example>",
         extra: str = "") -> str:
    """A small customer mail; `headers` replace the defaults of the same name."""
    fields = {"From": sender, "To": "support@example.com", "Subject": "Printer broken",
              "Message-ID": "<m1@customer.example>", "Date": "Mon, 04 Mar 2024 09:00:00 +0000"}
    for header in headers:
        name, _, value = header.partition(":")
        fields[name] = value.strip()
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return head + extra + "\r\n" + body


def multipart(parts: list[str], *, subtype: str = "mixed", boundary: str = "BOUNDARY",
              headers: tuple[str, ...] = ()) -> str:
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return mail(*headers, "MIME-Version: 1.0",
                f'Content-Type: multipart/{subtype}; boundary="{boundary}"', body=body)


# -- what a user reads ---------------------------------------------------------------------------

def test_plain_utf8_mail() -> None:
    p = parse(load("plain_utf8.eml"))
    assert p.subject == "Drucker im Büro druckt nicht — dringend"
    assert p.sender == Address(addr="jurgen.muller@example.de", name="Jürgen Müller")
    assert p.to == (Address(addr="support@helpdesk.example", name="Helpdesk"),)
    # the invalid Cc entry is dropped, the others kept with their names
    assert p.cc == (Address(addr="karl@example.de", name="Kollege, Karl"),
                    Address(addr="anna@example.de"))
    assert p.date == datetime(2024, 3, 4, 8, 12, 40, tzinfo=UTC)
    assert p.message_id == "<CAKx9d3+7f2@mail.example.de>"
    assert p.content_type == "text/plain"
    assert "Fehlermeldung: „Papierstau in Fach 2“" in p.text
    assert p.text.endswith("Jürgen Müller · Buchhaltung · +49 221 555 0100\n")
    assert p.html is None and p.attachments == () and p.report is None


def test_line_endings_do_not_matter() -> None:
    lf = load("plain_utf8.eml")
    crlf = lf.replace(b"\n", b"\r\n")
    assert parse(lf) == parse(crlf)


def test_headers_are_decoded_unfolded_and_in_order() -> None:
    p = parse(load("plain_utf8.eml"))
    names = [name for name, _ in p.headers]
    assert names[:4] == ["return-path", "received", "from", "to"]
    assert p.header("From") == "Jürgen Müller <Jurgen.Muller@Example.DE>"
    received = p.header("received") or ""
    assert "\n" not in received and "\r" not in received
    assert received.startswith("from mail.example.de (mail.example.de [192.0.2.10]) by mx.")


def test_maild_headers_are_stripped() -> None:
    raw = mail("X-Maild-Ticket: 12", "x-MAILD-owner: root", "X-Mailer: Outlook")
    p = parse(raw)
    assert p.header("x-maild-ticket") is None and p.header("x-maild-owner") is None
    assert p.header("x-mailer") == "Outlook"
    assert "X-Maild-Ticket" not in str(parse(load("plain_utf8.eml")).headers)


def test_html_only_mail_gets_readable_text_and_safe_html() -> None:
    p = parse(load("html_only.eml"))
    assert p.content_type == "text/html"
    assert p.text == textwrap.dedent("""\
        Hello support,

        my order #4711 has not arrived.
        Tracking says "delivered" & nobody got it.

        - Ordered: 1 March
        - Paid: 49,90 €

        See my order page (https://shop.example.com/orders/4711) or this.

        > Your parcel was handed over.

        Thanks,
        Zoë""")
    assert p.html is not None
    for bad in ("<script", "alert", "onload", "onclick", "javascript:", "tracker.example",
                "<style", "<title"):
        assert bad not in p.html
    assert ('<a href="https://shop.example.com/orders/4711" rel="nofollow noopener">'
            "my order page</a>") in p.html


def test_alternative_latin1_mail() -> None:
    p = parse(load("alternative_latin1.eml"))
    assert p.subject == "Facture n° 2024-117 erronée"
    assert p.sender == Address(addr="helene.lefevre@post.example.fr", name="Hélène Lefèvre")
    assert p.text.startswith("Bonjour,\n\nLa facture n° 2024-117 est erronée : le montant")
    # the HTML alternative of a text body is not kept (the journal has the raw mail)
    assert p.html is None
    assert p.in_reply_to == ("<maild.3f2a@helpdesk.example>",)
    assert p.references == ("<maild.1a1a@helpdesk.example>", "<maild.3f2a@helpdesk.example>")
    assert p.attachments == ()


def test_encoded_words_everywhere() -> None:
    p = parse(load("encoded_words.eml"))
    # a UTF-8 character split over two encoded-words; iso-8859-15 €; an unknown charset
    assert p.subject == "Grüße aus Köln € und café"
    assert p.sender == Address(addr="taro.yamada@example.jp", name="山田太郎")
    # the comma inside the encoded name does not make two addresses
    assert p.to == (Address(addr="support@helpdesk.example", name="Service Client, Paris"),)
    assert p.text == "Der Preis ist 100 € statt 80 € – bitte prüfen.\n"


def test_message_ids_are_normalised() -> None:
    p = parse(load("encoded_words.eml"))
    assert p.message_id == "<encoded-1@example.jp>"
    assert p.in_reply_to == ("<maild.1234@helpdesk.example>",)  # brackets were missing
    assert p.references == ("<maild.1111@helpdesk.example>", "<maild.1234@helpdesk.example>")


@pytest.mark.parametrize(("value", "expected"), [
    ("<a@b.example>", "<a@b.example>"),
    ("  < a@b.example >  ", "<a@b.example>"),
    ("a@b.example", "<a@b.example>"),
    ("<no-at-sign>", None),
    ("", None),
    ("<>", None),
])
def test_message_id_forms(value: str, expected: str | None) -> None:
    assert parse(mail(f"Message-ID: {value}")).message_id == expected


def test_undecodable_encoded_word_is_kept_as_written() -> None:
    assert parse(mail("Subject: =?utf-8?b?!!!?= =?utf-8?q?ok?=")).subject == "=?utf-8?b?!!!?= ok"


def test_subject_whitespace_is_collapsed() -> None:
    raw = mail("Subject: Re:   printer\r\n\t  on  =?utf-8?q?fire_=F0=9F=94=A5?=")
    assert parse(raw).subject == "Re: printer on fire 🔥"


def test_missing_headers_give_empty_values() -> None:
    p = parse("X-Only: header\r\n\r\nbody\r\n")
    assert (p.message_id, p.subject, p.sender, p.to, p.date) == (None, "", None, (), None)
    assert p.text == "body\n"


def test_bad_dates_give_none() -> None:
    assert parse(mail("Date: yesterday at noon")).date is None
    assert parse(mail("Date: Mon, 04 Mar 2024 09:00:00 -0230")).date == datetime(
        2024, 3, 4, 11, 30, tzinfo=UTC)


# -- senders and recipients ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "alice@example.org)<bob@example.org>",  # CVE-2023-27043
    "alice@example.org <bob@example.org>",
    "alice@example.org, bob@example.org",
    "<alice@example.org>, <bob@example.org>",
    "<alice@example.org> <bob@example.org>",
    "Eve <eve@example.org> <alice@example.org>",
    "alice@example.org;bob@example.org",
    "Alice <alice@example.org",
    "Alice alice@example.org>",
    "alice smith@example.org",
    "<alice @example.org>",
    "Alice <alice@[192.0.2.1]>",
    "<@relay.example:alice@example.org>",
    "alice@localhost.",
    "alice@host",
    "undisclosed-recipients:;",
    "Friends: alice@example.org;",
    '"alice@example.org',
    "alice@example.org (comment (nested))",
    "",
    "admin\u200b@example.org",  # an invisible character: a look-alike of another address
    "Admin <admin@exa\u202emple.org>",
])
def test_ambiguous_or_malformed_from_gives_no_sender(value: str) -> None:
    assert parse(mail(sender=value)).sender is None


@pytest.mark.parametrize(("value", "expected"), [
    ("Alice <Alice@Example.ORG>", Address(addr="alice@example.org", name="Alice")),
    ('"Doe, Jane" <jane@example.org>', Address(addr="jane@example.org", name="Doe, Jane")),
    ('"alice@example.org" <bob@example.org>',
     Address(addr="bob@example.org", name="alice@example.org")),
    ("bob@example.org <bob@example.org>", Address(addr="bob@example.org")),
    ("bob@example.org (Bob Jones)", Address(addr="bob@example.org", name="Bob Jones")),
    ("admin@localhost", Address(addr="admin@localhost")),
    ('"bob.smith"@example.org', Address(addr="bob.smith@example.org")),
    ("=?utf-8?q?Ren=C3=A9e?= <renee@example.fr>", Address(addr="renee@example.fr",
                                                          name="Renée")),
    ("Émile Zola <emile@example.fr>", Address(addr="emile@example.fr", name="Émile Zola")),
])
def test_valid_from(value: str, expected: Address) -> None:
    assert parse(mail(sender=value)).sender == expected


_ADDRESS_PIECES = st.sampled_from(["alice", "@", "example.org", ".", " ", "<", ">", '"', "(",
                                   ")", ",", ";", ":", "\\", "=?utf-8?q?A=2Cb?=", "Bob", "é",
                                   "\u200b", "\t", "[", "]", "localhost", "-", "x.y"])


@FUZZ
@given(st.lists(_ADDRESS_PIECES, max_size=12))
def test_the_fast_mailbox_path_agrees_with_the_full_parser(pieces: list[str]) -> None:
    value = "".join(pieces)
    full = [(addresses_module._mailbox(i), i.in_group)
            for i in addresses_module._address_items(value)]
    assert addresses_module._mailboxes(value) == full


def test_malformed_from_sample_still_parses_the_rest() -> None:
    p = parse(load("malformed_from.eml"))
    assert p.sender is None
    assert p.subject == "Please reset my password"
    assert p.text == "I cannot log in since yesterday.\n"


def test_two_from_headers_give_no_sender() -> None:
    raw = mail(extra="From: Mallory <mallory@example.net>\r\n")
    assert parse(raw).sender is None


def test_recipient_lists_keep_valid_distinct_addresses() -> None:
    raw = mail("To: Support <support@example.com>, broken@, team: a@example.com, "
               "B <b@example.com>;, SUPPORT@example.com",
               "Cc: undisclosed-recipients:;")
    p = parse(raw)
    assert [a.addr for a in p.to] == ["support@example.com", "a@example.com", "b@example.com"]
    assert p.cc == ()


# -- attachments ---------------------------------------------------------------------------------

PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\n" + bytes(range(256))
       + b"\n%%EOF\n")


def test_attachments_names_types_and_bytes() -> None:
    p = parse(load("attachment_rfc2231.eml"))
    assert p.text.startswith("Hi,\n\nattached are the invoice and the export log.")
    names = [a.filename for a in p.attachments]
    assert names == ["attachment-1.png", "Rechnung März 2024.pdf", "export-log-übersicht.txt",
                     "evil.bat", "invoicefdp.exe"]
    image, pdf, log, bat, exe = p.attachments
    assert image.content_type == "image/png" and image.data.startswith(b"\x89PNG\r\n")
    assert pdf.content_type == "application/pdf" and pdf.data == PDF
    assert log.data.decode().startswith("2024-03-07 10:00:01 ERROR export failed")
    assert bat.data == b"@echo off\r\necho pwned\r\n"  # the name lost its directories only
    assert "\u202e" not in exe.filename  # the right-to-left override that hid ".exe"


def test_big_attachment_bytes_survive() -> None:
    data = random.Random(7).randbytes(300_000)
    encoded = "\r\n".join(textwrap.wrap(base64.b64encode(data).decode(), 76))
    raw = multipart(["Content-Type: text/plain\r\n\r\nsee attached",
                     "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
                     '\r\nContent-Disposition: attachment; filename="dump.bin"\r\n\r\n' + encoded,
                     "Content-Type: text/plain\r\nContent-Disposition: attachment; "
                     'filename="notes.txt"\r\n\r\n' + "line of notes\r\n" * 2000])
    p = parse(raw)
    assert p.text == "see attached"
    dump, notes = p.attachments
    assert (dump.filename, dump.data) == ("dump.bin", data)
    assert notes.data == b"line of notes\r\n" * 2000


@pytest.mark.parametrize(("disposition", "expected"), [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="C:\\\\Users\\\\x\\\\report.pdf"', "report.pdf"),
    ('attachment; filename=".."', "attachment-1.bin"),
    ('attachment; filename="a\tb\x01c.txt"', "a bc.txt"),
    ("attachment", "attachment-1.bin"),
    ("attachment; filename*=iso-8859-1''%E9t%E9.txt", "été.txt"),
    ('attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="', "résumé.pdf"),
    ("attachment; filename*0*=utf-8''long%20name; filename*1=.txt", "long name.txt"),
])
def test_attachment_filenames(disposition: str, expected: str) -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody",
                     f"Content-Type: application/octet-stream\r\nContent-Disposition: "
                     f"{disposition}\r\n\r\ndata"])
    [attachment] = parse(raw).attachments
    assert attachment.filename == expected
    assert attachment.data == b"data"


def test_name_parameter_of_the_content_type_names_the_file() -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody",
                     'Content-Type: application/vnd.ms-excel; NAME="Q1 figures.xls"\r\n\r\nxls'])
    [attachment] = parse(raw).attachments
    assert (attachment.filename, attachment.content_type) == ("Q1 figures.xls",
                                                              "application/vnd.ms-excel")


def test_very_long_filename_is_cut_keeping_the_extension() -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody",
                     "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
                     f'filename="{"x" * 400}.pdf"\r\n\r\ndata'])
    [attachment] = parse(raw).attachments
    assert len(attachment.filename) == 255 and attachment.filename.endswith(".pdf")


def test_forwarded_mail_is_one_attachment() -> None:
    inner = mail("Subject: Original question", "Message-ID: <inner@example.org>",
                 body="the original text\r\n")
    raw = multipart(["Content-Type: text/plain\r\n\r\nSee the forwarded mail.",
                     "Content-Type: message/rfc822\r\n\r\n" + inner])
    p = parse(raw)
    assert p.text == "See the forwarded mail."
    [forwarded] = p.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "attachment-1.eml"
    assert b"Subject: Original question\r\n" in forwarded.data
    assert forwarded.data.endswith(b"\r\n\r\nthe original text\r\n")


def test_calendar_alternative_and_second_text_part() -> None:
    alt = ('Content-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
           "--ALT\r\nContent-Type: text/plain\r\n\r\nmeeting at 10\r\n"
           "--ALT\r\nContent-Type: text/html\r\n\r\n<p>meeting at <b>10</b></p>\r\n"
           "--ALT\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n"
           "--ALT--")
    raw = multipart([alt, "Content-Type: text/plain\r\n\r\nP.S. bring coffee"])
    p = parse(raw)
    assert p.text == "meeting at 10"
    assert p.html is None  # an alternative of the text part
    assert [(a.filename, a.data) for a in p.attachments] == [
        ("attachment-1.ics", b"BEGIN:VCALENDAR"), ("attachment-2.txt", b"P.S. bring coffee")]


def test_blank_text_part_beside_html_uses_the_html() -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\n  \r\n",
                     "Content-Type: text/html\r\n\r\n<p>The real <b>message</b></p>"],
                    subtype="alternative")
    assert parse(raw).text == "The real message"


# -- charsets --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("charset", "body", "expected"), [
    ("utf-8", "Grüße".encode(), "Grüße"),
    ("iso-8859-1", "Grüße".encode("latin-1"), "Grüße"),
    ("windows-1252", b"\x80 5", "€ 5"),
    ("x-unknown-charset", "Grüße".encode(), "Grüße"),  # unknown: UTF-8 if it is,
    ("x-unknown-charset", "Grüße".encode("latin-1"), "Grüße"),  # else windows-1252
    ("us-ascii", "Grüße".encode(), "Grüße"),  # 8-bit text declared ASCII
    ("utf-8", b"Gr\xfc\xdfe", "Gr\ufffd\ufffde"),  # wrong charset: replaced, no error
    ("utf-7", b"+2D3-", "\ufffd"),  # a lone surrogate never reaches the text
    ("punycode", b"abc-", "abc-"),  # not a mail charset: treated as unknown
    ("base64", b"abc", "abc"),
    ('"utf\x00-8"', b"abc", "abc"),
])
def test_body_charsets(charset: str, body: bytes, expected: str) -> None:
    raw = (f"From: a@example.com\r\nContent-Type: text/plain; charset={charset}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body
    assert parse(raw).text == expected


def test_control_characters_are_removed_from_the_body() -> None:
    raw = mail(body="a\x00b\x1b[31mc\td\r\ne\r")
    assert parse(raw).text == "ab[31mc\td\ne\n"


# -- loop mark -------------------------------------------------------------------------------------

def test_own_loop_mark_is_recognised_and_stripped() -> None:
    mark = SIGNER.loop_mark("<m1@customer.example>")
    p = parse(mail(f"X-Maild-Loop: {mark}"))
    assert p.own_loop is True
    assert p.header("x-maild-loop") is None


@pytest.mark.parametrize("mark", [
    Signer("another-installation-secret").loop_mark("<m1@customer.example>"),
    SIGNER.loop_mark("<other@customer.example>"),
    "garbage", "ünïcödé", "",
])
def test_foreign_loop_marks_are_not_ours(mark: str) -> None:
    assert parse(mail(f"X-Maild-Loop: {mark}")).own_loop is False


def test_without_signer_nothing_is_own_loop() -> None:
    raw = mail(f"X-Maild-Loop: {SIGNER.loop_mark('<m1@customer.example>')}").encode()
    assert parse_mail(raw, limits=LIMITS).own_loop is False


# -- delivery reports ----------------------------------------------------------------------------

def test_postfix_dsn() -> None:
    report = parse(load("dsn_postfix.eml")).report
    assert report is not None
    assert report.recipients == ("no.such.user@customer.example",)
    assert report.status == "5.1.1" and report.permanent
    assert report.diagnostic.startswith("550 5.1.1 <no.such.user@customer.example>: Recipient")
    assert report.original_message_id == (
        "<maild.5d41402abc4b2a76b9719d911017c592@helpdesk.example>")


def test_delayed_dsn_is_not_permanent() -> None:
    status = ("Reporting-MTA: dns; mx.example.net\r\n\r\n"
              "Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\n"
              "Status: 4.4.7\r\nDiagnostic-Code: smtp; 451 4.4.7 try again later\r\n")
    raw = multipart(["Content-Type: text/plain\r\n\r\nStill trying.",
                     "Content-Type: message/delivery-status\r\n\r\n" + status,
                     "Content-Type: message/rfc822\r\n\r\n" + mail("Message-ID: <orig@x.org>")],
                    subtype="report; report-type=delivery-status",
                    headers=("From: MAILER-DAEMON@mx.example.net",))
    report = parse(raw).report
    assert report is not None
    assert (report.recipients, report.status, report.permanent) == (
        ("slow@example.net",), "4.4.7", False)
    assert report.diagnostic == "451 4.4.7 try again later"
    assert report.original_message_id == "<orig@x.org>"


@pytest.mark.parametrize(("name", "recipient", "original"), [
    ("bounce_qmail.eml", "gone.user@oldhost.example", "<maild.0badc0ffee@helpdesk.example>"),
    ("bounce_exim.eml", "typo.user@isp.example", "<maild.feedface@helpdesk.example>"),
    ("bounce_exchange.eml", "m.smith@contoso.example", "<maild.cafebabe@helpdesk.example>"),
    ("bounce_sendmail.eml", "prof.x@university.example", "<maild.deadbeef@helpdesk.example>"),
])
def test_non_standard_bounces(name: str, recipient: str, original: str) -> None:
    report = parse(load(name)).report
    assert report is not None
    assert report.recipients == (recipient,)
    assert report.original_message_id == original
    assert report.status == "5.1.1" and report.permanent
    assert report.diagnostic


def test_qmail_diagnostic_is_its_own_words() -> None:
    report = parse(load("bounce_qmail.eml")).report
    assert report is not None
    assert report.diagnostic == "Sorry, no mailbox here by that name. (#5.1.1)"


def test_bounce_text_from_a_person_is_no_report() -> None:
    body = ("Your system sent me this, what does it mean?\r\n\r\n"
            "> This message was created automatically by mail delivery software.\r\n"
            "> A message that you sent could not be delivered.\r\n")
    assert parse(mail(body=body)).report is None


def test_postmaster_writing_normally_is_no_report() -> None:
    raw = mail(sender="postmaster@customer.example", body="Please whitelist our server.\r\n")
    assert parse(raw).report is None


def test_read_receipt_is_no_report() -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\nYour message was read.",
                     "Content-Type: message/disposition-notification\r\n\r\n"
                     "Final-Recipient: rfc822; jane@customer.example\r\n"
                     "Disposition: manual-action/MDN-sent-manually; displayed\r\n"],
                    subtype="report; report-type=disposition-notification")
    assert parse(raw).report is None


# -- limits ---------------------------------------------------------------------------------------

def test_deep_mime_is_refused() -> None:
    with pytest.raises(LimitExceeded, match=r"\[limits\] max_mime_depth"):
        parse(load("deep_mime.eml"))
    assert "deep inside" in parse(load("deep_mime.eml"),
                                  LimitSettings(max_mime_depth=20)).text


def test_too_many_headers() -> None:
    raw = mail(extra="".join(f"X-Spam-{i}: {i}\r\n" for i in range(600)))
    with pytest.raises(LimitExceeded) as exc:
        parse(raw)
    assert str(exc.value) == "605 header lines, limit 500 ([limits] max_headers)"


def test_too_many_header_bytes() -> None:
    raw = mail(extra="X-Long: " + "x" * 70_000 + "\r\n")
    with pytest.raises(LimitExceeded, match=r"bytes of header lines, limit 65536 "
                                            r"\(\[limits\] max_header_bytes\)"):
        parse(raw)


def test_too_many_headers_in_a_part() -> None:
    part = "".join(f"X-{i}: {i}\r\n" for i in range(20)) + "Content-Type: text/plain\r\n\r\nx"
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody", part])
    parse(raw)
    with pytest.raises(LimitExceeded, match="header lines in a MIME part"):
        parse(raw, LimitSettings(max_headers=15))


def test_too_many_parts() -> None:
    raw = multipart([f"Content-Type: text/plain\r\n\r\npart {i}" for i in range(250)])
    with pytest.raises(LimitExceeded, match=r"MIME parts, limit 200 \(\[limits\] max_mime_parts"):
        parse(raw)
    assert len(parse(raw, LimitSettings(max_mime_parts=300)).attachments) == 249


def test_too_many_recipients() -> None:
    to = ", ".join(f"user{i}@example.com" for i in range(150))
    raw = mail(f"To: {to}", f"Cc: {to}")
    with pytest.raises(LimitExceeded, match=r"300 To/Cc addresses, limit 200"):
        parse(raw)


def test_attachment_too_big() -> None:
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody",
                     "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
                     'Content-Disposition: attachment; filename="big.pdf"\r\n\r\n'
                     + base64.b64encode(b"x" * 3000).decode()])
    with pytest.raises(LimitExceeded, match=r"attachment 'big.pdf' of 3000 bytes, limit 1000 "
                                            r"\(\[limits\] max_attachment_size\)"):
        parse(raw, LimitSettings(max_attachment_size=1000))


def test_parse_time_limit() -> None:
    with pytest.raises(LimitExceeded, match=r"\[limits\] parse_seconds"):
        parse(load("attachment_rfc2231.eml"), LimitSettings(parse_seconds=0.0))


def test_limit_errors_are_parse_errors() -> None:
    assert issubclass(LimitExceeded, ParseError)


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n", b"just some words, no header\r\n",
                                 b"\r\n\r\nbody after an empty header block", bytes(range(256))])
def test_not_a_mail(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse(raw)


def test_nesting_deeper_than_the_stack_is_a_parse_error() -> None:
    depth = 3000
    raw = "From: a@example.com\r\n" + "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    huge = LimitSettings(max_mime_depth=10**6, max_mime_parts=10**6)
    with pytest.raises(ParseError):
        parse(raw, huge)
    with pytest.raises(LimitExceeded, match="max_mime_parts"):  # the default: caught up front
        parse(raw)


def test_many_semicolons_in_a_part_header_stay_fast() -> None:
    # The stdlib's parameter parser is quadratic in ";": 80 KB of them took 9 s.
    part = ('Content-Type: multipart/mixed; boundary="inner"; x="' + ";" * 80_000
            + '\r\n\r\n--inner\r\n\r\nhi\r\n--inner--')
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody", part])
    started = time.monotonic()
    parse(raw, LimitSettings(max_header_bytes=200_000))
    assert time.monotonic() - started < 3


def test_many_short_lines_stay_fast() -> None:
    lines = "QUJD\r\n" * 400_000  # 2.4 MB of base64 in short lines
    raw = multipart(["Content-Type: text/plain\r\n\r\nbody",
                     "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
                     "\r\n\r\n" + lines])
    started = time.monotonic()
    [attachment] = parse(raw).attachments
    assert attachment.data == b"ABC" * 400_000
    assert time.monotonic() - started < 3


def test_sample_mails_never_fail_when_cut_short() -> None:
    for path in sorted(MAIL_DIR.glob("*.eml")):
        raw = path.read_bytes()
        for end in range(0, len(raw), 37):
            try:
                parse(raw[:end], LimitSettings(max_mime_depth=20))
            except ParseError:
                pass


_PIECES = st.sampled_from([
    b"\r\n", b"\n", b"\r\n\r\n", b"--B\r\n", b"--B--\r\n", b"Content-Type: multipart/mixed; "
    b'boundary="B"\r\n', b"Content-Type: message/rfc822\r\n", b"Content-Type: text/html\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2%82; filename*1*=%AC\r\n",
    b"From: ", b"To: ", b"Subject: =?utf-8?b?w6k=?= =?bad?q?", b"<", b">", b"@", b'"', b"(",
    b",", b";", b"=?", b"?=", b"\x00", b"\xff\xfe", b"\xc3\xa9", b"Message-ID: <", b"a@b.example",
    b"X-Maild-Loop: ", b"=\r\n", b"<script>", b"<a href='", b"&#0;", b"QUJD", b"charset=utf-7",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n",
    b"Content-Type: message/delivery-status\r\n", b"Final-Recipient: rfc822;x@y.example\r\n",
])


@FUZZ
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=40)), max_size=60))
def test_fuzz_only_parse_errors(pieces: list[bytes]) -> None:
    raw = b"From: a@example.com\r\n" + b"".join(pieces)
    try:
        p = parse(raw)
    except ParseError:
        return
    assert isinstance(p.text, str) and "\x00" not in p.text
    for name, value in p.headers:
        assert "\n" not in value and "\r" not in value and not name.startswith("x-maild-")


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(raw: bytes) -> None:
    try:
        parse(raw)
    except ParseError:
        pass


# -- big bodies are cut out of the parse and put back: the same Message either way --------------

def _tree(raw: bytes, elide: bool) -> list[tuple[object, ...]]:
    if elide:  # elide every body, however short, to try many more shapes
        with mock.patch.object(elide_module, "ELIDE_FROM", 0), \
                mock.patch.object(elide_module, "ELIDE_MIN", 1):
            msg = parse_module._parse_bytes(raw, LIMITS, time.monotonic())
    else:
        msg = parse_module._feed(raw, LIMITS, time.monotonic())
    out = []
    stack = [msg]
    while stack:
        part = stack.pop()
        payload = payloads_module._raw(part)
        out.append((tuple(part.raw_items()), part.preamble, part.epilogue,
                    None if isinstance(payload, list) else payload,
                    sorted(type(d).__name__ for d in part.defects)))
        if isinstance(payload, list):
            stack.extend(reversed(payload))
    return out


_BODY_LINE = st.sampled_from(["QUJDREVGR0g=", "--B", "--B--", "--C", "", "Content-Type: text/plain",
                              "plain text", "-- ", "x\ry", "=?utf-8?q?x?=", "é", "From x",
                              " folded", "--B  ", "--Bx"])
_HEADER = st.sampled_from(["Content-Type: text/plain", "Content-Type: application/pdf",
                           'Content-Type: multipart/mixed; boundary="C"',
                           "Content-Type: message/rfc822", "Content-Type: multipart/digest; "
                           "boundary=B", "Content-Transfer-Encoding: base64", "X-A: b", "",
                           "Content-Type:\r\n message/rfc822", "no colon here", " folded"])


@FUZZ
@given(st.lists(st.tuples(st.lists(_HEADER, max_size=3), st.lists(_BODY_LINE, max_size=8)),
                min_size=1, max_size=5),
       st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_eliding_bodies_changes_nothing(parts: list[tuple[list[str], list[str]]], eol: str,
                                        closed: bool) -> None:
    chunks = [f'From: a@example.com{eol}Content-Type: multipart/mixed; boundary="B"{eol}{eol}']
    for headers, lines in parts:
        chunks.append(eol.join(["--B", *headers, "", *lines]) + eol)
    if closed:
        chunks.append("--B--" + eol)
    raw = "".join(chunks).encode("utf-8")
    assert _tree(raw, elide=True) == _tree(raw, elide=False)


def test_a_big_single_part_body_is_elided_too() -> None:
    body = "".join(f"line {i} -- of a long text\r\n--not a boundary\r\n" for i in range(3000))
    raw = mail(body=body).encode()
    assert _tree(raw, elide=True) == _tree(raw, elide=False)
    assert parse(raw).text == body.replace("\r\n", "\n")
