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
        "2026-12-03 10:15:00 login javi@example.com: ok",
        "Javi <javi@example.com> schrieb am 3. Dez. 2026 um",
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
        "dated-log",
        "address-wrapped-start",
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


# -- other languages, as the clients write them ---------------------------------------------

NAME = "Javi García <javi@example.com>"
LONG = "Javier García-Fernández"
LONG_ADDR = "<javier.garcia-fernandez@example.com>"
QUOTED = "> Bitte starten Sie den Drucker neu.\n> \n> Grüße, Support\n"

# (id, attribution line(s) as the client writes them): the note must be only "Neuer Text."
ATTRIBUTIONS: list[tuple[str, str]] = [
    ("gmail-de", f"Am Do., 3. Dez. 2026 um 10:15 Uhr schrieb {NAME}:"),
    ("gmail-fr", f"Le jeu. 3 déc. 2026 à 10:15, {NAME} a écrit :"),
    ("gmail-fr-nbsp", f"Le jeu. 3 déc. 2026 à 10:15, {NAME} a écrit\u00a0:"),
    ("gmail-es", "El jue, 3 dic 2026 a las 10:15, Javi García (<javi@example.com>) escribió:"),
    ("gmail-it", f"Il giorno gio 3 dic 2026 alle ore 10:15 {NAME} ha scritto:"),
    ("gmail-pt", f"Em qui., 3 de dez. de 2026 às 10:15, {NAME} escreveu:"),
    ("gmail-nl", f"Op do 3 dec 2026 om 10:15 schreef {NAME}:"),
    ("gmail-ru", f"чт, 3 дек. 2026 г. в 10:15, {NAME}:"),
    ("gmail-ru-old", "суббота, 14 марта 2015 г. пользователь Javi García написал:"),
    ("gmail-android-de", f"{NAME} schrieb am Do., 3. Dez. 2026, 10:15:"),
    ("gmail-de-wrapped", f"Am Do., 3. Dez. 2026 um 10:15 Uhr schrieb {LONG}\n{LONG_ADDR}:"),
    ("gmail-es-wrapped", f"El jue, 3 dic 2026 a las 10:15, {LONG}\n({LONG_ADDR}) escribió:"),
    ("gmail-it-wrapped",
     f"Il giorno gio 3 dic 2026 alle ore 10:15 {LONG}\n{LONG_ADDR} ha scritto:"),
    ("gmail-pt-wrapped", f"Em qui., 3 de dez. de 2026 às 10:15, {LONG}\n{LONG_ADDR} escreveu:"),
    ("gmail-nl-wrapped", f"Op do 3 dec 2026 om 10:15 schreef {LONG}\n{LONG_ADDR}:"),
    ("gmail-ru-wrapped", f"чт, 3 дек. 2026 г. в 10:15, {LONG}\n{LONG_ADDR}:"),
    ("gmail-android-de-wrapped", f"{LONG} {LONG_ADDR} schrieb am\nDo., 3. Dez. 2026, 10:15:"),
    ("apple-de", f"Am 03.12.2026 um 10:15 schrieb {NAME}:"),
    ("apple-fr", f"Le 3 déc. 2026 à 10:15, {NAME} a écrit :"),
    ("apple-es", f"El 3 dic 2026, a las 10:15, {NAME} escribió:"),
    ("apple-it", f"Il giorno 3 dic 2026, alle ore 10:15, {NAME} ha scritto:"),
    ("apple-pt", f"Em 3 de dez. de 2026, à(s) 10:15, {NAME} escreveu:"),
    ("apple-nl", f"Op 3 dec. 2026 om 10:15 heeft {NAME} het volgende geschreven:"),
    ("apple-ru", f"3 дек. 2026 г., в 10:15, {NAME} написал(а):"),
    ("thunderbird-de", "Am 03.12.26 um 10:15 schrieb Javi García:"),
    ("thunderbird-fr", "Le 03/12/2026 à 10:15, Javi García a écrit :"),
    ("thunderbird-es", "El 3/12/26 a las 10:15, Javi García escribió:"),
    ("thunderbird-it", "Il 03/12/26 10:15, Javi García ha scritto:"),
    ("thunderbird-pt", "Em 03/12/2026 10:15, Javi García escreveu:"),
    ("thunderbird-nl", "Op 03-12-2026 om 10:15 schreef Javi García:"),
    ("thunderbird-ru", "03.12.2026 10:15, Javi García пишет:"),
    ("yandex-ru", f"3 декабря 2026 г., в 10:15, пользователь {NAME} написал:"),
    ("yandex-ru-short", '03.12.2026, 10:15, "Javi García" <javi@example.com>:'),
    ("mail-ru", f"Четверг, 3 декабря 2026, 10:15 +03:00 от {NAME}:"),
]


@pytest.mark.parametrize(
    "attribution", [pytest.param(a, id=name) for name, a in ATTRIBUTIONS]
)
def test_attributions_in_other_languages(attribution: str) -> None:
    assert strip_quoted(f"Neuer Text.\n\n{attribution}\n{QUOTED}") == "Neuer Text."
    # and when the client quoted the attribution too (Apple Mail does)
    quoted = "".join(f"> {line}\n" for line in attribution.split("\n"))
    assert strip_quoted(f"Neuer Text.\n\n{quoted}>\n{QUOTED}") == "Neuer Text."


@pytest.mark.parametrize(
    "attribution", [pytest.param(a, id=name) for name, a in ATTRIBUTIONS]
)
def test_attributions_in_other_languages_above_unquoted_history(attribution: str) -> None:
    # text made from HTML: the history follows without ">" marks
    body = f"Neuer Text.\n\n{attribution}\n\nBitte starten Sie den Drucker neu.\n"
    assert strip_quoted(body) == "Neuer Text."


HEADER_BLOCKS: list[tuple[str, str]] = [
    ("de", f"Von: {NAME}\nGesendet: Donnerstag, 3. Dezember 2026 10:15\n"
           "An: Support <support@example.com>\nBetreff: AW: [#12] Drucker"),
    ("fr", f"De : {NAME}\nEnvoyé : jeudi 3 décembre 2026 10:15\n"
           "À : Support <support@example.com>\nObjet : RE: [#12] Imprimante"),
    ("fr-nbsp", f"De\u00a0: {NAME}\nEnvoyé\u00a0: jeudi 3 décembre 2026 10:15\n"
                "À\u00a0: Support <support@example.com>\nObjet\u00a0: RE: [#12] Imprimante"),
    ("es", f"De: {NAME}\nEnviado el: jueves, 3 de diciembre de 2026 10:15\n"
           "Para: Support <support@example.com>\nAsunto: RE: [#12] Impresora"),
    ("es-owa", f"De: {NAME}\nEnviado: jueves, 3 de diciembre de 2026 10:15\n"
               "Para: Support <support@example.com>\nAsunto: RE: [#12] Impresora"),
    ("it", f"Da: {NAME}\nInviato: giovedì 3 dicembre 2026 10:15\n"
           "A: Support <support@example.com>\nOggetto: R: [#12] Stampante"),
    ("pt-br", f"De: {NAME}\nEnviada em: quinta-feira, 3 de dezembro de 2026 10:15\n"
              "Para: Support <support@example.com>\nAssunto: RES: [#12] Impressora"),
    ("pt-pt", f"De: {NAME}\nEnviado: 3 de dezembro de 2026 10:15\n"
              "Para: Support <support@example.com>\nAssunto: RE: [#12] Impressora"),
    ("nl", f"Van: {NAME}\nVerzonden: donderdag 3 december 2026 10:15\n"
           "Aan: Support <support@example.com>\nOnderwerp: RE: [#12] Printer"),
    ("ru", f"От: {NAME}\nОтправлено: 3 декабря 2026 г. 10:15\n"
           "Кому: Support <support@example.com>\nТема: RE: [#12] Принтер"),
    ("ru-new-outlook", f"От: {NAME}\nДата: четверг, 3 декабря 2026 г. 10:15\n"
                       "Кому: Support <support@example.com>\nТема: RE: [#12] Принтер"),
]
SEPARATORS = [
    ("de", "-----Ursprüngliche Nachricht-----"),
    ("fr", "-----Message d'origine-----"),
    ("es", "-----Mensaje original-----"),
    ("it", "-----Messaggio originale-----"),
    ("pt", "-----Mensagem original-----"),
    ("nl", "-----Oorspronkelijk bericht-----"),
    ("ru", "-----Исходное сообщение-----"),
    ("thunderbird-de", "-------- Original-Nachricht --------"),
    ("thunderbird-ru", "-------- Исходное сообщение --------"),
]
OLD = "\n\nBitte starten Sie den Drucker neu.\n\nGrüße\nSupport\n"


@pytest.mark.parametrize("block", [pytest.param(b, id=name) for name, b in HEADER_BLOCKS])
def test_outlook_header_blocks_in_other_languages(block: str) -> None:
    assert strip_quoted(f"Neuer Text.\n\nJavi\n\n{block}{OLD}") == "Neuer Text.\n\nJavi"
    rule = "_" * 32
    assert strip_quoted(f"Neuer Text.\n\n{rule}\n{block}{OLD}") == "Neuer Text."
    bold = "\n".join(f"*{line.replace(':', ':*', 1)}" for line in block.split("\n"))
    assert strip_quoted(f"Neuer Text.\n\n{bold}{OLD}") == "Neuer Text."


@pytest.mark.parametrize("separator", [pytest.param(s, id=name) for name, s in SEPARATORS])
def test_outlook_separators_in_other_languages(separator: str) -> None:
    block = dict(HEADER_BLOCKS)["ru" if "Исход" in separator else "de"]
    body = f"Neuer Text.\n\n{separator}\n{block}{OLD}"
    assert strip_quoted(body) == "Neuer Text."


@pytest.mark.parametrize(
    "marker",
    [
        "---------- Пересылаемое сообщение ---------",
        "-------- Пересланное сообщение --------",
        "Начало переадресованного сообщения:",
        "---------- Weitergeleitete Nachricht ---------",
    ],
)
def test_forwards_in_other_languages_are_kept(marker: str) -> None:
    body = (
        f"Посмотрите, пожалуйста.\n\n{marker}\nОт: Bob <bob@example.org>\n"
        "Date: чт, 3 дек. 2026 г. в 10:15\nSubject: Счёт 42\nTo: Javi <javi@example.com>\n\n"
        "Оплатите счёт 42.\n"
    )
    assert strip_quoted(body) == body.rstrip()


@pytest.mark.parametrize(
    "body",
    [
        # a person's own lines that look like fields, without a dated header block below
        "Please ship the toner.\nFrom: Warehouse B\nTo: Office 3\nThanks",
        "Please ship the toner.\nFrom: Warehouse B\nDate: as soon as possible\nTo: Office 3",
        "Bitte liefern.\nVon: Lager B\nAn: Büro 3\nDanke",
        "Привет.\nОт: склад Б\nКому: офис 3\nТема: тонер",
        # Russian prose that reads like an attribution
        "Вчера в 10:15 менеджер написал:\nперезагрузите принтер.",
        "2 дня назад в 10:15 менеджер написал:\nперезагрузите принтер.",
        "Ваш коллега сказал в 10:15, что всё работает <ok>:\nно нет.",
        "Max schrieb am Montag:\nder Drucker geht nicht.",
        "Op maandag schreef ik:\nde printer doet het niet.",
    ],
)
def test_text_in_other_languages_is_not_mistaken_for_history(body: str) -> None:
    assert strip_quoted(body) == body
