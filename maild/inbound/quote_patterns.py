"""The shapes quoted history takes in mail, in the languages maild meets: the tables.

Attribution lines ("On <date>, <name> wrote:" and its kin), Outlook's separators and header
fields, forward markers and mobile trailers, all case-folded; and the cheap gate in front of
the line tests (`quote_lines`). Adding a client or a language is adding a row here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Attribution:
    """One client's and language's "On <date>, <name> wrote:" (all case-folded): the line,
    without its final colon, starts with one of `starts`, holds `has` and ends with one of
    `ends`."""

    starts: tuple[str, ...]  # empty: any start
    has: str = ""
    ends: tuple[str, ...] = ("",)
    year: bool = False  # it must name a year ("2026"): the Russian shapes start anyhow
    address: bool = False  # it must hold an address ("<javi@x>")

    def matches(self, core: str) -> bool:
        return ((not self.starts or core.startswith(self.starts)) and self.has in core
                and core.endswith(self.ends) and (not self.year or _YEAR.search(core) is not None)
                and (not self.address or "@" in core))


_DIGITS = tuple("0123456789")
# Gmail's Russian weekdays ("вт, 3 дек. 2026 г. в 10:15, Javi <javi@x>:"), and mail.ru's
# full ones ("Вторник, 3 декабря 2026, 10:15 +03:00 от Javi <javi@x>:").
_RU_DAYS = ("пн, ", "вт, ", "ср, ", "чт, ", "пт, ", "сб, ", "вс, ")
_RU_WEEKDAYS = ("понедельник, ", "вторник, ", "среда, ", "четверг, ", "пятница, ",
                "суббота, ", "воскресенье, ")
ATTRIBUTIONS: tuple[Attribution, ...] = (
    Attribution(("on ",), ends=(" wrote",)),  # Gmail, Apple Mail, Thunderbird
    Attribution(("el ",), ends=(" escribió",)),
    Attribution(("le ",), ends=(" a écrit",)),  # "a écrit :" too
    Attribution(("am ",), has=" schrieb "),  # "Am … um 10:15 schrieb Javi <javi@x>:"
    # Gmail on Android: "Javi <javi@x> schrieb am Do., 3. Dez. 2026, 10:15:"
    Attribution((), has=" schrieb am ", address=True),
    Attribution(("op ",), has=" schreef "),
    Attribution(("op ",), ends=(" het volgende geschreven",)),  # Apple Mail
    Attribution(("il ",), ends=(" ha scritto",)),  # "Il giorno …" (Gmail), "Il …" (others)
    Attribution(("w dniu ",), ends=(" pisze",)),
    Attribution(("em ",), ends=(" escreveu",)),
    # Russian: Yandex and Gmail's older "3 декабря 2026 г., в 10:15, пользователь Javi
    # <javi@x> написал:", Apple Mail's "… Javi <javi@x> написал(а):", Thunderbird's
    # "03.12.2026 10:15, Javi пишет:"; Gmail names no verb at all (see _RU_DAYS).
    Attribution(_DIGITS + _RU_WEEKDAYS, ends=(" написал", " написала", " написал(а)", " пишет"),
                 year=True),
    Attribution(_RU_DAYS, ends=(">",), year=True),
    Attribution(_DIGITS, ends=(">",), year=True),  # Yandex: "03.12.2026, 10:15, "Javi" <…>:"
    Attribution(_RU_WEEKDAYS, has=" от ", ends=(">",), year=True),
)
# An attribution carries a time ("10:00"), an address with a date, or a Russian year
# ("2026 г."); a sentence like "On Monday I wrote:" carries none, so it is left alone.
TIME = re.compile(r"\d:\d\d")
RU_YEAR = re.compile(r"\d\d\d\d г\.")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
MAX_ATTRIBUTION = 300  # characters; longer lines are prose, and the cap bounds the work
# Only a line that could start an attribution is joined with the next one (Gmail wraps long
# attributions over two lines): one starting like some entry, or holding an address when some
# entry may start anyhow ("Javi <javi@x> schrieb am …").
ATTRIBUTION_PREFIXES = tuple(p for a in ATTRIBUTIONS for p in a.starts)
ANY_START = any(not a.starts for a in ATTRIBUTIONS)

# "-----Original Message-----" and friends: the reply history starts here.
SEPARATORS = frozenset(
    {
        "original message",
        "ursprüngliche nachricht",
        "message d'origine",
        "mensaje original",
        "messaggio originale",
        "oorspronkelijk bericht",
        "mensagem original",
        "oryginalna wiadomość",
        "wiadomość oryginalna",
        "исходное сообщение",
        # Thunderbird's "-------- Original-Nachricht --------" and the like
        "original-nachricht",
        "originalnachricht",
        "message original",
        "origineel bericht",
    }
)
# "---------- Forwarded message ---------": what follows is the content of a forward.
DASHED_FORWARDS = frozenset(
    {
        "forwarded message",
        "message transféré",
        "weitergeleitete nachricht",
        "mensaje reenviado",
        "messaggio inoltrato",
        "doorgestuurd bericht",
        "mensagem encaminhada",
        "wiadomość przekazana",
        "przekazana wiadomość",
        "пересылаемое сообщение",
        "пересланное сообщение",
        "переадресованное сообщение",
    }
)
# Apple Mail writes the forward marker without dashes.
PLAIN_FORWARDS = frozenset(
    {
        "begin forwarded message",
        "début du message réexpédié",
        "anfang der weitergeleiteten nachricht",
        "inicio del mensaje reenviado",
        "inizio messaggio inoltrato",
        "begin doorgestuurd bericht",
        "início da mensagem reencaminhada",
        "początek przekazywanej wiadomości",
        "начало переадресованного сообщения",
        "начало пересылаемого сообщения",
    }
)

# Outlook's header block ("From: … / Sent: … / To: … / Subject: …"), by field role.
FROM_LABELS = frozenset({"from", "de", "von", "van", "da", "od", "от"})
DATE_LABELS = frozenset(
    {
        "sent", "date", "envoyé", "gesendet", "datum", "enviado", "enviado el", "fecha",
        "enviada em", "enviado em", "verzonden", "inviato", "data", "wysłane", "wysłano",
        "отправлено", "дата",
    }
)  # fmt: skip
TO_OR_SUBJECT_LABELS = frozenset(
    {
        "to", "à", "a", "an", "para", "aan", "do", "cc", "кому", "копия",
        "subject", "objet", "betreff", "asunto", "onderwerp", "oggetto", "assunto", "temat",
        "тема",
    }
)  # fmt: skip
MAX_LABEL = 24  # a field label sits within this many characters of the line start
HEADER_WINDOW = 6  # the other fields follow the From line within this many lines
RULE_WINDOW = 3  # Outlook's "____" rule precedes the header block within this many lines
MIN_RULE = 10

# Mobile and webmail trailers, as (start, end) of the whole case-folded line.
TRAILERS: tuple[tuple[str, str], ...] = (
    ("sent from my ", ""),
    ("sent from mail for ", ""),
    ("sent from outlook", ""),
    ("sent from yahoo mail", ""),
    ("get outlook for ", ""),
    ("envoyé de mon ", ""),
    ("envoyé depuis mon ", ""),
    ("von meinem ", " gesendet"),
    ("gesendet von meinem ", ""),
    ("enviado desde mi ", ""),
    ("enviado do meu ", ""),
    ("inviato da ", ""),
    ("verzonden vanaf mijn ", ""),
    ("verstuurd vanaf mijn ", ""),
    ("wysłane z ", ""),
)
TRAILER_STARTS = tuple(start for start, _ in TRAILERS)
MAX_TRAILER = 60
MAX_MARKER = 100  # separator and forward lines are short; longer lines are not looked at

# The cheap gate in front of the detectors (most lines of a mail are plain prose): a line can
# only start history, a signature or a forward if it has a colon (attributions, header
# fields, "Begin forwarded message:"), starts with one of these characters (quote, dashes,
# rule, "*From:*") or starts like an attribution or a trailer. Keep it in step with them.
SPECIAL_FIRST = frozenset(">-_*")
SPECIAL_STARTS = ATTRIBUTION_PREFIXES + TRAILER_STARTS
SPECIAL_START_LEN = max(len(start) for start in SPECIAL_STARTS)
