"""Reply stripping: one realistic sample per client and language, then the edge cases."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.inbound.quotes import strip_quoted

QUOTE = "> Please restart the printer and try again.\n>\n> Kind regards,\n> Support\n"

# (id, mail body, expected note)
REPLIES: list[tuple[str, str, str]] = [
    (
        "gmail",
        "Thanks, that fixed it.\n\n"
        "On Mon, Mar 4, 2024 at 10:00 AM Jane Doe <jane@example.com> wrote:\n\n" + QUOTE,
        "Thanks, that fixed it.",
    ),
    (
        "gmail-wrapped-attribution",
        "Works now.\n\n"
        "On Mon, Mar 4, 2024 at 10:00 AM Jane Doe-Fitzgerald <jane.doe-fitzgerald@example.com>\n"
        "wrote:\n\n" + QUOTE,
        "Works now.",
    ),
    (
        "spec-example",
        "Fine by me.\n\nOn Mon, 4 Mar 2024 at 10:00, Name <a@b.example> wrote:\n" + QUOTE,
        "Fine by me.",
    ),
    (
        "apple-mail-quoted-attribution",
        "Great, thanks.\n\n"
        "> On 4 Mar 2024, at 10:00, Jane Doe <jane@example.com> wrote:\n> \n" + QUOTE,
        "Great, thanks.",
    ),
    (
        "apple-mail",
        "Great, thanks.\n\nOn 4 Mar 2024, at 10:00, Jane Doe <jane@example.com> wrote:\n\n" + QUOTE,
        "Great, thanks.",
    ),
    (
        "thunderbird",
        "Still broken, sorry.\n\nOn 04/03/2024 10:00, Jane Doe wrote:\n" + QUOTE,
        "Still broken, sorry.",
    ),
    (
        "spanish",
        "Gracias, ya funciona.\n\n"
        "El lun, 4 mar 2024 a las 10:00, Jane Doe (<jane@example.com>) escribió:\n" + QUOTE,
        "Gracias, ya funciona.",
    ),
    (
        "french",
        "Merci, ça marche.\n\n"
        "Le lun. 4 mars 2024 à 10:00, Jane Doe <jane@example.com> a écrit :\n" + QUOTE,
        "Merci, ça marche.",
    ),
    (
        "french-no-break-space",
        "Merci.\n\nLe lun. 4 mars 2024 à 10:00, Jane Doe <jane@example.com> a écrit\u00a0:\n"
        + QUOTE,
        "Merci.",
    ),
    (
        "french-wrapped",
        "Merci.\n\nLe lun. 4 mars 2024 à 10:00, Jean-Baptiste Dupont <jean-baptiste@example.fr> a\n"
        "écrit :\n" + QUOTE,
        "Merci.",
    ),
    (
        "german",
        "Danke, geht wieder.\n\n"
        "Am Mo., 4. März 2024 um 10:00 Uhr schrieb Jane Doe <jane@example.com>:\n" + QUOTE,
        "Danke, geht wieder.",
    ),
    (
        "german-thunderbird",
        "Danke.\n\nAm 04.03.2024 um 10:00 schrieb Jane Doe:\n" + QUOTE,
        "Danke.",
    ),
    (
        "dutch",
        "Bedankt, het werkt.\n\n"
        "Op ma 4 mrt 2024 om 10:00 schreef Jane Doe <jane@example.com>:\n" + QUOTE,
        "Bedankt, het werkt.",
    ),
    (
        "italian",
        "Grazie, funziona.\n\n"
        "Il giorno lun 4 mar 2024 alle ore 10:00 Jane Doe <jane@example.com> ha scritto:\n" + QUOTE,
        "Grazie, funziona.",
    ),
    (
        "polish",
        "Dziękuję, działa.\n\nW dniu 4.03.2024 o 10:00, Jane Doe pisze:\n" + QUOTE,
        "Dziękuję, działa.",
    ),
    (
        "portuguese",
        "Obrigado, funcionou.\n\n"
        "Em seg., 4 de mar. de 2024 às 10:00, Jane Doe <jane@example.com> escreveu:\n" + QUOTE,
        "Obrigado, funcionou.",
    ),
    (
        "attribution-then-unquoted-history",  # text made from HTML: no ">" marks
        "Thanks!\n\nOn Mon, Mar 4, 2024 at 10:00 AM Jane Doe <jane@example.com> wrote:\n\n"
        "Please restart the printer and try again.\n",
        "Thanks!",
    ),
]

OUTLOOK: list[tuple[str, str, str]] = [
    (
        "original-message",
        "It works now.\n\nJane\n\n-----Original Message-----\n"
        "From: Support <support@example.com>\nSent: Monday, March 4, 2024 10:00 AM\n"
        "To: Jane Doe <jane@example.com>\nSubject: RE: [#12] Printer\n\nPlease restart it.\n",
        "It works now.\n\nJane",
    ),
    (
        "ursprungliche-nachricht",
        "Passt, danke.\n\n-----Ursprüngliche Nachricht-----\n"
        "Von: Support <support@example.com>\nGesendet: Montag, 4. März 2024 10:00\n"
        "An: Jane Doe\nBetreff: AW: [#12] Drucker\n\nBitte neu starten.\n",
        "Passt, danke.",
    ),
    (
        "message-d-origine",
        "Parfait.\n\n-----Message d'origine-----\nDe : Support <support@example.com>\n"
        "Envoyé : lundi 4 mars 2024 10:00\nÀ : Jane Doe\nObjet : RE: [#12] Imprimante\n\n"
        "Redémarrez-la.\n",
        "Parfait.",
    ),
    (
        "thunderbird-original-message",
        "Noted.\n\n-------- Original Message --------\nSubject: [#12] Printer\n"
        "Date: Mon, 4 Mar 2024 10:00:00 +0100\nFrom: Support <support@example.com>\n\nHi\n",
        "Noted.",
    ),
    (
        "header-block-with-rule",
        "Done, see attached.\n\nBest regards\nJane Doe\nACME Ltd.\n\n"
        "________________________________\nFrom: Support <support@example.com>\n"
        "Sent: Monday, March 4, 2024 10:00\nTo: Jane Doe <jane@example.com>\n"
        "Subject: [#12] Printer\n\nPlease send the log.\n",
        "Done, see attached.\n\nBest regards\nJane Doe\nACME Ltd.",
    ),
    (
        "header-block-without-rule",
        "Done.\n\nFrom: Support <support@example.com>\nDate: Monday, 4 March 2024 at 10:00\n"
        "To: Jane Doe <jane@example.com>\nSubject: [#12] Printer\n\nPlease send the log.\n",
        "Done.",
    ),
    (
        "header-block-french",
        "C'est fait.\n\n________________________________\nDe : Support <support@example.com>\n"
        "Envoyé : lundi 4 mars 2024 10:00\nÀ : Jane Doe <jane@example.com>\n"
        "Objet : [#12] Imprimante\n\nMerci d'envoyer le journal.\n",
        "C'est fait.",
    ),
    (
        "header-block-german",
        "Erledigt.\n\n________________________________\nVon: Support <support@example.com>\n"
        "Gesendet: Montag, 4. März 2024 10:00\nAn: Jane Doe <jane@example.com>\n"
        "Betreff: [#12] Drucker\n\nBitte das Protokoll senden.\n",
        "Erledigt.",
    ),
    (
        "header-block-bold-labels",  # Outlook HTML turned into text
        "Done.\n\n*From:* Support <support@example.com>\n*Sent:* Monday, March 4, 2024 10:00\n"
        "*To:* Jane Doe <jane@example.com>\n*Subject:* [#12] Printer\n\nOld text.\n",
        "Done.",
    ),
    (
        "get-outlook-for-ios",
        "Yes, go ahead.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n"
        "________________________________\nFrom: Support <support@example.com>\n"
        "Sent: Monday, March 4, 2024 10:00:00 AM\nTo: Jane Doe <jane@example.com>\n"
        "Subject: [#12] Printer\n\nMay we reboot the server?\n",
        "Yes, go ahead.",
    ),
]

SIGNATURES: list[tuple[str, str, str]] = [
    (
        "dash-dash-space",
        "Please call me back.\n\n-- \nJane Doe\nACME Ltd. | +44 20 7946 0000\n",
        "Please call me back.",
    ),
    ("dash-dash-without-space", "Please call me back.\n--\nJane\n", "Please call me back."),
    (
        "signature-then-quote",
        "Please call me back.\n\n-- \nJane Doe\n\n"
        "On Mon, Mar 4, 2024 at 10:00 AM Support <support@example.com> wrote:\n" + QUOTE,
        "Please call me back.",
    ),
    (
        "sent-from-my-iphone",
        "Yes please.\n\nSent from my iPhone\n\n"
        "> On 4 Mar 2024, at 10:00, Support <support@example.com> wrote:\n>\n" + QUOTE,
        "Yes please.",
    ),
    ("sent-from-my-android", "Ok.\n\nSent from my Android phone\n", "Ok."),
    ("von-meinem-iphone", "Passt.\n\nVon meinem iPhone gesendet\n", "Passt."),
    ("envoye-de-mon-iphone", "D'accord.\n\nEnvoyé de mon iPhone\n", "D'accord."),
    ("enviado-desde-mi", "Vale.\n\nEnviado desde mi iPhone\n", "Vale."),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=name) for name, body, expected in REPLIES],
)
def test_attribution_and_quote_are_removed(body: str, expected: str) -> None:
    assert strip_quoted(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=name) for name, body, expected in OUTLOOK],
)
def test_outlook_history_is_removed(body: str, expected: str) -> None:
    assert strip_quoted(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=name) for name, body, expected in SIGNATURES],
)
def test_signatures_and_trailers_are_removed(body: str, expected: str) -> None:
    assert strip_quoted(body) == expected


# -- inline and bottom-posted replies ----------------------------------------------------


def test_interleaved_reply_keeps_the_answers_and_drops_the_quotes() -> None:
    body = (
        "On Mon, Mar 4, 2024 at 10:00 AM Support <support@example.com> wrote:\n"
        "> Which model is it?\n"
        "\n"
        "An HP LaserJet 4000.\n"
        "\n"
        "> Is it connected by USB or by network?\n"
        "> (the label is on the back)\n"
        "\n"
        "By network, IP 10.0.0.7.\n"
        "\n"
        "> Regards, Support\n"
        "\n"
        "-- \n"
        "Jane\n"
    )
    assert strip_quoted(body) == "An HP LaserJet 4000.\n\nBy network, IP 10.0.0.7."


def test_answers_directly_under_quotes_are_kept_apart() -> None:
    body = "> Which model?\nHP 4000.\n> USB or network?\nNetwork.\n"
    assert strip_quoted(body) == "HP 4000.\n\nNetwork."


def test_bottom_posted_reply_keeps_the_text_after_the_quote() -> None:
    body = "On 04/03/2024 10:00, Support wrote:\n> Please send the log.\n\nHere it is, attached.\n"
    assert strip_quoted(body) == "Here it is, attached."


def test_trailing_quote_block_after_the_text_is_removed() -> None:
    body = "New text.\n\n> old text\n> more old text\n\n\n"
    assert strip_quoted(body) == "New text."


# -- forwards -------------------------------------------------------------------------------

GMAIL_FORWARD = (
    "---------- Forwarded message ---------\n"
    "From: Bob <bob@example.org>\n"
    "Date: Mon, Mar 4, 2024 at 10:00 AM\n"
    "Subject: Invoice 42\n"
    "To: Jane <jane@example.com>\n"
    "\n"
    "Please pay invoice 42.\n"
    "\n"
    "On Sun, Mar 3, 2024 at 9:00 AM Jane <jane@example.com> wrote:\n"
    "> Where is the invoice?\n"
)


def test_gmail_forward_is_kept_whole() -> None:
    body = "Can you look at this?\n\n" + GMAIL_FORWARD
    assert strip_quoted(body) == body.rstrip()


def test_forward_without_own_text_is_kept() -> None:
    assert strip_quoted(GMAIL_FORWARD) == GMAIL_FORWARD.rstrip()


def test_apple_mail_forward_is_kept() -> None:
    body = (
        "FYI\n\nSent from my iPhone\n\nBegin forwarded message:\n\n"
        "> From: Bob <bob@example.org>\n> Date: 4 March 2024 at 10:00:00 CET\n"
        "> Subject: Invoice 42\n\n> Please pay.\n"
    )
    assert strip_quoted(body) == (
        "FYI\n\nBegin forwarded message:\n\n"
        "> From: Bob <bob@example.org>\n> Date: 4 March 2024 at 10:00:00 CET\n"
        "> Subject: Invoice 42\n\n> Please pay."
    )


def test_thunderbird_forward_is_kept() -> None:
    body = (
        "See below.\n\n-------- Forwarded Message --------\nSubject: Invoice 42\n"
        "Date: Mon, 4 Mar 2024 10:00:00 +0100\nFrom: Bob <bob@example.org>\n\nPlease pay.\n"
    )
    assert strip_quoted(body) == body.rstrip()


def test_forwarders_signature_is_dropped_but_the_forward_kept() -> None:
    body = "Please handle.\n\n-- \nJane Doe\nACME Ltd.\n\n" + GMAIL_FORWARD
    assert strip_quoted(body) == "Please handle.\n\n" + GMAIL_FORWARD.rstrip()


def test_reply_quoting_a_forward_drops_the_forward() -> None:
    body = (
        "Paid.\n\nOn Tue, Mar 5, 2024 at 11:00 AM Support <support@example.com> wrote:\n"
        + "".join(f"> {line}\n" for line in GMAIL_FORWARD.splitlines())
    )
    assert strip_quoted(body) == "Paid."


def test_forward_marker_below_the_history_does_not_bring_it_back() -> None:
    body = (
        "Thanks.\n\n-- \nJane\n\nOn Mon, Mar 4, 2024 at 10:00 AM Bob <bob@example.org> wrote:\n"
        + GMAIL_FORWARD
    )
    assert strip_quoted(body) == "Thanks."


# -- what is kept ---------------------------------------------------------------------------


def test_quote_only_mail_returns_the_original_trimmed() -> None:
    body = "\n\n> Please restart the printer.\n> Regards\n\n"
    assert strip_quoted(body) == "> Please restart the printer.\n> Regards"


def test_mail_that_is_only_history_returns_the_original_trimmed() -> None:
    body = "-----Original Message-----\nFrom: a@example.com\nSent: today\nTo: b\n\nHi\n"
    assert strip_quoted(body) == body.rstrip()


def test_internal_text_is_preserved_exactly() -> None:
    new = "    indented first line\n\n\n  two blank lines above\ttab\n* list\n  - sub\n"
    body = "\n \n" + new + "\nOn 04/03/2024 10:00, Support wrote:\n" + QUOTE
    assert strip_quoted(body) == new.rstrip()


def test_plain_text_is_returned_unchanged() -> None:
    assert strip_quoted("Hello,\n\nmy printer is broken.\n\nJane") == (
        "Hello,\n\nmy printer is broken.\n\nJane"
    )


def test_empty_text() -> None:
    assert strip_quoted("") == ""
    assert strip_quoted("\n  \n") == ""


def test_crlf_line_ends() -> None:
    body = "Thanks\r\n\r\nOn 04/03/2024 10:00, Support wrote:\r\n> old\r\n"
    assert strip_quoted(body) == "Thanks"


@pytest.mark.parametrize(
    "body",
    [
        "On Monday I wrote:\nthe printer needs toner.",  # no time, no address
        "On 4 March the tool wrote:\nan error to the log.",
        "From: my point of view\nit is broken.\nSubject: the printer",
        "Am Montag schrieb ich:\nes geht nicht.",
        "Le lundi il a écrit :\nrien.",
        "Results:\n__________\nnothing below the line",
        "Sent from my home office we see the same problem, and more text here.",
        "Von meinem Chef weiß ich, dass es geht.",
        "-----\nnot a separator\n-----",
    ],
)
def test_ordinary_text_is_not_mistaken_for_history(body: str) -> None:
    assert strip_quoted(body) == body


# -- robustness -----------------------------------------------------------------------------

MEGABYTE = 1 << 20
# Generous, for loaded CI machines: linear work takes well under a second here, while a
# quadratic scan of a megabyte of short lines would take hours.
SECONDS_PER_MEGABYTE = 10.0


@pytest.mark.parametrize(
    "line",
    [
        "a" * 100,
        "> " + "quoted " * 10,
        "On 4 Mar 2024 at 10:00, Name <a@b> wrote something " + "x" * 200,
        "Am 1:00 schrieb " + "schrieb " * 30,
        "From: someone",
        "x:",
        "On a",
        "________________________________",
        "-- Forwarded message --" + "-" * 50,
        "",
    ],
    ids=[
        "prose",
        "quoted",
        "attribution-like",
        "verb-repeats",
        "from",
        "colon",
        "attribution-start",
        "rule",
        "dashes",
        "blank",
    ],
)
def test_a_megabyte_of_lines_is_fast(line: str) -> None:
    body = "Start.\n" + (line + "\n") * (MEGABYTE // (len(line) + 1))
    started = time.perf_counter()
    strip_quoted(body)
    assert time.perf_counter() - started < SECONDS_PER_MEGABYTE


def test_a_megabyte_in_one_line_is_fast() -> None:
    for body in ("On 10:00 " + "x" * MEGABYTE + " wrote:", " " * MEGABYTE, "-" * MEGABYTE):
        started = time.perf_counter()
        assert strip_quoted(body) == body.strip()
        assert time.perf_counter() - started < SECONDS_PER_MEGABYTE


def test_a_megabyte_reply_keeps_its_text() -> None:
    text = "\n".join(f"Line {i} of the log." for i in range(50_000))
    body = text + "\n\nOn 04/03/2024 10:00, Support wrote:\n" + QUOTE * 1000
    assert len(body) > MEGABYTE
    assert strip_quoted(body) == text


TRICKY_LINES = [
    "",
    " ",
    "Hello",
    "> quoted",
    "-- ",
    "Sent from my iPhone",
    "On 04/03/2024 10:00, Support wrote:",
    "On Mon, Mar 4, 2024 at 10:00 AM Jane <jane@example.com>",
    "wrote:",
    "-----Original Message-----",
    "---------- Forwarded message ---------",
    "________________________________",
    "From: a@example.com",
    "Sent: Monday",
    "To: b@example.com",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TRICKY_LINES) | st.text(max_size=20), max_size=30))
def test_never_invents_text_and_never_empties_a_mail(lines: list[str]) -> None:
    body = "\n".join(lines)
    note = strip_quoted(body)
    assert bool(note.strip()) == bool(body.strip())
    originals = set(body.split("\n"))
    assert all(not line.strip() or line in originals for line in note.split("\n")[:-1])
    last = note.split("\n")[-1]
    assert not last or any(original.startswith(last) for original in originals)
