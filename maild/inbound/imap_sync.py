"""One round of reading a mailbox into the journal, on a connection someone else keeps.

A round: select the folder; on first contact take the baseline (see `imap_state`); finish
the after-action of messages already committed but still there (a crash between the commit
and the action); fetch what is new in batches with BODY.PEEK (the server's \\Seen flag is
not touched before the commit); commit each batch, with the new high-water UID, in one
transaction; then act on the batch. One message the server will not give or the journal
will not take is struck (`Isolation`) and tried again alone, not a stop for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Protocol

from maild.domain import Channel, Envelope
from maild.errors import TransientStoreError
from maild.inbound.imap_client import Fetched, ImapClient, Selected, uid_set
from maild.inbound.imap_envelope import UNKNOWN_SENDER, envelope_of, journal_source
from maild.inbound.imap_state import ImapJournal, Isolation, MailboxState, first_contact
from maild.supervise import describe
from store.journal import Incoming

__all__ = ["Counters", "Mailbox", "MailboxSync"]

log = logging.getLogger("maild.imap")


class Mailbox(Protocol):
    """What a round reads of a mailbox's settings (`ImapSettings` has it)."""

    @property
    def key(self) -> str: ...
    @property
    def folder(self) -> str: ...
    @property
    def after(self) -> str: ...  # move | seen | delete
    @property
    def move_to(self) -> str | None: ...
    @property
    def since(self) -> date | None: ...
    @property
    def batch(self) -> int: ...


class MailboxSource(Mailbox, Protocol):
    """And what the reader needs to reach the mailbox (`ImapSettings` has it): inbound
    declares what it reads, the settings' type supplies it, and neither imports the other."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tls(self) -> str: ...  # implicit | starttls | none
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str | None: ...
    @property
    def password_file(self) -> Path | None: ...
    @property
    def password_env(self) -> str | None: ...
    @property
    def oauth2_command(self) -> str | None: ...
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def poll_seconds(self) -> float: ...
    @property
    def idle(self) -> bool: ...


@dataclass
class Counters:
    rounds: int = 0
    committed: int = 0
    skipped: int = 0  # already in the journal
    connections: int = 0
    given_up: int = 0  # messages the server would not give (or the journal not take): left


class MailboxSync:
    """Reads what is new in one mailbox into the journal, a round at a time."""

    def __init__(self, box: Mailbox, store: ImapJournal, *, group_address: str,
                 reply_local: str, reply_domain: str,
                 on_committed: Callable[[], None] = lambda: None,
                 give_up_after: int = 3) -> None:
        self.box = box
        self.store = store
        self.group_address = group_address
        self.reply_local = reply_local
        self.reply_domain = reply_domain
        self.on_committed = on_committed
        self.counters = Counters()
        self.fail_after_commit: Callable[[], None] | None = None  # tests: a crash point
        self._uids = Isolation(box.key, box.folder, give_up_after)
        self._fetching: list[int] = []  # the UIDs of the FETCH in flight
        self._retry_soon = False  # a message failed this round: its next try comes soon

    async def sync_once(self, client: ImapClient) -> int:
        """One round; returns how many messages were added to the journal."""
        box = self.box
        self.counters.rounds += 1
        self._retry_soon = False
        state = await self._state(client, await client.select(box.folder))
        left = set(state.given_up)
        for query, low, high in state.done_searches(unseen=box.after == "seen"):
            # committed earlier, but the after-action may not have happened
            done = [u for u in await self._search(client, query, low, high) if u not in left]
            if done:
                await self._after(client, done)
        new: set[int] = set()
        for query, low, high in state.new_searches():
            new.update(await self._search(client, query, low, high))
        above = self._uids.done_above = {u for u in self._uids.done_above if u > state.last_uid}
        todo = sorted(new - left - above)
        added = 0
        waiting: set[int] = set()  # failed in this round, tried again in the next
        for i in range(0, len(todo), box.batch):
            state, n = await self._read(client, state, todo[i:i + box.batch], waiting)
            added += n
        if added:
            log.info("%s: %d new message(s) journaled", box.key, added)
        return added

    async def _state(self, client: ImapClient, selected: Selected) -> MailboxState:
        """The mailbox's state; on first contact (or a new UIDVALIDITY, or a new `since`)
        the baseline of what is there already, saved at once."""
        box = self.box
        validity = selected.uidvalidity
        self._uids.numbering(validity)
        stored = await asyncio.to_thread(self.store.state, box.key)
        since = box.since.isoformat() if box.since is not None else None
        if stored is not None and stored.uidvalidity == validity and (
                since is None or stored.since == since):
            return stored.give_up(sorted(self._uids.given_up))
        if stored is None:
            why = "first contact"
        elif stored.uidvalidity != validity:
            why = f"UIDVALIDITY changed ({stored.uidvalidity} → {validity})"
        else:
            why = f"since changed to {since}"
        kept = stored.given_up if stored is not None and stored.uidvalidity == validity else ()
        state = first_contact(validity, await self._top(client, selected), after=box.after,
                              since=box.since, given_up=kept)
        what = (f"the messages matching {state.criteria} and all new ones" if state.criteria
                else "every message in the folder")
        log.log(logging.INFO if stored is None else logging.WARNING, "%s: %s; reading %s",
                box.key, why, what)
        await self._may_commit()
        await asyncio.to_thread(self.store.commit, box.key, state, [])
        return state

    async def _top(self, client: ImapClient, selected: Selected) -> int:
        """The highest UID the folder may hold now (UIDNEXT - 1)."""
        if selected.top is not None:
            return selected.top
        return max(await self._search(client, "ALL", 1, None), default=0)

    async def _search(self, client: ImapClient, query: str, low: int,
                      high: int | None) -> list[int]:
        # a server answers "UID n:*" with the highest UID even when it is below n
        return [u for u in await client.search(query)
                if u >= low and (high is None or u <= high)]

    async def _read(self, client: ImapClient, state: MailboxState, batch: list[int],
                    waiting: set[int]) -> tuple[MailboxState, int]:
        """Fetch, journal and act on one batch; the state after it, and how many were added.
        The high-water mark never passes a message that failed in this round (`waiting`: it
        is tried again) unless it was given up (then it is remembered as left in the folder)."""
        key = self.box.key
        fetched, failed = await self._fetch(client, batch)
        items = {uid: Incoming(envelope=self._envelope(uid, raw), raw=raw,
                               source=journal_source(key, state.uidvalidity, uid))
                 for uid, raw in fetched}
        waiting.update(uid for uid, why in failed.items() if not self._strike(uid, why))
        await self._may_commit()
        try:
            new = self._advanced(state, batch, waiting)
            n = await asyncio.to_thread(self.store.commit, key, new, list(items.values()))
            taken = list(items)
        except TransientStoreError:
            raise  # the database, not the batch: the loop's problem
        except Exception as exc:  # something in one of them: each alone finds which
            log.warning("%s: journaling UIDs %s failed (%s); each alone", key,
                        uid_set(list(items)), describe(exc))
            n, taken = await self._commit_each(state, items, waiting)
            new = self._advanced(state, batch, waiting)
            await asyncio.to_thread(self.store.commit, key, new, [])
        self.counters.committed += n
        self.counters.skipped += len(taken) - n
        if n:
            self.on_committed()
        if self.fail_after_commit is not None:
            self.fail_after_commit()
        self._uids.done_above.update(u for u in taken if u > new.last_uid)
        await self._after(client, taken)
        return new, n

    async def _may_commit(self) -> None:
        """Raises when this reader may no longer commit (a reader under a lease lost it)."""

    async def _commit_each(self, state: MailboxState, items: dict[int, Incoming],
                           waiting: set[int]) -> tuple[int, list[int]]:
        """Journal the messages one at a time; how many were added, and the UIDs taken."""
        n = 0
        taken: list[int] = []
        for uid, item in items.items():
            try:
                n += await asyncio.to_thread(self.store.commit, self.box.key, state, [item])
            except TransientStoreError:
                raise
            except Exception as bad:
                if not self._strike(uid, f"the journal refused it: {describe(bad)}"):
                    waiting.add(uid)
            else:
                taken.append(uid)
        return n, taken

    def _advanced(self, state: MailboxState, batch: list[int],
                  waiting: set[int]) -> MailboxState:
        high = min(waiting) - 1 if waiting else max(batch)
        return replace(state.give_up(sorted(self._uids.given_up)),
                       last_uid=max(state.last_uid, high))

    async def _fetch(self, client: ImapClient,
                     batch: list[int]) -> tuple[list[tuple[int, bytes]], dict[int, str]]:
        """The batch's messages, and why the others did not come. A batch holding a message
        that failed before is fetched one message at a time, so one cannot hold back the
        rest (Dovecot drops the connection on a message it cannot read)."""
        fetched: list[tuple[int, bytes]] = []
        rest = batch
        if len(batch) > 1 and self._uids.alone.isdisjoint(batch):
            reply = await self._fetch_reply(client, batch)
            if reply.messages is not None:
                fetched = [(uid, raw) for uid, raw in reply.messages if uid in batch]
                got = {uid for uid, _ in fetched}
                rest = [uid for uid in batch if uid not in got]
            else:
                log.warning("%s: FETCH of UIDs %s refused (%s); one at a time", self.box.key,
                            uid_set(batch), reply.refusal)
        failed: dict[int, str] = {}
        for uid in rest:
            reply = await self._fetch_reply(client, [uid])
            one = [raw for u, raw in reply.messages or () if u == uid]
            if one:
                fetched.append((uid, one[0]))
            elif reply.messages is not None:  # expunged meanwhile, or a reply we cannot read
                failed[uid] = "not in the FETCH reply"
            else:
                failed[uid] = f"FETCH refused: {reply.refusal}"
        return sorted(fetched), failed

    async def _fetch_reply(self, client: ImapClient, uids: list[int]) -> Fetched:
        self._fetching = uids  # read by the reader when the connection dies meanwhile
        reply = await client.fetch(uids)
        self._fetching = []
        return reply

    def _strike(self, uid: int, why: str) -> bool:
        """Count a failed try at one message; whether it is given up now."""
        if self._uids.strike(uid, why):
            self.counters.given_up += 1
            return True
        self._retry_soon = True
        return False

    def _envelope(self, uid: int, raw: bytes) -> Envelope:
        try:
            return self.envelope(raw)
        except Exception as exc:  # a header no parser expected: the mail is still kept
            log.warning("%s: UID %d: cannot read the envelope from its headers (%s); "
                        "journaled for the group address", self.box.key, uid, describe(exc))
            return Envelope(mail_from=UNKNOWN_SENDER, rcpt_tos=(self.group_address,),
                            channel=Channel.IMAP)

    async def _after(self, client: ImapClient, uids: list[int]) -> None:
        if not uids:
            return
        if self.box.after == "seen":
            await client.flag(uids, "\\Seen", "flag seen")
            return
        if self.box.after == "move" and client.has_capability("MOVE"):
            await client.move(uids, self.box.move_to or "")
            return
        if self.box.after == "move":
            await client.copy(uids, self.box.move_to or "")
        await client.flag(uids, "\\Deleted", "flag deleted")
        await client.expunge(uids)

    def envelope(self, raw: bytes) -> Envelope:
        """Who the mail was for and who sent it, as far as its headers say."""
        return envelope_of(raw, reply_local=self.reply_local, reply_domain=self.reply_domain,
                           group_address=self.group_address)
