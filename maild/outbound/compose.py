"""A rendered notification → an RFC 5322 message with maild's hygiene headers.

Every mail carries its stored Message-ID (the same across retries), threading headers, a
Reply-To private to its recipient and ticket, Auto-Submitted and a signed loop header; the
envelope sender is a signed VERP address so a bounce names the notification that failed.
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr
from io import BytesIO

from maild.outbound.render import Rendered
from maild.store.outbox import OutgoingMail
from maild.tokens import Signer, make_address


@dataclass(frozen=True, kw_only=True)
class Identity:
    from_addr: str
    from_name: str
    reply_local: str
    reply_domain: str


@dataclass(frozen=True, kw_only=True)
class Composed:
    envelope_from: str
    recipients: tuple[str, ...]
    message: bytes


def _one_line(value: str) -> str:
    """CR and LF never reach a header, whatever a subject or name contained."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


_WIRE = compat32.clone(linesep="\r\n")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in a raw view, safe for 8-bit-unaware relays


def _header(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


def _address(name: str, addr: str) -> str:
    return formataddr((name, addr), charset="utf-8") if name else addr


def _fold(name: str, value: str) -> str:
    """One header field, folded between words before 78 columns (RFC 5322 §2.2.3)."""
    lines, line = [], f"{name}:"
    for word in value.replace("\n", " ").split(" "):
        if word and len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word if word else ""
    lines.append(line)
    return "\r\n".join(lines)


_TEXT_HEAD = (b'Content-Type: text/%s; charset="utf-8"\r\n'
              b"Content-Transfer-Encoding: quoted-printable\r\n")


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends (binascii does it in C)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def _plain_body(rendered: Rendered) -> bytes:
    """MIME-Version, the body's own headers and the body: text, or text and HTML."""
    if not rendered.html:
        return b"MIME-Version: 1.0\r\n" + _TEXT_HEAD % b"plain" + b"\r\n" + _qp(rendered.text)
    boundary = f"=_maild_{uuid.uuid4().hex}".encode("ascii")
    return b"".join((
        b"MIME-Version: 1.0\r\n",
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
        b"--" + boundary + b"\r\n", _TEXT_HEAD % b"plain", b"\r\n", _qp(rendered.text),
        b"\r\n--" + boundary + b"\r\n", _TEXT_HEAD % b"html", b"\r\n", _qp(rendered.html),
        b"\r\n--" + boundary + b"--\r\n"))


def compose(mail: OutgoingMail, rendered: Rendered, *, signer: Signer, me: Identity,
            now: datetime, attachments: tuple[tuple[str, str, bytes], ...] = ()) -> Composed:
    # The compat32 MIME classes make the body; the envelope headers, all of our own making
    # and already encoded, are written here: the email package's per-header folding cost
    # more than everything else in a notification.
    body: Message | None = None
    if attachments:  # (file name, content type, bytes), e.g. a work order's PDF
        body = MIMEText(rendered.text, "plain", _UTF8)  # type: ignore[arg-type]
        if rendered.html:
            alt = MIMEMultipart("alternative", boundary=f"=_maild_{uuid.uuid4().hex}")
            alt.attach(body)
            alt.attach(MIMEText(rendered.html, "html", _UTF8))  # type: ignore[arg-type]
            body = alt
        mixed = MIMEMultipart("mixed", boundary=f"=_maild_{uuid.uuid4().hex}")
        mixed.attach(body)
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            part = MIMEApplication(data, _subtype=subtype or "octet-stream") \
                if maintype == "application" else MIMEApplication(data)
            part.add_header("Content-Disposition", "attachment",
                            filename=_one_line(filename))
            mixed.attach(part)
        body = mixed
    name = _one_line(str(mail.context.get("recipient", {}).get("name") or ""))
    headers = [("From", _address(_one_line(me.from_name), me.from_addr)),
               ("To", _address(name, mail.to_addr)),
               ("Subject", _header(_one_line(rendered.subject))),
               ("Date", format_datetime(now)), ("Message-ID", mail.message_id)]
    if mail.in_reply_to:
        headers.append(("In-Reply-To", mail.in_reply_to))
    if mail.references:
        headers.append(("References", " ".join(mail.references)))
    if mail.ticket_id is not None and (mail.to_user_id is not None
                                       or mail.template.startswith("ticket/thirdparty/")):
        # A third party's copy gets a reply address too: a reply threads, but as the word
        # of someone with no powers on the ticket (ignored or kept as an internal note).
        user = mail.to_user_id if mail.to_user_id is not None else Signer.THIRD_PARTY
        token = signer.reply_token(mail.ticket_id, user)
        headers.append(("Reply-To", _address(_one_line(me.from_name),
                                             make_address(me.reply_local, token,
                                                          me.reply_domain))))
    automatic = mail.template.startswith(("refused/", "ticket/creator/"))
    headers += [("Auto-Submitted", "auto-replied" if automatic else "auto-generated"),
                ("X-Auto-Response-Suppress", "All"),  # asks Exchange not to send OOO replies
                ("X-Maild-Loop", signer.loop_mark(mail.message_id))]
    if mail.ticket_id is not None:
        headers.append(("X-Maild-Ticket", str(mail.ticket_id)))
    if body is not None:
        out = BytesIO()
        BytesGenerator(out, policy=_WIRE).flatten(body)
        payload = out.getvalue()
    else:  # the common case, written directly: the generator's header folding was most of
        payload = _plain_body(rendered)  # the cost of a notification
    head = "\r\n".join(_fold(k, v) for k, v in headers) + "\r\n"
    envelope_from = make_address(me.reply_local, signer.bounce_token(mail.id), me.reply_domain)
    return Composed(envelope_from=envelope_from, recipients=(mail.to_addr,),
                    message=head.encode("ascii") + payload)
