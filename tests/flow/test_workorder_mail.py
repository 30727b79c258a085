"""`#workorder` mails the PDF back; `#signed` with a PDF or image keeps the signed copy."""

from __future__ import annotations

import io
from email.message import EmailMessage
from email.policy import SMTP

from pypdf import PdfReader

from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, outcomes, write


async def test_workorder_and_signed_copy(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    await d.send(mail(subject="Terminal 3 does not boot"))
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")
    await write(d, RAMON, to, "#workorder\n")
    [sent] = [r for r in d.sink.to("ramon@example.com") if "Work order" in r["Subject"]]
    [pdf] = [p for p in sent.message.walk() if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == f"workorder-{t.id}.pdf"
    data = pdf.get_payload(decode=True)
    assert isinstance(data, bytes)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "Terminal 3 does not boot" in text and str(t.id) in text

    await write(d, RAMON, to, "#signed\n")
    assert "attach the signed work order" in outcomes(d, "ramon@example.com")[-1].text
    signed = EmailMessage()
    signed["From"], signed["To"], signed["Subject"] = RAMON, to, "Re: Work order"
    signed.set_content("#signed\nSigned by the customer on site.\n")
    signed.add_attachment(data, maintype="application", subtype="pdf",
                          filename="signed-workorder.pdf")
    await d.send(signed.as_bytes(policy=SMTP), rcpts=[to], mail_from="ramon@example.com")
    await d.settle()
    view = d.ticket(t.id)
    assert ("workorder", "signed: signed-workorder.pdf") in [(h.field, h.new)
                                                             for h in view.history]
    files = [a for w in view.workunits for a in w.attachments]
    assert [f.filename for f in files] == ["signed-workorder.pdf"]
