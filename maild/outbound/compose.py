"""A rendered notification → an RFC 5322 message with maild's hygiene headers.

Every mail carries its stored Message-ID (the same across retries), threading headers, a
Reply-To private to its recipient and ticket, Auto-Submitted and a signed loop header; the
envelope sender is a signed VERP address so a bounce names the notification that failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

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


def compose(mail: OutgoingMail, rendered: Rendered, *, signer: Signer, me: Identity,
            now: datetime) -> Composed:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((_one_line(me.from_name), me.from_addr))
    name = _one_line(str(mail.context.get("recipient", {}).get("name") or ""))
    msg["To"] = formataddr((name, mail.to_addr))
    msg["Subject"] = _one_line(rendered.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
    if mail.references:
        msg["References"] = " ".join(mail.references)
    if mail.ticket_id is not None and mail.to_user_id is not None:
        token = signer.reply_token(mail.ticket_id, mail.to_user_id)
        msg["Reply-To"] = formataddr((_one_line(me.from_name),
                                      make_address(me.reply_local, token, me.reply_domain)))
    automatic = mail.template.startswith(("refused/", "ticket/creator/"))
    msg["Auto-Submitted"] = "auto-replied" if automatic else "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to send OOO replies
    msg["X-Maild-Loop"] = signer.loop_mark(mail.message_id)
    if mail.ticket_id is not None:
        msg["X-Maild-Ticket"] = str(mail.ticket_id)
    msg.set_content(rendered.text)
    if rendered.html:
        msg.add_alternative(rendered.html, subtype="html")
    envelope_from = make_address(me.reply_local, signer.bounce_token(mail.id), me.reply_domain)
    return Composed(envelope_from=envelope_from, recipients=(mail.to_addr,),
                    message=msg.as_bytes())
