"""`maild import-csv`: tickets from the spec's CSV layout, the whole file or nothing.

Three steps, one function each:

- `read(data, …)` (in `csv_sheet`) turns the file's bytes into records (a line number and
  its cells), finds a header row and the custom-field names; a file that cannot be read
  raises `CsvFileError`.
- `check(tx, sheet, …)` turns each record into a `TicketIn` or into `BadLine`s (line, column,
  reason); it only reads the store.
- `write(tx, rows, …)` inserts checked tickets in the caller's transaction, so any failure
  leaves nothing half-imported.

Where the spec gives no mapping of the Integria IMS values, `csv_cells` documents the one
used. Every other column keeps its default.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from maild.domain import DEFAULT_PRIORITIES, DEFAULT_RESOLUTIONS, Status
from maild.service import csv_cells
from maild.service.csv_cells import CellError
from maild.service.csv_sheet import AT, COLUMNS, CsvFileError, Record, Sheet, read
from store.people import GroupRef
from store.unit import Tx


@dataclass(frozen=True, kw_only=True)
class BadLine:
    line: int
    column: str | None  # None: the line as a whole
    reason: str


@dataclass(frozen=True, kw_only=True)
class ImportConfig:
    timezone: str
    message_domain: str
    priorities: tuple[str, ...] = DEFAULT_PRIORITIES
    default_priority: str = "medium"
    resolutions: tuple[str, ...] = DEFAULT_RESOLUTIONS
    editor: str = "csv"


@dataclass(frozen=True, kw_only=True)
class TicketIn:
    """One checked line, ready to write."""

    line: int
    title: str
    description: str
    status: Status
    priority: str
    group_id: int
    owner_id: int | None
    creator_id: int | None  # None: `new_customer` gets an account
    new_customer: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by_id: int | None
    resolution: str | None
    epilogue: str | None
    sla_disabled: bool
    blocked: bool
    cc: tuple[str, ...]
    rating: bool | None
    rating_comment: str
    custom: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Checked:
    rows: tuple[TicketIn, ...]
    bad: tuple[BadLine, ...]

    @property
    def bad_lines(self) -> int:
        return len({b.line for b in self.bad})

    @property
    def new_customers(self) -> frozenset[str]:
        return frozenset(r.new_customer for r in self.rows if r.new_customer)


@dataclass(frozen=True, kw_only=True)
class Imported:
    ticket_ids: tuple[int, ...]
    customers: int  # accounts created
    open: int  # tickets not closed (they need `maild sla recompute`)


Progress = Callable[[int, int], None]  # (done, total)


# -- checking ------------------------------------------------------------------------------------

T = TypeVar("T")


class _Lookup:
    """People and groups, each key looked up once (a file names the same people again)."""

    def __init__(self, tx: Tx, groups: Mapping[int, GroupRef]) -> None:
        self.tx = tx
        self.groups = groups
        self.by_name = {g.name.lower(): g for g in groups.values()}
        self.users: dict[str, int | None] = {}

    def user(self, key: str) -> int | None:
        if key not in self.users:
            ref = self.tx.people.user_by_login(key)
            if ref is None and "@" in key:
                ref = self.tx.people.user_by_address(key)
            self.users[key] = None if ref is None else ref.id
        return self.users[key]

    def group(self, text: str) -> GroupRef:
        found = self.by_name.get(text.lower())
        if found is None and text.isdigit():
            found = self.groups.get(int(text))
        if found is None:
            known = ", ".join(f"{g.name} ({g.id})" for g in self.groups.values())
            raise CellError(f"no group is named {text!r} or has that id "
                            f"(groups: {known or 'none'})")
        return found


def check(tx: Tx, sheet: Sheet, groups: Mapping[int, GroupRef], config: ImportConfig, *,
          progress: Progress | None = None) -> Checked:
    """Every record checked; a line is good only when all of its cells are."""
    lookup = _Lookup(tx, groups)
    rows: list[TicketIn] = []
    bad: list[BadLine] = []
    seen: dict[tuple[str, datetime, int], int] = {}  # a ticket's identity → its line
    total = len(sheet.records)
    for n, record in enumerate(sheet.records, 1):
        result = _check_record(record, sheet.custom, lookup, config)
        if isinstance(result, TicketIn):
            # The same file imported twice (or a line given twice) must not double tickets.
            key = (result.title, result.created_at, result.group_id)
            earlier = _imported_before(tx, key, config.editor)
            if earlier is not None:
                bad.append(BadLine(line=record.line, column=None,
                                   reason=f"already imported as ticket {earlier}"))
            elif key in seen:
                bad.append(BadLine(line=record.line, column=None,
                                   reason=f"the same ticket as line {seen[key]}"))
            else:
                seen[key] = record.line
                rows.append(result)
        else:
            bad += result
        if progress is not None:
            progress(n, total)
    return Checked(rows=tuple(rows), bad=tuple(bad))


def _imported_before(tx: Tx, key: tuple[str, datetime, int], editor: str) -> int | None:
    """The ticket an earlier import made from this line (same title, start and group)."""
    title, created, group_id = key
    return tx.tickets.ticket_entered_as(editor=editor, title=title, created_at=created,
                                     group_id=group_id)


def _width_problem(record: Record, custom: tuple[str, ...]) -> str | None:
    want, got = len(COLUMNS) + len(custom), len(record.cells)
    extra = [c for c in record.cells[want:] if c]
    if got >= want and not extra:
        return None
    names = (f" and {len(custom)} custom field{'s' * (len(custom) != 1)} ({', '.join(custom)})"
             if custom else "")
    if got < want:
        return f"has {got} columns; expected {want}: the spec's {len(COLUMNS)}{names}"
    if not custom:
        return (f"has {got - len(COLUMNS)} column(s) after Rating comment but no custom "
                "field names: give a header row or --fields \"Name,Name2\"")
    return f"has {got} columns; expected {want}: the spec's {len(COLUMNS)}{names}"


def _check_record(record: Record, custom: tuple[str, ...], lookup: _Lookup,
                  config: ImportConfig) -> TicketIn | list[BadLine]:
    problem = _width_problem(record, custom)
    if problem:
        return [BadLine(line=record.line, column=None, reason=problem)]
    cells = _Cells(record)
    got = _read(cells, lookup, config)
    cells.errors += [BadLine(line=record.line, column=column, reason=reason)
                     for column, reason in _together(
                         record, cells.errors, status=got.status, created=got.created,
                         closing=got.closing, rating=got.rating, comment=got.comment)]
    return cells.errors or _ticket_in(record, custom, got)


class _Cells:
    """A record's cells read one by one, each failure kept as a `BadLine`."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.errors: list[BadLine] = []

    def get(self, column: str, parse: Callable[[str], T]) -> T | None:
        try:
            return parse(self.record.cells[AT[column]])
        except CellError as exc:
            self.errors.append(BadLine(line=self.record.line, column=column, reason=str(exc)))
            return None


@dataclass(frozen=True, kw_only=True)
class _Read:
    """A record's values; None where a cell did not read (its error is kept)."""

    created: datetime | None
    closing: datetime | None
    update: datetime | None
    title: str | None
    creator: tuple[int | None, str | None] | None
    status: Status | None
    priority: str | None
    group: GroupRef | None
    resolution: str | None
    sla_disabled: bool | None
    blocked: bool | None
    cc: tuple[str, ...] | None
    rating: bool | None
    closed_by: int | None
    comment: str


def _read(cells: _Cells, lookup: _Lookup, config: ImportConfig) -> _Read:
    zone = ZoneInfo(config.timezone)
    get = cells.get
    created = get("Beginning", lambda t: csv_cells.date(t, zone, required=True))
    closing = get("Closing", lambda t: csv_cells.date(t, zone))
    update = get("Update", lambda t: csv_cells.date(t, zone))
    title = get("Title", csv_cells.title)
    creator = get("User ID", lambda t: _creator(t, lookup))
    status = get("State", csv_cells.status)
    return _Read(
        created=created, closing=closing, update=update, title=title, creator=creator,
        status=status,
        priority=get("Priority", lambda t: csv_cells.priority(t, config.priorities,
                                                               config.default_priority)),
        group=get("Group ID", lookup.group),
        resolution=get("Resolution", lambda t: csv_cells.resolution(t, config.resolutions)),
        sla_disabled=get("SLA disabled", csv_cells.flag),
        blocked=get("Blocked", csv_cells.flag),
        cc=get("Copies of emails", csv_cells.addresses),
        rating=get("Rating (positive or negative)", csv_cells.rating),
        closed_by=(get("Closed by (name)", lambda t: _closer(t, lookup))
                   if status is Status.CLOSED else None),
        comment=csv_cells.text0(cells.record.cells[AT["Rating comment"]]))


def _ticket_in(record: Record, custom: tuple[str, ...], got: _Read) -> TicketIn:
    """A record every cell of which read: the ticket to write."""
    # No error was kept, so none of these is missing; the asserts tell mypy.
    created, title, creator, status = got.created, got.title, got.creator, got.status
    priority, group, cc = got.priority, got.group, got.cc
    assert created is not None and title is not None and creator is not None
    assert status is not None and priority is not None and group is not None
    assert cc is not None and got.sla_disabled is not None and got.blocked is not None
    closed_at = got.closing if status is Status.CLOSED else None
    values = record.cells[len(COLUMNS):len(COLUMNS) + len(custom)]
    return TicketIn(
        line=record.line, title=title, description=record.cells[AT["Description"]],
        status=status, priority=priority, group_id=group.id,
        owner_id=group.default_owner_id, creator_id=creator[0], new_customer=creator[1],
        created_at=created,
        updated_at=max(d for d in (created, closed_at, got.update) if d is not None),
        closed_at=closed_at, closed_by_id=got.closed_by, resolution=got.resolution,
        epilogue=csv_cells.text0(record.cells[AT["Epilogue"]]) or None,
        sla_disabled=got.sla_disabled, blocked=got.blocked, cc=cc, rating=got.rating,
        rating_comment=got.comment,
        custom={name: value for name, value in zip(custom, values, strict=True) if value})


def _together(record: Record, errors: list[BadLine], *, status: Status | None,
              created: datetime | None, closing: datetime | None, rating: bool | None,
              comment: str) -> list[tuple[str, str]]:
    """What cells that read one by one may still get wrong together: (column, reason)."""
    failed = {e.column for e in errors}
    out = []
    if status is Status.CLOSED and closing is None and "Closing" not in failed:
        out.append(("Closing", "a closed ticket needs its closing date"))
    if created and closing and closing < created:
        out.append(("Closing", f"{record.cells[AT['Closing']]} is before Beginning "
                               f"({record.cells[AT['Beginning']]})"))
    if comment and rating is None and "Rating (positive or negative)" not in failed:
        out.append(("Rating comment", "a rating comment needs a rating (Rating is empty)"))
    return out


# -- people ----------------------------------------------------------------------------------------

def _creator(text: str, lookup: _Lookup) -> tuple[int | None, str | None]:
    """(user id, None) for a known user; (None, address) for a customer to create."""
    if not text:
        raise CellError("is empty; give the creator's login or e-mail address")
    uid = lookup.user(text)
    if uid is not None:
        return uid, None
    if "@" not in text:
        raise CellError(f"no user has the login {text!r} (an e-mail address would make a "
                        "customer account)")
    if not csv_cells.EMAIL.match(text) or len(text) > 320:
        raise CellError(f"{text!r} is neither a login nor an e-mail address")
    return None, text.lower()


def _closer(text: str, lookup: _Lookup) -> int | None:
    if not text:
        return None
    uid = lookup.user(text)
    if uid is None:
        raise CellError(f"no user has the login or address {text!r}")
    return uid


# -- writing ---------------------------------------------------------------------------------

def write(tx: Tx, rows: Sequence[TicketIn], config: ImportConfig, *,
          progress: Progress | None = None) -> Imported:
    """All the rows in the caller's transaction: its commit makes them all, or none, true."""
    accounts: dict[str, int] = {}
    made = 0
    ids: list[int] = []
    for n, row in enumerate(rows, 1):
        creator = row.creator_id
        if creator is None:
            address = row.new_customer or ""
            if address not in accounts:
                # Looked up again: a mail from it may have made the account since the check.
                ref = tx.people.customer_by_address(address)
                if ref is None:
                    ref = tx.people.insert_customer(address=address, name=address,
                                                  now=row.created_at)
                    made += 1
                accounts[address] = ref.id
            creator = accounts[address]
        ids.append(_insert(tx, row, creator, config))
        if progress is not None:
            progress(n, len(rows))
    return Imported(ticket_ids=tuple(ids), customers=made,
                    open=sum(1 for r in rows if r.status is not Status.CLOSED))


def _insert(tx: Tx, row: TicketIn, creator: int, config: ImportConfig) -> int:
    # The status is taken to have changed when the ticket closed or was last updated: the
    # file says no more, and the SLA reads the change from the history row.
    changed = ((row.closed_at or row.updated_at) if row.status is not Status.NEW
               else row.created_at)
    tid = tx.tickets.insert_ticket(
        title=row.title, description=row.description, status=row.status.value,
        resolution=row.resolution, priority=row.priority, group_id=row.group_id,
        creator_id=creator, owner_id=row.owner_id, editor=config.editor,
        creator_group_id=row.group_id, blocked=row.blocked, epilogue=row.epilogue,
        sla_disabled=row.sla_disabled, custom=dict(row.custom),
        thread_id=f"<maild.{uuid.uuid4().hex}@{config.message_domain}>",
        created_at=row.created_at, updated_at=row.updated_at, closed_at=row.closed_at,
        closed_by_id=row.closed_by_id, status_changed_at=changed,
        waiting_since=row.created_at if row.status is Status.NEW else None, sla_due_at=None)
    history = [{"ticket_id": tid, "user_id": creator, "at": row.created_at,
                "field": "created", "old": None, "new": Status.NEW.value}]
    if row.status is not Status.NEW:
        history.append({"ticket_id": tid, "user_id": row.closed_by_id, "at": changed,
                        "field": "status", "old": Status.NEW.value, "new": row.status.value})
    tx.tickets.insert_history(history)
    tx.tickets.add_cc(tid, list(row.cc))
    if row.rating is not None:
        tx.ratings.put(ticket_id=tid, user_id=creator, good=row.rating,
                    comment=row.rating_comment, now=row.closed_at or row.updated_at)
    return tid


__all__ = ["AT", "COLUMNS", "BadLine", "Checked", "CsvFileError", "ImportConfig", "Imported",
           "Record", "Sheet", "TicketIn", "check", "read", "write"]
