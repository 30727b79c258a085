"""Reading the spec's CSV layout: the file's bytes into records (a line number and its cells),
with a header row and the custom-field names found; a file that cannot be read as a whole
raises `CsvFileError` and nothing is read."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from maild.errors import MaildError
from maild.service import csv_cells

COLUMNS = (
    "Beginning", "Closing", "Title", "Description", "User ID", "State", "Priority", "Group ID",
    "Update", "Creator identifier", "Task identifier", "Resolution", "Epilogue",
    "Parent identifier", "SLA disabled", "Identifier of the affected SLA",
    "Incidence type identifier", "Punctuation", "Copies of emails", "Editor",
    "Creator group identifier", "Last state", "Closed by (name)", "Extra data", "Extra data 2",
    "Blocked", "Old state", "Old resolution", "Old state 2", "Old resolution 2", "Extra data 3",
    "Extra data 4", "Do not show notice to assess the resolution of the ticket", "Hash",
    "Rating (positive or negative)", "Rating comment")
AT = {name: i for i, name in enumerate(COLUMNS)}


class CsvFileError(MaildError):
    """The file as a whole cannot be read (encoding, CSV syntax, header): nothing is read."""


@dataclass(frozen=True, kw_only=True)
class Record:
    line: int  # the physical line the record starts on
    cells: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Sheet:
    records: tuple[Record, ...]
    custom: tuple[str, ...]  # the custom fields' names, in column order
    header: bool


def read(data: bytes, *, encoding: str = "utf-8", delimiter: str = ",",
         fields: Sequence[str] | None = None) -> Sheet:
    text = _decode(data, encoding)
    records = _records(text, delimiter)
    header = bool(records) and csv_cells.key(_unnumbered(records[0].cells[0])) == "beginning"
    custom: tuple[str, ...] = tuple(fields) if fields is not None else ()
    if header:
        named = _header_names(records[0])
        if fields is not None and tuple(fields) != named:
            raise CsvFileError(f"the header names the custom fields {', '.join(named) or 'none'}"
                               f"; --fields says {', '.join(fields) or 'none'}")
        custom, records = named, records[1:]
    _check_names(custom, "--fields" if fields is not None else "the header")
    if not records:
        raise CsvFileError("has no ticket lines")
    return Sheet(records=tuple(records), custom=custom, header=header)


def _decode(data: bytes, encoding: str) -> str:
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        text = data.decode(codec)
    except LookupError:
        raise CsvFileError(f"--encoding {encoding!r} is not an encoding Python knows") from None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise CsvFileError(
            f"is not {encoding}: byte 0x{data[exc.start]:02x} on line {line} does not decode; "
            "convert the file to UTF-8 or name its encoding (e.g. --encoding latin-1)"
        ) from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise CsvFileError(f"has a NUL character on line {line}: not a text CSV file "
                           "(UTF-16? then give --encoding utf-16)")
    return text


def _records(text: str, delimiter: str) -> list[Record]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # long descriptions
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        skipinitialspace=True, strict=True)
    out: list[Record] = []
    start = 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                out.append(Record(line=start, cells=tuple(c.strip() for c in cells)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvFileError(f"line {reader.line_num}: malformed CSV ({exc}); nothing was read "
                           "past it, so nothing is imported") from None
    return out


def _unnumbered(name: str) -> str:
    """ "1. Beginning" → "Beginning": the spec numbers its column names."""
    return re.sub(r"^\s*\d+\s*[.)-]?\s*", "", name)


def _header_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", re.sub(r"\(.*?\)", "", _unnumbered(name).lower()))


def _header_names(record: Record) -> tuple[str, ...]:
    """The custom-field names of a header row, after checking its first 36 names."""
    cells = record.cells
    if len(cells) < len(COLUMNS):
        raise CsvFileError(f"the header row has {len(cells)} columns; the spec's order has "
                           f"{len(COLUMNS)} before the custom fields")
    for i, (got, want) in enumerate(zip(cells, COLUMNS, strict=False), 1):
        if _header_key(got) != _header_key(want):
            raise CsvFileError(
                f"header column {i} is {got!r} where the spec's order has {want!r}; columns are "
                "read in that order only (drop the header and give --fields for custom fields)")
    names = list(cells[len(COLUMNS):])
    while names and not names[-1]:  # a spreadsheet's trailing empty cells
        names.pop()
    return tuple(names)


def _check_names(names: tuple[str, ...], where: str) -> None:
    if any(not n for n in names):
        raise CsvFileError(f"{where} has an empty custom field name")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CsvFileError(f"{where} names a custom field twice: {', '.join(twice)}")
