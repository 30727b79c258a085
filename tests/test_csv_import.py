"""`maild import-csv`: the spec's CSV layout, all of a file or none of it."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild import cli, cli_import
from maild.domain import Status
from maild.errors import StoreError
from maild.service import csv_import
from maild.settings import Settings
from store import db, ratings, ticket_reads, unit
from store.models import Group, History, Rating, Ticket, User, UserEmail

# The spec's own example line, as printed between its quotes (its trailing space included).
SPEC_LINE = ("2021-01-21 19:24:19, 2021-01-21 19:47:44, Terminal broken, Needs replacement, "
             "technician_support, 7, 3, 4, 2021-01-21 19:47:44, admin, 0, 1, 0,, 0, 0, 1, 0,, "
             "support_technician, 1, 0000-00-00 00:00:00, support_technician,,, 0, 3, 0, 7, "
             "1,,,, 0, , 0,, custom_field_value1, custom_field_value2 ")

# Two more groups (ids 3 and 4: the example's Group ID is 4) and the example's people.
EXTRA = """
[[groups]]
name = "Hardware"
addresses = ["hardware@example.com"]
default_owner = "ramon"

[[groups]]
name = "Field"
addresses = ["field@example.com"]
default_owner = "technician_support"

[[users]]
login = "technician_support"
name = "Technician"
emails = ["tech@example.com"]
groups = { Field = "manage" }

[[users]]
login = "support_technician"
name = "Support Technician"
emails = ["st@example.com"]
groups = { Field = "edit" }
"""


def row(**cells: str) -> list[str]:
    """A line in the spec's order; `cells` by column name with spaces as underscores."""
    values = {"Beginning": "2026-01-05 09:00:00", "Title": "Printer on fire",
              "Description": "Room 4", "User ID": "ramon", "State": "1", "Priority": "2",
              "Group ID": "Support"}
    values.update({k.replace("_", " "): v for k, v in cells.items()})
    unknown = set(values) - set(csv_import.COLUMNS)
    assert not unknown, unknown
    return [values.get(name, "") for name in csv_import.COLUMNS]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(extra=EXTRA)


@pytest.fixture
def config(settings: Settings) -> str:
    """The config file, its database made and its groups and users in it."""
    assert settings.source is not None
    assert cli.main(["--config", str(settings.source), "db", "upgrade"]) == 0
    return str(settings.source)


@contextmanager
def store(settings: Settings) -> Iterator[Session]:
    engine = db.make_engine(settings.storage.database)
    try:
        with db.transaction(db.session_factory(engine)) as s:
            yield s
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], config: str, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", config, "import-csv", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def count(settings: Settings, model: type[object]) -> int:
    with store(settings) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def users(settings: Settings) -> int:
    return count(settings, User)


# -- the spec's example ----------------------------------------------------------------------

def test_the_specs_example_line_lands_in_every_field(settings, config, tmp_path, capsys):
    path = tmp_path / "spec.csv"
    path.write_text(SPEC_LINE + "\n", encoding="utf-8")
    code, out, err = run(capsys, config, str(path), "--fields", "Serial,Model,Room")
    assert (code, err) == (0, ""), err
    assert "imported 1 of 1 lines" in out and "sla recompute" not in out  # it is closed
    with store(settings) as s:
        group4 = s.get(Group, 4)
        assert group4 is not None and group4.name == "Field"
        [tid] = s.scalars(select(Ticket.id))
        view = ticket_reads.ticket_view(s, tid)
        t = s.get(Ticket, tid)
        assert t is not None
        assert view.title == "Terminal broken" and view.description == "Needs replacement"
        assert view.status is Status.CLOSED and view.priority == "high"  # 3: serious
        assert view.group == "Field" and t.group_id == 4 and t.creator_group_id == 4
        assert view.creator == "technician_support"
        assert view.owner == "technician_support"  # Field's default owner
        assert view.editor == "csv"
        # Integria writes local time: 19:24:19 in Madrid (CET) is 18:24:19 UTC.
        assert view.created_at == datetime(2021, 1, 21, 18, 24, 19, tzinfo=UTC)
        assert view.closed_at == datetime(2021, 1, 21, 18, 47, 44, tzinfo=UTC)
        assert view.updated_at == view.closed_at
        assert view.closed_by == "support_technician"
        assert view.resolution == "solved"  # 1: fixed
        assert view.epilogue is None  # "0" is Integria's empty value
        assert not view.sla_disabled and not view.blocked and view.cc == ()
        assert view.parent_id is None and view.sla_due_at is None
        assert dict(view.custom) == {"Model": "custom_field_value1",
                                     "Room": "custom_field_value2"}  # Serial left blank
        assert [(h.field, h.old, h.new, h.who) for h in view.history] == [
            ("created", None, "new", "technician_support"),
            ("status", "new", "closed", "support_technician")]
        assert view.history[1].at == view.closed_at
        assert t.status_changed_at == view.closed_at and t.thread_id.startswith("<maild.")
        assert ratings.get(s, tid) is None  # its Rating is blank


def test_the_specs_example_without_custom_field_names_is_a_bad_line(settings, config,
                                                                     tmp_path, capsys):
    path = tmp_path / "spec.csv"
    path.write_text(SPEC_LINE + "\n", encoding="utf-8")
    code, out, err = run(capsys, config, str(path))
    assert code == 1 and out == ""
    assert f"{path}:1: has 3 column(s) after Rating comment but no custom field names" in err
    assert "--fields" in err and "nothing imported" in err
    assert count(settings, Ticket) == 0


# -- good, bad and mixed files ------------------------------------------------------------------

def good_rows() -> list[list[str]]:
    return [
        row(Title="By a new customer", User_ID="Alice@Customer.Example", State="new",
            Priority="very high", Copies_of_emails="boss@customer.example; it@customer.example"),
        row(Title="By javi's second address", User_ID="javier@home.example", State="3",
            Group_ID="2", Update="2026-01-06 10:00:00"),
        row(Title="Closed and rated", User_ID="alice@customer.example", State="closed",
            Priority="low", Closing="2026-01-07 12:00:00", Resolution="duplicate",
            Epilogue="Same as #1", Blocked="1", SLA_disabled="1",
            **{"Closed by (name)": "ramon", "Rating (positive or negative)": "good",
               "Rating comment": "Quick, thanks"}),
        row(Title="Pending on a third person", State="Pending on a third person",
            Priority="", Group_ID="vip"),
    ]


def test_a_good_file_imports_every_line(settings, config, tmp_path, capsys):
    before = users(settings)
    path = write_csv(tmp_path / "good.csv", good_rows())
    code, out, err = run(capsys, config, str(path))
    assert (code, err) == (0, "")
    assert "imported 4 of 4 lines as tickets (#1–#4); 1 new customer account" in out
    assert "3 imported tickets are open" in out and "maild sla recompute" in out
    with store(settings) as s:
        v = {t.title: t for t in (ticket_reads.ticket_view(s, i) for i in range(1, 5))}
        new = v["By a new customer"]
        assert new.creator == "alice@customer.example" and new.status is Status.NEW
        assert new.priority == "very_high" and new.owner == "ramon"
        assert new.cc == ("boss@customer.example", "it@customer.example")
        assert v["By javi's second address"].creator == "javi"
        assert v["By javi's second address"].group == "Vip"
        assert v["By javi's second address"].status is Status.ASSIGNED
        closed = v["Closed and rated"]
        assert closed.creator == "alice@customer.example"  # the account made once
        assert closed.resolution == "duplicate" and closed.epilogue == "Same as #1"
        assert closed.blocked and closed.sla_disabled and closed.closed_by == "ramon"
        rating = ratings.get(s, 3)
        assert rating is not None and rating.good and rating.comment == "Quick, thanks"
        assert rating.rated_at == closed.closed_at
        third = v["Pending on a third person"]
        assert third.status is Status.PENDING_THIRD_PARTY and third.priority == "medium"
        t = s.get(Ticket, 1)
        assert t is not None and t.waiting_since == t.created_at  # a new ticket waits
        assert s.scalar(select(func.count()).select_from(UserEmail).where(
            UserEmail.address == "alice@customer.example")) == 1
    assert users(settings) == before + 1


BAD_ROWS = [
    (row(User_ID="ghost"), "User ID", "no user has the login 'ghost'"),
    (row(State="9"), "State", "'9' is not a state"),
    (row(Priority="urgent"), "Priority", "'urgent' is not a priority"),
    (row(Group_ID="Sales"), "Group ID", "no group is named 'Sales'"),
    (row(Beginning="21/01/2021"), "Beginning", "'21/01/2021' is not a date"),
    (row(Beginning=""), "Beginning", "is empty"),
    (row(Title=""), "Title", "is empty"),
    (row(State="7"), "Closing", "a closed ticket needs its closing date"),
    (row(Closing="2025-01-01 00:00:00"), "Closing", "is before Beginning"),
    (row(Copies_of_emails="not-an-address"), "Copies of emails", "not an e-mail address"),
    (row(Blocked="maybe"), "Blocked", "'maybe' is not 0 or 1"),
    (row(**{"Rating (positive or negative)": "5"}), "Rating (positive or negative)",
     "'5' is not a rating"),
    (row(**{"Rating comment": "meh"}), "Rating comment", "needs a rating"),
    (row(State="7", Closing="2026-01-06 00:00:00", **{"Closed by (name)": "nobody"}),
     "Closed by (name)", "no user has the login or address 'nobody'"),
    (row(Resolution="42"), "Resolution", "'42' is not a resolution"),
    (row()[:20], None, "has 20 columns; expected 36"),
]


def test_a_bad_file_reports_each_line_and_writes_nothing(settings, config, tmp_path, capsys):
    rows = [r for r, _, _ in BAD_ROWS]
    rows.insert(3, row(User_ID="Bob <bob@customer.example>"))
    path = write_csv(tmp_path / "bad.csv", rows)
    before = users(settings)
    code, out, err = run(capsys, config, str(path))
    assert code == 1 and out == ""
    lines = err.splitlines()
    expected = [(n if n < 4 else n + 1, column, reason)
                for n, (_, column, reason) in enumerate(BAD_ROWS, 1)]
    for line, column, reason in expected:
        where = f"{path}:{line}: {column + ': ' if column else ''}"
        assert any(x.startswith(where) and reason in x for x in lines), (where, reason, err)
    assert any(x.startswith(f"{path}:4: User ID: 'Bob <bob@customer.example>' is neither")
               for x in lines)
    assert lines[-1].startswith(f"{len(rows)} of {len(rows)} lines are bad; nothing imported")
    assert count(settings, Ticket) == 0 and users(settings) == before


def test_a_line_with_several_bad_cells_names_each(settings, config, tmp_path, capsys):
    path = write_csv(tmp_path / "bad.csv", [row(State="x", Priority="y", Group_ID="z")])
    code, _, err = run(capsys, config, str(path))
    assert code == 1
    assert [x.split(":")[2].strip() for x in err.splitlines()[:3]] == [
        "State", "Priority", "Group ID"]


def mixed(tmp_path: Path) -> Path:
    rows = good_rows()
    rows.insert(1, row(User_ID="ghost"))
    rows.append(row(Group_ID="Sales", User_ID="new@customer.example"))
    return write_csv(tmp_path / "mixed.csv", rows)


def test_a_mixed_file_without_skip_bad_writes_nothing(settings, config, tmp_path, capsys):
    before = users(settings)
    code, out, err = run(capsys, config, str(mixed(tmp_path)))
    assert code == 1 and out == ""
    assert ":2: User ID: no user has the login 'ghost'" in err
    assert ":6: Group ID: no group is named 'Sales'" in err
    assert "2 of 6 lines are bad; nothing imported" in err and "--skip-bad" in err
    assert count(settings, Ticket) == 0 and users(settings) == before


def test_a_mixed_file_with_skip_bad_imports_the_good_lines(settings, config, tmp_path,
                                                           capsys):
    before = users(settings)
    code, out, err = run(capsys, config, str(mixed(tmp_path)), "--skip-bad")
    assert code == 1  # some lines were not imported: a script should notice
    assert ":2: User ID:" in err and ":6: Group ID:" in err
    assert "imported 4 of 6 lines as tickets (#1–#4)" in out and "skipped 2 bad lines" in out
    with store(settings) as s:
        titles = {ticket_reads.ticket_view(s, i, full=False).title for i in range(1, 5)}
    assert titles == {r[2] for r in good_rows()}
    assert count(settings, Ticket) == 4
    assert users(settings) == before + 1  # alice, not the bad line's new@customer.example


def test_dry_run_checks_and_writes_nothing(settings, config, tmp_path, capsys):
    before = users(settings)
    code, out, err = run(capsys, config, str(write_csv(tmp_path / "g.csv", good_rows())),
                         "--dry-run")
    assert (code, err) == (0, "")
    assert out.strip() == ("dry run: 4 of 4 lines would be imported (1 new customer account); "
                           "nothing written")
    code, out, err = run(capsys, config, str(mixed(tmp_path)), "--dry-run", "--skip-bad")
    assert code == 1 and ":2: User ID:" in err and "4 of 6 lines would be imported" in out
    assert count(settings, Ticket) == 0 and users(settings) == before
    assert count(settings, History) == 0


def test_a_failure_while_writing_leaves_nothing_half_imported(settings, config, tmp_path,
                                                              capsys, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(unit.Ratings, "put", unit.op(refuse))  # the third line is rated
    before = users(settings)
    code, out, err = run(capsys, config, str(write_csv(tmp_path / "g.csv", good_rows())))
    assert code == 1 and out == ""
    assert "nothing was imported: disk full" in err
    assert count(settings, Ticket) == 0 and count(settings, History) == 0
    assert count(settings, Rating) == 0 and users(settings) == before


def test_both_stores_take_the_same_file(make_settings, database, tmp_path, capsys):
    """SQLite and PostgreSQL (which checks column lengths and JSON for real)."""
    settings = make_settings(database, extra=EXTRA)
    config = str(settings.source)
    assert cli.main(["--config", config, "db", "upgrade"]) == 0
    rows = [[*r, f"SN-{n}"] for n, r in enumerate(good_rows())]
    rows.append([*row(Title="x" * 500), "", "", ""])  # trailing empty cells are no values
    path = write_csv(tmp_path / "g.csv", rows)
    code, out, err = run(capsys, config, str(path), "--fields", "Serial")
    assert (code, err) == (0, ""), err
    assert "imported 5 of 5 lines" in out
    with store(settings) as s:
        assert dict(ticket_reads.ticket_view(s, 2).custom) == {"Serial": "SN-1"}
        assert ratings.get(s, 3) is not None
    path = write_csv(tmp_path / "b.csv", [row(Title="x" * 501), *good_rows()])
    code, _, err = run(capsys, config, str(path))
    assert code == 1 and ":1: Title: is 501 characters long; at most 500" in err
    with store(settings) as s:
        assert max(len(v.title) for v in ticket_reads.list_tickets(s)) == 500
        assert s.scalar(select(func.count()).select_from(Ticket)) == 5


# -- headers and custom fields -------------------------------------------------------------------

def header(*custom: str, numbered: bool = False) -> list[str]:
    names = [f"{i}. {n}" if numbered else n for i, n in enumerate(csv_import.COLUMNS, 1)]
    return [*names, *custom]


def test_a_header_row_names_the_custom_fields(settings, config, tmp_path, capsys):
    rows = [header("Serial", "Room", numbered=True),
            [*row(Title="One"), "SN-1", "4"],
            [*row(Title="Two"), "", "5", "", ""]]  # a spreadsheet's trailing empty cells
    code, out, err = run(capsys, config, str(write_csv(tmp_path / "h.csv", rows)))
    assert (code, err) == (0, "")
    assert "imported 2 of 2 lines" in out
    with store(settings) as s:
        one, two = (ticket_reads.ticket_view(s, i) for i in (1, 2))
    assert dict(one.custom) == {"Serial": "SN-1", "Room": "4"}
    assert dict(two.custom) == {"Room": "5"}


def test_a_header_in_another_order_is_refused(settings, config, tmp_path, capsys):
    names = header()
    names[4], names[5] = names[5], names[4]
    code, _, err = run(capsys, config, str(write_csv(tmp_path / "h.csv", [names, row()])))
    assert code == 2
    assert "header column 5 is 'State' where the spec's order has 'User ID'" in err
    assert count(settings, Ticket) == 0


def test_header_and_fields_must_agree(settings, config, tmp_path, capsys):
    path = write_csv(tmp_path / "h.csv", [header("Serial"), [*row(), "SN-1"]])
    code, _, err = run(capsys, config, str(path), "--fields", "Room")
    assert code == 2 and "the header names the custom fields Serial; --fields says Room" in err
    code, _, err = run(capsys, config, str(path), "--fields", "Serial")
    assert code == 0


def test_fields_give_names_to_the_extra_columns(settings, config, tmp_path, capsys):
    path = write_csv(tmp_path / "f.csv", [[*row(), "SN-1", "4"]])
    code, _, err = run(capsys, config, str(path), "--fields", "Serial")
    assert code == 1 and "has 38 columns; expected 37" in err and "(Serial)" in err
    code, _, err = run(capsys, config, str(path), "--fields", "Serial,Serial")
    assert code == 2 and "names a custom field twice: Serial" in err
    code, _, err = run(capsys, config, str(path), "--fields", "Serial,Room")
    assert code == 0
    with store(settings) as s:
        assert dict(ticket_reads.ticket_view(s, 1).custom) == {"Serial": "SN-1", "Room": "4"}


# -- files that do not read ----------------------------------------------------------------------

def test_a_file_that_is_not_utf8_is_refused_clearly(settings, config, tmp_path, capsys):
    text = "\n".join(",".join(r) for r in (row(), row(Title="Caf\u00e9 roto")))
    path = tmp_path / "latin1.csv"
    path.write_bytes(text.encode("latin-1"))
    code, out, err = run(capsys, config, str(path))
    assert code == 2 and out == ""
    assert "is not utf-8: byte 0xe9 on line 2 does not decode" in err
    assert "--encoding latin-1" in err and "nothing imported" in err
    assert count(settings, Ticket) == 0
    code, _, err = run(capsys, config, str(path), "--encoding", "latin-1")
    assert (code, err) == (0, "")
    with store(settings) as s:
        assert ticket_reads.ticket_view(s, 2).title == "Caf\u00e9 roto"


def test_a_utf8_bom_is_not_part_of_the_header(settings, config, tmp_path, capsys):
    path = tmp_path / "bom.csv"
    buf = io.StringIO()
    csv.writer(buf).writerows([header(), row()])
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    code, out, _ = run(capsys, config, str(path))
    assert code == 0 and "imported 1 of 1" in out


GOOD_LINE = ",".join(row()).encode() + b"\n"


@pytest.mark.parametrize(("content", "message"), [
    (GOOD_LINE + b'2026-01-05 09:00:00,,"Unclosed title\n',
     "line 2: malformed CSV (unexpected end of data)"),
    (GOOD_LINE + b'2026-01-05 09:00:00,,"Quoted" title,x\n', "line 2: malformed CSV"),
    (GOOD_LINE + b"2026-01-05\x00,x\n", "NUL character on line 2"),
    (b"\xff\xfeB\x00e\x00", "is not utf-8: byte 0xff on line 1"),
    (b"\n  \n", "has no ticket lines"),
    (",".join(header()).encode() + b"\n", "has no ticket lines"),
])
def test_malformed_csv_is_refused_clearly(settings, config, tmp_path, capsys, content,
                                          message):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    code, out, err = run(capsys, config, str(path))
    assert code == 2 and out == "", err
    assert err.startswith(f"error: {path}: ") and message in err, err
    assert err.rstrip().endswith("nothing imported")
    assert count(settings, Ticket) == 0


def test_a_missing_file_is_a_usage_error(config, tmp_path, capsys):
    code, _, err = run(capsys, config, str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read" in err and "No such file" in err


def test_a_quoted_multiline_description_keeps_line_numbers(settings, config, tmp_path,
                                                           capsys):
    rows = [row(Description="first\nsecond\nthird"), row(User_ID="ghost")]
    code, _, err = run(capsys, config, str(write_csv(tmp_path / "m.csv", rows)),
                       "--skip-bad")
    assert code == 1 and f"{tmp_path / 'm.csv'}:4: User ID:" in err
    with store(settings) as s:
        assert ticket_reads.ticket_view(s, 1).description == "first\nsecond\nthird"


def test_a_semicolon_file_reads_with_delimiter(settings, config, tmp_path, capsys):
    path = tmp_path / "semi.csv"
    path.write_text(";".join(row(Title="A, with a comma")) + "\n", encoding="utf-8")
    code, _, _ = run(capsys, config, str(path), "--delimiter", ";")
    assert code == 0
    with store(settings) as s:
        assert ticket_reads.ticket_view(s, 1).title == "A, with a comma"


# -- the progress bar ---------------------------------------------------------------------------

def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    out = io.StringIO()
    bar = cli_import.ProgressBar("importing", out, width=10, enabled=True)
    bar(1, 4)
    bar(4, 4)
    assert out.getvalue() == ("\rimporting [##........] 1/4"
                              "\rimporting [##########] 4/4\n")
    quiet = io.StringIO()
    cli_import.ProgressBar("importing", quiet)(4, 4)  # a StringIO is no terminal
    assert quiet.getvalue() == ""


def test_the_same_file_twice_doubles_nothing(settings, config, tmp_path, capsys):
    path = write_csv(tmp_path / "good.csv", good_rows())
    code, _, _ = run(capsys, config, str(path))
    assert code == 0
    code, _, err = run(capsys, config, str(path))
    assert code == 1
    assert err.count("already imported as ticket") == 4
    twice = write_csv(tmp_path / "twice.csv", [row(Title="Once"), row(Title="Once")])
    code, _, err = run(capsys, config, str(twice))
    assert code == 1 and "the same ticket as line 1" in err
    with store(settings) as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 4
