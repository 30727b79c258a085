"""Work orders: `maild workorder ID -o FILE.pdf` on a ticket made by mail, read back as text.

The ticket is opened and worked on through the real daemon (SMTP in, commands by mail); the
CLI then prints its work order, and pypdf reads the PDF's text to find the ticket's values.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import update

from maild import cli
from maild.errors import TemplateError
from maild.outbound.pdf import html_to_pdf, html_to_pdf_async
from maild.outbound.render import Renderer, WorkOrders
from maild.outbound.sample import SAMPLE
from store.models import Ticket
from tests.conftest import Daemon, mail
from tests.flow.test_commands_by_mail import RAMON, minted, write
from tests.orm import orm


def pdf_text(path: Path) -> str:
    """The PDF's text with whitespace runs made single spaces (table cells wrap anywhere)."""
    reader = PdfReader(path)
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def worked_ticket(d: Daemon) -> int:
    """Alice's printer ticket with a public workunit of Ramón's and an internal one."""
    await d.send(mail(body="The printer in room 4 is on fire.\nPlease send someone.\n"))
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")
    await write(d, RAMON, to, "#time 1.5\nReplaced the fuser unit and tested the printer.\n")
    await write(d, RAMON, to, "#internal\n#time 0.5\nSupplier invoice 7731 still unpaid.\n")
    return t.id


def set_ticket(d: Daemon, ticket_id: int, **values: object) -> None:
    with orm(d.parts.db, write=True) as s:
        s.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


async def test_work_order_pdf_has_the_tickets_values(database, make_settings, start_daemon,
                                                     tmp_path, capsys) -> None:
    settings = make_settings(database)
    d = await start_daemon(settings)
    tid = await worked_ticket(d)
    set_ticket(d, tid, custom={"Serial": "PRN-4411", "Room": "4"})
    config, out, html = str(settings.source), tmp_path / "wo.pdf", tmp_path / "wo.html"

    started = time.perf_counter()
    code, stdout, err = run(capsys, "-c", config, "workorder", str(tid), "-o", str(out),
                            "--html", str(html))
    elapsed = time.perf_counter() - started
    assert code == 0, err
    assert f"wrote {out} (ticket {tid}, template " in stdout and "default.html.j2" in stdout
    with capsys.disabled():
        print(f"\nmaild workorder (settings, database, HTML, PDF): {elapsed:.3f} s")

    assert out.read_bytes().startswith(b"%PDF-")
    text = pdf_text(out)
    for value in (f"ticket #{tid}", "Example Support", "Printer on fire",
                  "The printer in room 4 is on fire.", "Please send someone.",
                  "Alice Customer", "alice@customer.example", "Ramón (ramon)", "Support",
                  "medium", "new", "Replaced the fuser unit and tested the printer.",
                  "1.50", "2.00",  # the listed work's hours; the whole ticket's, internal too
                  "Serial", "PRN-4411", "Customer", "Technician", "Date and signature"):
        assert value in text, value
    assert "Supplier invoice" not in text and "7731" not in text  # internal: never printed
    # the opening mail is the description, not a second time a workunit
    assert text.count("The printer in room 4 is on fire.") == 1
    page = html.read_text(encoding="utf-8")
    assert "@page" in page and "size: A4" in page and "http" not in page.split("<footer>")[0]


async def test_a_ticket_type_has_its_own_template(make_settings, start_daemon, tmp_path,
                                                  capsys) -> None:
    folder = tmp_path / "support-templates" / "workorder"
    folder.mkdir(parents=True)
    (folder / "hardware_repair.html.j2").write_text(
        "<html><body><h1>HARDWARE SHEET {{ incident_id }}</h1>"
        "<p>{{ incident_title }} / serial {{ Serial }} / {{ ticket.custom['Serial'] }}</p>"
        "<p>{{ type_tickets }} for {{ author }}</p></body></html>", encoding="utf-8")
    settings = make_settings(support='templates = "support-templates"')
    d = await start_daemon(settings)
    tid = await worked_ticket(d)
    set_ticket(d, tid, type_name="Hardware repair", custom={"Serial": "SN-991"})
    config, out = str(settings.source), tmp_path / "typed.pdf"

    code, stdout, err = run(capsys, "-c", config, "workorder", str(tid), "-o", str(out))
    assert code == 0, err
    assert "support-templates/workorder/hardware_repair.html.j2" in stdout
    assert pdf_text(out) == (f"HARDWARE SHEET {tid} Printer on fire / serial SN-991 / SN-991 "
                             "Hardware repair for alice@customer.example")

    # a type without its own file falls back to the default
    set_ticket(d, tid, type_name="Software")
    code, stdout, _ = run(capsys, "-c", config, "workorder", str(tid), "-o", str(out))
    assert code == 0 and "HARDWARE" not in pdf_text(out) and "Software" in pdf_text(out)
    # mail templates ignore the group's workorder/ folder (check-config stays clean)
    assert not [n for n in Renderer(group_dirs={1: folder.parent}).names(1)
                if n.startswith("workorder")]


async def test_missing_ticket_and_bad_output(make_settings, start_daemon, tmp_path,
                                             capsys) -> None:
    settings = make_settings()
    d = await start_daemon(settings)
    tid = await worked_ticket(d)
    config = str(settings.source)

    code, _, err = run(capsys, "-c", config, "workorder", "999", "-o", str(tmp_path / "x.pdf"))
    assert code == 1 and "not found: no ticket 999" in err
    assert not (tmp_path / "x.pdf").exists()
    for bad in (tmp_path / "x.txt", tmp_path / "no-such-folder" / "x.pdf", tmp_path):
        code, _, err = run(capsys, "-c", config, "workorder", str(tid), "-o", str(bad))
        assert code == 2 and "config error: --output" in err, bad
    code, _, err = run(capsys, "-c", config, "workorder", str(tid), "-o",
                       str(tmp_path / "x.pdf"), "--html", str(tmp_path / "x.htm"))
    assert code == 2 and "config error: --html" in err


def test_template_choice_and_errors(tmp_path: Path) -> None:
    assert WorkOrders.candidates(None) == ["default.html.j2"]
    assert WorkOrders.candidates("Technical incident") == [
        "Technical incident.html.j2", "technical_incident.html.j2", "default.html.j2"]
    assert WorkOrders.candidates("../etc/x") == ["etc_x.html.j2", "default.html.j2"]

    group = tmp_path / "g"
    (group / "workorder").mkdir(parents=True)
    (group / "workorder" / "default.html.j2").write_text("group default {{ incident_id }}")
    (group / "workorder" / "broken.html.j2").write_text("{{ no_such_value }}")
    orders = WorkOrders(group_dirs={7: group})
    hardware = {**SAMPLE, "workorder": {"created": "", "updated": "", "printed": "",
                                        "timezone": "UTC", "workunits": [], "listed_time": 0}}
    assert orders.render(hardware, group_id=7).html == "group default 42"
    page = orders.render(hardware)  # no group: the built-in default
    assert "Terminal 3 does not boot" in page.html and page.base_url.endswith("workorder")
    with pytest.raises(TemplateError, match="no_such_value"):
        orders.render({**hardware, "ticket": {**SAMPLE["ticket"], "type": "Broken"}}, 7)
    errors = orders.check(hardware)
    assert len(errors) == 1 and "broken.html.j2" in errors[0]


async def test_pdf_off_the_loop_and_never_from_the_network() -> None:
    hits: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        pdf = await html_to_pdf_async(
            f'<p>offline</p><img src="http://127.0.0.1:{port}/logo.png">'
            f'<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css">')
    finally:
        server.close()
        await server.wait_closed()
    assert pdf.startswith(b"%PDF-") and hits == []


def test_render_time(capsys: pytest.CaptureFixture[str]) -> None:
    """One default work order, HTML to PDF (printed, for the record; generous bound)."""
    ctx = {**SAMPLE, "workorder": {
        "created": "2026-11-02 10:00", "updated": "2026-11-02 12:30",
        "printed": "2026-11-03 09:00", "timezone": "Europe/Madrid", "listed_time": 1.5,
        "workunits": [{"id": i, "date": "2026-11-02 11:00", "author": "javi",
                       "time_used": 0.25, "text": f"Step {i}: checked the unit."}
                      for i in range(6)]}}
    page = WorkOrders().render(ctx)
    html_to_pdf(page.html, page.base_url)  # warm: fonts, Pango
    started = time.perf_counter()
    pdf = html_to_pdf(page.html, page.base_url)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\none work order HTML → PDF: {elapsed * 1000:.0f} ms, {len(pdf)} bytes")
    assert elapsed < 10
