"""The #command block at the top of a staff reply."""

from __future__ import annotations

from datetime import date

import pytest

from maild.domain import Status
from maild.inbound.commands import MAX_COMMAND_LINES, read_hours, split_commands


def test_block_at_the_top_then_the_workunit_text() -> None:
    block = split_commands("\n#status pending_close\n#TIME 1h30m\n#internal\n\n"
                           "Replaced the fuser.\n#status closed is only text down here\n")
    assert [(c.name, c.value) for c in block.commands] == [
        ("status", Status.PENDING_CLOSE), ("time", 1.5), ("internal", None)]
    assert block.errors == ()
    assert block.body == "Replaced the fuser.\n#status closed is only text down here"


def test_first_text_line_ends_the_block() -> None:
    block = split_commands("Hello,\n#status closed\n")
    assert block.commands == () and block.body == "Hello,\n#status closed"


def test_unknown_command_is_reported_with_a_suggestion_not_taken_as_text() -> None:
    block = split_commands("#stauts closed\n#frobnicate\nthanks")
    assert [e.message for e in block.errors] == [
        "unknown command #stauts, did you mean #status?",
        "unknown command #frobnicate; #help lists them"]
    assert block.body == "thanks"


def test_hash_numbers_and_markdown_are_text() -> None:
    assert split_commands("#42 is broken again").commands == ()
    assert split_commands("#42 is broken again").body == "#42 is broken again"
    assert split_commands("# Heading").body == "# Heading"


@pytest.mark.parametrize(("line", "name", "value"), [
    ('#status "pending on third person"', "status", Status.PENDING_THIRD_PARTY),
    ("#status Pending to be closed", "status", Status.PENDING_CLOSE),
    ("#close", "close", None),
    ("#close Solved", "close", "solved"),
    ("#owner javi", "owner", "javi"),
    ("#group Second level", "group", "Second level"),
    ("#priority high", "priority", "high"),
    ("#done 2026-03-02", "done", date(2026, 3, 2)),
    ("#cc add Ana@Example.com bo@example.org", "cc", ("add", "ana@example.com",
                                                       "bo@example.org")),
    ("#cc remove ana@example.com", "cc", ("remove", "ana@example.com")),
    ("#parent #17", "parent", 17),
    ('#title "Printer on fire (room 4)"', "title", "Printer on fire (room 4)"),
    ("#creator <Alice@Customer.example>", "creator", "alice@customer.example"),
    ("#lock", "lock", None), ("#Unlock", "unlock", None), ("#help", "help", None),
    ("#cost", "cost", None), ("#public", "public", None),
])
def test_each_command_reads_its_value(line: str, name: str, value: object) -> None:
    block = split_commands(line)
    assert block.errors == ()
    [cmd] = block.commands
    assert (cmd.name, cmd.value, cmd.line) == (name, value, line)


@pytest.mark.parametrize(("line", "message"), [
    ("#status solved", "#status unknown status 'solved'; one of new, unconfirmed, assigned, "
                       "reopened, pending_third_party, pending_close, closed"),
    ("#time soon", "#time 'soon' is not a duration (try 1.5, 1h30m or 90m)"),
    ("#time -2", "#time '-2' is not a duration between 0 and 1000 hours"),
    ("#done yesterday", "#done needs a date as YYYY-MM-DD"),
    ("#owner", "#owner takes exactly one argument"),
    ("#owner javi luis", "#owner takes exactly one argument"),
    ("#internal please", "#internal takes no arguments"),
    ("#cc add", "#cc reads #cc add ADDRESS… or #cc remove ADDRESS…"),
    ("#cc add not-an-address", "#cc 'not-an-address' is not an e-mail address"),
    ("#parent abc", "#parent 'abc' is not a ticket number"),
    ('#title "unterminated', "unbalanced quotes"),
    ("#title", "#title needs a value"),
])
def test_wrong_values_are_refused_with_the_reason(line: str, message: str) -> None:
    block = split_commands(line + "\nbody")
    assert block.commands == ()
    assert [(e.line, e.message) for e in block.errors] == [(line, message)]
    assert block.body == "body"


@pytest.mark.parametrize(("text", "hours"), [
    ("1.5", 1.5), ("1,5", 1.5), ("1:30", 1.5), ("1h30m", 1.5), ("1h", 1.0), ("90m", 1.5),
    ("45min", 0.75), ("2h 15m", 2.25), ("0.25", 0.25),
])
def test_durations(text: str, hours: float) -> None:
    assert read_hours(text) == hours


def test_command_lines_are_capped() -> None:
    text = "\n".join(["#cost"] * (MAX_COMMAND_LINES + 3)) + "\nnote"
    block = split_commands(text)
    assert len(block.commands) == MAX_COMMAND_LINES
    assert len(block.errors) == 3 and "not read" in block.errors[0].message
    assert block.body == "note"
