"""How far each IMAP mailbox has been read, kept in the store's `meta` table by mailbox key.

Messages are found by UID. The state says which UIDs are done: every UID up to `last_uid`
was journaled, or left out on purpose. Left out are, on first contact (a mailbox the store
has no state for, or whose UIDVALIDITY changed), the messages already there that the
configuration does not ask for: with `after = "seen"` the ones already seen (a person or
another program read them), with `since` the ones older than that date; and, later, messages
the server could not give (`given_up`), which stay in the folder untouched. The after-action
(flag, move, delete) is only ever done to messages that were journaled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import date

from maild.clock import Clock
from store.journal import Incoming
from store.unit import Database

log = logging.getLogger("maild.imap")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class MailboxState:
    uidvalidity: int
    last_uid: int = 0  # every UID up to here is journaled or left out on purpose
    upto: int = 0  # first contact: UIDs up to here are read only when they match `criteria`
    criteria: str = ""  # an IMAP SEARCH key ("UNSEEN", "SINCE 1-Dec-2026"); "" reads all
    since: str | None = None  # the configured `since` (ISO date) this state began with
    given_up: tuple[int, ...] = ()  # UIDs the server would not give: left in the folder

    def to_json(self) -> str:
        data: dict[str, object] = {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}
        if self.criteria:
            data.update(upto=self.upto, criteria=self.criteria)
        if self.since is not None:
            data["since"] = self.since
        if self.given_up:
            data["given_up"] = list(self.given_up)
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> MailboxState:
        data = json.loads(raw)  # written by maild before this state had more than two keys too
        return cls(uidvalidity=int(data["uidvalidity"]), last_uid=int(data["last_uid"]),
                   upto=int(data.get("upto", 0)), criteria=str(data.get("criteria", "")),
                   since=data.get("since"),
                   given_up=tuple(int(u) for u in data.get("given_up", ())))

    def new_searches(self) -> list[tuple[str, int, int | None]]:
        """UID SEARCH keys for the messages not read yet, each with the UID range its answer
        must be cut to (a server answers "UID n:*" with the highest UID even below n)."""
        low = self.last_uid + 1
        if self.criteria and self.last_uid < self.upto:
            return [(f"UID {low}:{self.upto} {self.criteria}", low, self.upto),
                    (f"UID {self.upto + 1}:*", self.upto + 1, None)]
        return [(f"UID {low}:*", low, None)]

    def done_searches(self, unseen: bool) -> list[tuple[str, int, int | None]]:
        """UID SEARCH keys for journaled messages still in the folder (their after-action may
        not have happened: a crash between the commit and the action); `unseen`: only the
        ones not flagged \\Seen yet."""
        if not self.last_uid:
            return []
        flag = " UNSEEN" if unseen else ""
        if not self.criteria or self.upto == 0:
            return [(f"UID 1:{self.last_uid}{flag}", 1, self.last_uid)]
        out: list[tuple[str, int, int | None]] = [
            (f"UID 1:{min(self.last_uid, self.upto)} {self.criteria}{flag}", 1,
             min(self.last_uid, self.upto))]
        if self.last_uid > self.upto:
            out.append((f"UID {self.upto + 1}:{self.last_uid}{flag}", self.upto + 1,
                        self.last_uid))
        return out

    def give_up(self, uids: list[int]) -> MailboxState:
        return replace(self, given_up=tuple(sorted({*self.given_up, *uids})))


def first_contact(uidvalidity: int, top: int, *, after: str, since: date | None,
                  given_up: tuple[int, ...] = ()) -> MailboxState:
    """The state of a mailbox read for the first time (or anew, its UIDs renumbered): what
    is in it up to UID `top` is read when it is unseen (`after = "seen"`), since `since`
    (whatever `after` is), or all of it (`after = "move"` or `"delete"`)."""
    if since is not None:
        criteria = f"SINCE {imap_date(since)}"
    elif after == "seen":
        criteria = "UNSEEN"
    else:
        criteria = ""
    return MailboxState(uidvalidity=uidvalidity, upto=top if criteria else 0, criteria=criteria,
                        since=since.isoformat() if since is not None else None,
                        given_up=given_up)


def imap_date(day: date) -> str:
    """RFC 3501 date: 1-Dec-2026 (English month names, whatever the locale)."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class ImapJournal:
    """The journal side of a mailbox, called in a worker thread (it blocks)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def state(self, key: str) -> MailboxState | None:
        with self.db.write() as tx:
            raw = tx.meta.get(key)
        return None if raw is None else MailboxState.from_json(raw)

    def commit(self, key: str, state: MailboxState, items: list[Incoming]) -> int:
        """The batch and the mailbox's new state in one transaction; contents already
        journaled are skipped. Returns how many rows were added."""
        with self.db.write() as tx:
            digests = [hashlib.sha256(i.raw).hexdigest() for i in items]
            known = tx.journal.known_sha256(digests)
            fresh, seen = [], set(known)
            for item, digest in zip(items, digests, strict=True):
                if digest not in seen:
                    fresh.append(item)
                    seen.add(digest)
            tx.journal.insert_many(fresh, self.clock.now())
            tx.meta.set(key, state.to_json())
            return len(fresh)


class Isolation:
    """What a reader remembers of single messages, for one UIDVALIDITY: how often each failed
    (a FETCH refused or dropped, a reply without it, the journal refusing it), which to fetch
    one at a time (a batch that held a failing one), which were given up (left in the folder)
    and which were journaled above the high-water mark (not to be fetched again)."""

    def __init__(self, key: str, folder: str, give_up_after: int) -> None:
        self.key, self.folder, self.give_up_after = key, folder, give_up_after
        self.validity: int | None = None
        self.strikes: dict[int, int] = {}
        self.alone: set[int] = set()
        self.given_up: set[int] = set()
        self.done_above: set[int] = set()

    def numbering(self, validity: int) -> None:
        """UIDs of another UIDVALIDITY are other messages: forget those of the last one."""
        if validity != self.validity:
            self.validity = validity
            self.strikes, self.alone, self.given_up, self.done_above = {}, set(), set(), set()

    def strike(self, uid: int, why: str) -> bool:
        """Count a failed try at one message; whether it is given up now."""
        tries = self.strikes.get(uid, 0) + 1
        self.strikes[uid] = tries
        self.alone.add(uid)
        if tries < self.give_up_after:
            log.warning("%s: UID %d not journaled (%s); trying it again alone", self.key, uid,
                        why)
            return False
        self.given_up.add(uid)
        log.error("%s: UID %d left in %s after %d failed tries, never journaled: %s; have the "
                  "server's administrator look at it (put into the folder again, it is read "
                  "as a new message)", self.key, uid, self.folder, tries, why)
        return True
