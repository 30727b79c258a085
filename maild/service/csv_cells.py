"""One CSV cell each: the Integria IMS values of `import-csv` turned into maild's.

The CSV carries Integria IMS values; where the spec gives no mapping, this is the one used:

- State: 1 new, 2 unconfirmed, 3 assigned, 4 reopened, 5 pending_close ("pending to be
  closed"), 6 pending_third_party ("pending on a third person"), 7 closed (Integria's
  `tincident_status` ids); or a status name, maild's or Integria's. Empty: new.
- Priority: 0 informative → very_low, 1 low, 2 medium, 3 serious → high, 4 very serious →
  very_high, 10 maintenance → very_low (Integria's ids); or a configured priority name.
  Empty: the configured default. A mapped name the config does not list is a bad line.
- Resolution: 0 or empty none, 1 fixed → solved, 2 invalid → rejected, 3 won't fix →
  rejected, 4 duplicate, 5 works for me → rejected, 6 incomplete → missing_data, 7 expired,
  8 moved → other, 9 in process → none; or a configured resolution name.
- Dates: YYYY-MM-DD[ HH:MM[:SS]] in the site's time zone (Integria writes local time), or ISO
  8601 with an offset; empty or 0000-00-00… is no date. Beginning is required; a closed
  ticket needs Closing (ignored otherwise); the last update is the latest of the three.
- User ID (the creator) and Closed by: a login or an e-mail address; an unknown address
  becomes a customer account, as a mail from it would; an unknown login is a bad line.
- Group ID: a group's name or its id; the owner is the group's default owner.
- Rating: empty or 0 none; good, positive, 1, +1, yes: good; bad, negative, -1, no: bad.
- "0" in Epilogue and Rating comment is Integria's empty value (see the spec's example).
- Read: Beginning, Closing, Title, Description, User ID, State, Priority, Group ID, Update,
  Resolution, Epilogue, SLA disabled, Copies of emails, Closed by, Blocked, Rating, Rating
  comment and the custom fields. The other columns are ids of the old system's own rows
  (task, parent, SLA, type, creator, editor, old states, hash) and are not read.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from maild.domain import DEFAULT_PRIORITIES, DEFAULT_RESOLUTIONS, STATUS_IDS, Status

STATUS_NAMES = {**{s.value: s for s in Status}, "re_opened": Status.REOPENED,
                "pending_to_be_closed": Status.PENDING_CLOSE,
                "pending_on_a_third_person": Status.PENDING_THIRD_PARTY,
                "pending_on_third_person": Status.PENDING_THIRD_PARTY}
PRIORITY_IDS = {0: "informative", 1: "low", 2: "medium", 3: "serious", 4: "very_serious",
                10: "maintenance"}
PRIORITY_NAMES = {"informative": "very_low", "serious": "high", "very_serious": "very_high",
                  "maintenance": "very_low", **{p: p for p in DEFAULT_PRIORITIES}}
RESOLUTION_IDS = {1: "fixed", 2: "invalid", 3: "wont_fix", 4: "duplicate", 5: "works_for_me",
                  6: "incomplete", 7: "expired", 8: "moved", 9: "in_process"}
RESOLUTION_NAMES: dict[str, str | None] = {
    "fixed": "solved", "invalid": "rejected", "wont_fix": "rejected", "won_t_fix": "rejected",
    "works_for_me": "rejected", "incomplete": "missing_data", "moved": "other",
    "in_process": None, **{r: r for r in DEFAULT_RESOLUTIONS}}
GOOD = frozenset({"good", "positive", "1", "+1", "yes", "true"})
BAD = frozenset({"bad", "negative", "-1", "no", "false"})
EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")
TITLE_MAX = 500


class CellError(ValueError):
    """A cell that does not read; the message is the reason reported for its line."""


def key(text: str) -> str:
    """ "Pending to be closed", "pending-to-be-closed" → "pending_to_be_closed"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def date(text: str, zone: ZoneInfo, *, required: bool = False) -> datetime | None:
    if not text or text.startswith("0000-00-00"):
        if required:
            raise CellError("is empty; every ticket needs the date it began "
                            "(YYYY-MM-DD HH:MM:SS)")
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CellError(f"{text!r} is not a date (YYYY-MM-DD HH:MM:SS)") from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


def title(text: str) -> str:
    if not text:
        raise CellError("is empty; every ticket needs a title")
    if len(text) > TITLE_MAX:
        raise CellError(f"is {len(text)} characters long; at most {TITLE_MAX}")
    return text


def status(text: str) -> Status:
    if not text:
        return Status.NEW
    found = STATUS_IDS.get(int(text)) if text.isdigit() else STATUS_NAMES.get(key(text))
    if found is None:
        raise CellError(f"{text!r} is not a state: 1–7 (Integria's ids) or one of "
                    f"{', '.join(s.value for s in Status)}")
    return found


def priority(text: str, priorities: tuple[str, ...], default: str) -> str:
    if not text:
        return default
    name = PRIORITY_IDS.get(int(text)) if text.isdigit() else key(text)
    if name is None:
        raise CellError(f"{text!r} is not a priority: 0–4 or 10 (Integria's ids) or one of "
                    f"{', '.join(priorities)}")
    if name in priorities:
        return name
    mapped = PRIORITY_NAMES.get(name)
    if mapped is None or mapped not in priorities:
        raise CellError(f"{text!r} is not a priority here ([tickets] priorities: "
                    f"{', '.join(priorities)})")
    return mapped


def resolution(text: str, resolutions: tuple[str, ...]) -> str | None:
    if not text or text == "0":
        return None
    name = RESOLUTION_IDS.get(int(text)) if text.isdigit() else key(text)
    if name is None:
        raise CellError(f"{text!r} is not a resolution: 0–9 (Integria's ids) or one of "
                    f"{', '.join(resolutions)}")
    if name in resolutions:
        return name
    if name not in RESOLUTION_NAMES:
        raise CellError(f"{text!r} is not a resolution here ([tickets] resolutions: "
                    f"{', '.join(resolutions)})")
    mapped = RESOLUTION_NAMES[name]
    if mapped is not None and mapped not in resolutions:
        raise CellError(f"{text!r} would be {mapped!r}, which [tickets] resolutions does "
                        "not list")
    return mapped


def flag(text: str) -> bool:
    word = text.lower()
    if word in ("", "0", "no", "false"):
        return False
    if word in ("1", "yes", "true"):
        return True
    raise CellError(f"{text!r} is not 0 or 1")


def addresses(text: str) -> tuple[str, ...]:
    out = [a.lower() for a in re.split(r"[\s,;]+", text) if a]
    wrong = [a for a in out if not EMAIL.match(a) or len(a) > 320]
    if wrong:
        raise CellError(f"{', '.join(map(repr, wrong))} is not an e-mail address")
    return tuple(dict.fromkeys(out))


def rating(text: str) -> bool | None:
    word = text.lower()
    if word in ("", "0"):
        return None
    if word in GOOD or word in BAD:
        return word in GOOD
    raise CellError(f"{text!r} is not a rating: good/positive/1 or bad/negative/-1 "
                    "(empty: none)")


def text0(text: str) -> str:
    return "" if text == "0" else text
