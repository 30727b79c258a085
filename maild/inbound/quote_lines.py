"""What a line of a reply is: text, a quote, an attribution, history, a forward, a signature.

Plain string tests on the tables of `quote_patterns` (no backtracking regexes); a line is
looked at a bounded number of times, and only lines the cheap gate lets through are tested.
"""

from __future__ import annotations

import enum

from maild.inbound.quote_patterns import (
    ANY_START,
    ATTRIBUTION_PREFIXES,
    ATTRIBUTIONS,
    DASHED_FORWARDS,
    DATE_LABELS,
    FROM_LABELS,
    HEADER_WINDOW,
    MAX_ATTRIBUTION,
    MAX_LABEL,
    MAX_MARKER,
    MAX_TRAILER,
    MIN_RULE,
    PLAIN_FORWARDS,
    RU_YEAR,
    RULE_WINDOW,
    SEPARATORS,
    SPECIAL_FIRST,
    SPECIAL_START_LEN,
    SPECIAL_STARTS,
    TIME,
    TO_OR_SUBJECT_LABELS,
    TRAILER_STARTS,
    TRAILERS,
)


class Kind(enum.Enum):
    TEXT = enum.auto()  # kept
    QUOTED = enum.auto()  # a ">" line: dropped
    ATTRIBUTION = enum.auto()  # "On … wrote:", one or two lines
    HISTORY = enum.auto()  # an Outlook separator, header block or the rule above one
    FORWARD = enum.auto()  # a forward marker: it and what follows are kept
    SIGNATURE = enum.auto()  # "-- " or a mobile trailer


def line_kind(lines: list[str], i: int) -> tuple[Kind, int]:
    """What line i starts, and how many lines that takes."""
    line = lines[i]
    if not _may_be_special(line):
        return Kind.TEXT, 1
    if is_quoted(line):
        return Kind.QUOTED, 1
    span = _attribution_span(lines, i)
    if span:
        return Kind.ATTRIBUTION, span
    dashed, text = _marker(line)
    if (dashed and text in SEPARATORS) or _is_header_block(lines, i) or _follows_rule(lines, i):
        return Kind.HISTORY, 1
    if text in (DASHED_FORWARDS if dashed else PLAIN_FORWARDS):
        return Kind.FORWARD, 1
    if _is_signature(line) or _is_trailer(line):
        return Kind.SIGNATURE, 1
    return Kind.TEXT, 1


def _may_be_special(line: str) -> bool:
    stripped = line.lstrip()
    if not stripped:
        return False
    return (
        ":" in stripped
        or "@" in stripped  # the first line of a wrapped "Javi <javi@x> schrieb am …"
        or stripped[0] in SPECIAL_FIRST
        or stripped[:SPECIAL_START_LEN].casefold().startswith(SPECIAL_STARTS)
    )


def is_quoted(line: str) -> bool:
    return line.lstrip(" \t").startswith(">")


def _is_signature(line: str) -> bool:
    """The usenet signature delimiter "-- " (clients often eat its trailing space)."""
    return line.rstrip() == "--"


def _is_trailer(line: str) -> bool:
    if len(line) > MAX_TRAILER:
        return False
    folded = " ".join(line.split()).casefold()
    if not folded.startswith(TRAILER_STARTS):
        return False
    return any(folded.startswith(start) and folded.endswith(end) for start, end in TRAILERS)


def _marker(line: str) -> tuple[bool, str]:
    """(whether the line is framed by dashes, its text case-folded without dashes and ':')."""
    if len(line) > MAX_MARKER:
        return False, ""
    stripped = line.strip()
    dashed = stripped.startswith("--") and stripped.endswith("--")
    text = stripped.strip("-").strip().rstrip(":").strip()
    return dashed, text.casefold().replace("’", "'")


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= MIN_RULE and not stripped.strip("_")


def _label(line: str) -> str | None:
    """The field label of "From: …" (also "*From:* …"), case-folded; None for other lines."""
    stripped = line.strip()
    colon = stripped.find(":", 0, MAX_LABEL)
    if colon <= 0:
        return None
    return stripped[:colon].strip(" *\t\u00a0").casefold()


def _is_header_block(lines: list[str], i: int) -> bool:
    """Outlook's quoted header: a From field, then a date field (with a digit: every client
    writes the day or the year) and a To or Subject field. A person's own "From: …" line in
    their text has no such fields below it and stays."""
    if _label(lines[i]) not in FROM_LABELS:
        return False
    dated = addressed = False
    for line in lines[i + 1 : i + 1 + HEADER_WINDOW]:
        label = _label(line)
        if label in DATE_LABELS and any(c.isdigit() for c in line.partition(":")[2]):
            dated = True
        elif label in TO_OR_SUBJECT_LABELS:
            addressed = True
    return dated and addressed


def _follows_rule(lines: list[str], i: int) -> bool:
    """Whether line i is Outlook's "____" rule line right above a header block."""
    if not _is_rule(lines[i]):
        return False
    window = range(i + 1, min(i + 1 + RULE_WINDOW, len(lines)))
    following = next((j for j in window if lines[j].strip()), None)
    return following is not None and _is_header_block(lines, following)


def _is_attribution(line: str) -> bool:
    if not line.rstrip().endswith(":"):
        return False
    text = " ".join(line.split()).casefold()  # also folds no-break spaces ("a écrit :")
    if not text.endswith(":"):
        return False
    core = text[:-1].rstrip()
    if not (TIME.search(core) or RU_YEAR.search(core)
            or ("@" in core and any(c.isdigit() for c in core))):
        return False
    return any(a.matches(core) for a in ATTRIBUTIONS)


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines (0, 1 or 2 when wrapped) the attribution starting at line i takes."""
    line = lines[i]
    if len(line) > MAX_ATTRIBUTION or not line.strip() or is_quoted(line):
        return 0
    if _is_attribution(line):
        return 1
    if i + 1 == len(lines) or not _may_start_attribution(line):
        return 0
    following = lines[i + 1]
    if (len(following) > MAX_ATTRIBUTION or not following.strip() or is_quoted(following)
            or _is_attribution(following)):  # then line i is the text above it
        return 0
    return 2 if _is_attribution(f"{line} {following}") else 0


def _may_start_attribution(line: str) -> bool:
    if line.lstrip().casefold().startswith(ATTRIBUTION_PREFIXES):
        return True
    return ANY_START and "@" in line
