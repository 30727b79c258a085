"""Reply stripping: the step that turns a reply's body into the note a ticket stores.

`strip_quoted` keeps what the sender wrote and drops what their client added: the quoted
history (attribution lines, `>` blocks, Outlook separators and header blocks) and the
signature ("-- " or a mobile trailer such as "Sent from my iPhone"). A forwarded message is
the content of a forward, so it is kept.

Everything works line by line with plain string tests (no backtracking regexes): each line
is looked at a bounded number of times, so a megabyte body costs milliseconds.

Known limit: an Outlook forward has no marker line, only the header block, so it looks like
a reply and its forwarded part is dropped.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# -- the tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attribution:
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
_ATTRIBUTIONS: tuple[_Attribution, ...] = (
    _Attribution(("on ",), ends=(" wrote",)),  # Gmail, Apple Mail, Thunderbird
    _Attribution(("el ",), ends=(" escribió",)),
    _Attribution(("le ",), ends=(" a écrit",)),  # "a écrit :" too
    _Attribution(("am ",), has=" schrieb "),  # "Am … um 10:15 schrieb Javi <javi@x>:"
    # Gmail on Android: "Javi <javi@x> schrieb am Do., 3. Dez. 2026, 10:15:"
    _Attribution((), has=" schrieb am ", address=True),
    _Attribution(("op ",), has=" schreef "),
    _Attribution(("op ",), ends=(" het volgende geschreven",)),  # Apple Mail
    _Attribution(("il ",), ends=(" ha scritto",)),  # "Il giorno …" (Gmail), "Il …" (others)
    _Attribution(("w dniu ",), ends=(" pisze",)),
    _Attribution(("em ",), ends=(" escreveu",)),
    # Russian: Yandex and Gmail's older "3 декабря 2026 г., в 10:15, пользователь Javi
    # <javi@x> написал:", Apple Mail's "… Javi <javi@x> написал(а):", Thunderbird's
    # "03.12.2026 10:15, Javi пишет:"; Gmail names no verb at all (see _RU_DAYS).
    _Attribution(_DIGITS + _RU_WEEKDAYS, ends=(" написал", " написала", " написал(а)", " пишет"),
                 year=True),
    _Attribution(_RU_DAYS, ends=(">",), year=True),
    _Attribution(_DIGITS, ends=(">",), year=True),  # Yandex: "03.12.2026, 10:15, "Javi" <…>:"
    _Attribution(_RU_WEEKDAYS, has=" от ", ends=(">",), year=True),
)
# An attribution carries a time ("10:00"), an address with a date, or a Russian year
# ("2026 г."); a sentence like "On Monday I wrote:" carries none, so it is left alone.
_TIME = re.compile(r"\d:\d\d")
_RU_YEAR = re.compile(r"\d\d\d\d г\.")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_MAX_ATTRIBUTION = 300  # characters; longer lines are prose, and the cap bounds the work
# Only a line that could start an attribution is joined with the next one (Gmail wraps long
# attributions over two lines): one starting like some entry, or holding an address when some
# entry may start anyhow ("Javi <javi@x> schrieb am …").
_ATTRIBUTION_PREFIXES = tuple(p for a in _ATTRIBUTIONS for p in a.starts)
_ANY_START = any(not a.starts for a in _ATTRIBUTIONS)

# "-----Original Message-----" and friends: the reply history starts here.
_SEPARATORS = frozenset(
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
_DASHED_FORWARDS = frozenset(
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
_PLAIN_FORWARDS = frozenset(
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
_FROM_LABELS = frozenset({"from", "de", "von", "van", "da", "od", "от"})
_DATE_LABELS = frozenset(
    {
        "sent", "date", "envoyé", "gesendet", "datum", "enviado", "enviado el", "fecha",
        "enviada em", "enviado em", "verzonden", "inviato", "data", "wysłane", "wysłano",
        "отправлено", "дата",
    }
)  # fmt: skip
_TO_OR_SUBJECT_LABELS = frozenset(
    {
        "to", "à", "a", "an", "para", "aan", "do", "cc", "кому", "копия",
        "subject", "objet", "betreff", "asunto", "onderwerp", "oggetto", "assunto", "temat",
        "тема",
    }
)  # fmt: skip
_MAX_LABEL = 24  # a field label sits within this many characters of the line start
_HEADER_WINDOW = 6  # the other fields follow the From line within this many lines
_RULE_WINDOW = 3  # Outlook's "____" rule precedes the header block within this many lines
_MIN_RULE = 10

# Mobile and webmail trailers, as (start, end) of the whole case-folded line.
_TRAILERS: tuple[tuple[str, str], ...] = (
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
_TRAILER_STARTS = tuple(start for start, _ in _TRAILERS)
_MAX_TRAILER = 60
_MAX_MARKER = 100  # separator and forward lines are short; longer lines are not looked at

# The cheap gate in front of the detectors (most lines of a mail are plain prose): a line can
# only start history, a signature or a forward if it has a colon (attributions, header
# fields, "Begin forwarded message:"), starts with one of these characters (quote, dashes,
# rule, "*From:*") or starts like an attribution or a trailer. Keep it in step with them.
_SPECIAL_FIRST = frozenset(">-_*")
_SPECIAL_STARTS = _ATTRIBUTION_PREFIXES + _TRAILER_STARTS
_SPECIAL_START_LEN = max(len(start) for start in _SPECIAL_STARTS)


# -- the step ------------------------------------------------------------------------------


def strip_quoted(text: str) -> str:
    """The new text of a reply, without quoted history and signature.

    Leading and trailing blank lines are trimmed; kept lines are returned unchanged. When
    nothing would be left (a mail that is only a quote), the original text, trimmed.
    """
    lines = text.split("\n")
    return _joined(_new_lines(lines)) or _joined(lines)


def _new_lines(lines: list[str]) -> list[str]:
    """One pass over the lines; stops where the history or the signature starts."""
    note = _Note()
    i = 0
    while i < len(lines):
        kind, span = _kind(lines, i)
        if kind is _Kind.TEXT:
            note.keep(lines[i])
        elif kind is _Kind.QUOTED:
            note.drop()
        elif kind is _Kind.ATTRIBUTION:
            if not _quote_follows(lines, i + span):
                break  # the history follows unquoted (e.g. text made from HTML)
            note.drop()  # the header of a quote block: inline or bottom-posted reply
        elif kind is _Kind.FORWARD:
            note.keep_all(lines[i:])
            break
        elif kind is _Kind.SIGNATURE:
            note.drop()
            note.keep_all(lines[_forward_after(lines, i) :])
            break
        else:
            break  # _Kind.HISTORY
        i += span
    return note.lines


def _forward_after(lines: list[str], signature: int) -> int:
    """Where a forward marker after the signature starts, else len(lines).

    The forwarder's signature sits above the forwarded message, which is kept.
    """
    for j in range(signature + 1, len(lines)):
        kind, _ = _kind(lines, j)
        if kind is _Kind.FORWARD:
            return j
        if kind in (_Kind.ATTRIBUTION, _Kind.HISTORY):
            break
    return len(lines)


class _Note:
    """The kept lines; where lines were dropped, one blank line separates what is left."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._gap = False

    def drop(self) -> None:
        self._gap = True

    def keep(self, line: str) -> None:
        blank = not line.strip()
        if self._gap and self.lines:
            last_blank = not self.lines[-1].strip()
            if blank and last_blank:
                return
            if not blank and not last_blank:
                self.lines.append("\r" if self.lines[-1].endswith("\r") else "")
        if not blank:
            self._gap = False
        self.lines.append(line)

    def keep_all(self, lines: list[str]) -> None:
        for line in lines:
            self.keep(line)


def _joined(lines: list[str]) -> str:
    """Lines joined, without leading blank lines and trailing whitespace."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:]).rstrip()


# -- what a line is ------------------------------------------------------------------------


class _Kind(enum.Enum):
    TEXT = enum.auto()  # kept
    QUOTED = enum.auto()  # a ">" line: dropped
    ATTRIBUTION = enum.auto()  # "On … wrote:", one or two lines
    HISTORY = enum.auto()  # an Outlook separator, header block or the rule above one
    FORWARD = enum.auto()  # a forward marker: it and what follows are kept
    SIGNATURE = enum.auto()  # "-- " or a mobile trailer


def _kind(lines: list[str], i: int) -> tuple[_Kind, int]:
    """What line i starts, and how many lines that takes."""
    line = lines[i]
    if not _may_be_special(line):
        return _Kind.TEXT, 1
    if _is_quoted(line):
        return _Kind.QUOTED, 1
    span = _attribution_span(lines, i)
    if span:
        return _Kind.ATTRIBUTION, span
    dashed, text = _marker(line)
    if (dashed and text in _SEPARATORS) or _is_header_block(lines, i) or _follows_rule(lines, i):
        return _Kind.HISTORY, 1
    if text in (_DASHED_FORWARDS if dashed else _PLAIN_FORWARDS):
        return _Kind.FORWARD, 1
    if _is_signature(line) or _is_trailer(line):
        return _Kind.SIGNATURE, 1
    return _Kind.TEXT, 1


def _may_be_special(line: str) -> bool:
    stripped = line.lstrip()
    if not stripped:
        return False
    return (
        ":" in stripped
        or "@" in stripped  # the first line of a wrapped "Javi <javi@x> schrieb am …"
        or stripped[0] in _SPECIAL_FIRST
        or stripped[:_SPECIAL_START_LEN].casefold().startswith(_SPECIAL_STARTS)
    )


def _is_quoted(line: str) -> bool:
    return line.lstrip(" \t").startswith(">")


def _is_signature(line: str) -> bool:
    """The usenet signature delimiter "-- " (clients often eat its trailing space)."""
    return line.rstrip() == "--"


def _is_trailer(line: str) -> bool:
    if len(line) > _MAX_TRAILER:
        return False
    folded = " ".join(line.split()).casefold()
    if not folded.startswith(_TRAILER_STARTS):
        return False
    return any(folded.startswith(start) and folded.endswith(end) for start, end in _TRAILERS)


def _marker(line: str) -> tuple[bool, str]:
    """(whether the line is framed by dashes, its text case-folded without dashes and ':')."""
    if len(line) > _MAX_MARKER:
        return False, ""
    stripped = line.strip()
    dashed = stripped.startswith("--") and stripped.endswith("--")
    text = stripped.strip("-").strip().rstrip(":").strip()
    return dashed, text.casefold().replace("’", "'")


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= _MIN_RULE and not stripped.strip("_")


def _label(line: str) -> str | None:
    """The field label of "From: …" (also "*From:* …"), case-folded; None for other lines."""
    stripped = line.strip()
    colon = stripped.find(":", 0, _MAX_LABEL)
    if colon <= 0:
        return None
    return stripped[:colon].strip(" *\t\u00a0").casefold()


def _is_header_block(lines: list[str], i: int) -> bool:
    """Outlook's quoted header: a From field, then a date field (with a digit: every client
    writes the day or the year) and a To or Subject field. A person's own "From: …" line in
    their text has no such fields below it and stays."""
    if _label(lines[i]) not in _FROM_LABELS:
        return False
    dated = addressed = False
    for line in lines[i + 1 : i + 1 + _HEADER_WINDOW]:
        label = _label(line)
        if label in _DATE_LABELS and any(c.isdigit() for c in line.partition(":")[2]):
            dated = True
        elif label in _TO_OR_SUBJECT_LABELS:
            addressed = True
    return dated and addressed


def _follows_rule(lines: list[str], i: int) -> bool:
    """Whether line i is Outlook's "____" rule line right above a header block."""
    if not _is_rule(lines[i]):
        return False
    window = range(i + 1, min(i + 1 + _RULE_WINDOW, len(lines)))
    following = next((j for j in window if lines[j].strip()), None)
    return following is not None and _is_header_block(lines, following)


def _is_attribution(line: str) -> bool:
    if not line.rstrip().endswith(":"):
        return False
    text = " ".join(line.split()).casefold()  # also folds no-break spaces ("a écrit :")
    if not text.endswith(":"):
        return False
    core = text[:-1].rstrip()
    if not (_TIME.search(core) or _RU_YEAR.search(core)
            or ("@" in core and any(c.isdigit() for c in core))):
        return False
    return any(a.matches(core) for a in _ATTRIBUTIONS)


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines (0, 1 or 2 when wrapped) the attribution starting at line i takes."""
    line = lines[i]
    if len(line) > _MAX_ATTRIBUTION or not line.strip() or _is_quoted(line):
        return 0
    if _is_attribution(line):
        return 1
    if i + 1 == len(lines) or not _may_start_attribution(line):
        return 0
    following = lines[i + 1]
    if (len(following) > _MAX_ATTRIBUTION or not following.strip() or _is_quoted(following)
            or _is_attribution(following)):  # then line i is the text above it
        return 0
    return 2 if _is_attribution(f"{line} {following}") else 0


def _may_start_attribution(line: str) -> bool:
    if line.lstrip().casefold().startswith(_ATTRIBUTION_PREFIXES):
        return True
    return _ANY_START and "@" in line


def _quote_follows(lines: list[str], i: int) -> bool:
    """Whether the next non-blank line from i on is quoted."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and _is_quoted(lines[i])
