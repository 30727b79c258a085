"""Delivery reports for inbound parsing: a delivery status notification (RFC 3464) or a
common non-standard bounce → `DeliveryReport` (failed or delayed recipients, status,
diagnostic, the Message-ID of the returned mail).
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Any

from maild.domain import Address, DeliveryReport
from maild.inbound.decode import _first, _from_8bit, _message_ids, _unfold
from maild.inbound.payloads import _part_text, _raw

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                   "message/global-headers", "message/rfc822-headers")
# An enhanced status code (RFC 3463), not the start of an IP address such as 5.9.100.1.
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_FIELD = re.compile(r"^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.MULTILINE)
_MSGID_FIELD = re.compile(r"^[ \t]*message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
                          re.IGNORECASE | re.MULTILINE)


def _report(msg: Message, sender: Address | None, raw_headers: list[tuple[str, str]],
            subject: str, text: str) -> DeliveryReport | None:
    """The delivery report of a DSN (RFC 3464) or of a common non-standard bounce."""
    children = [c for c in _children(msg) if isinstance(c, Message)]
    if msg.get_content_type() == "multipart/report":
        status = next((c for c in children if c.get_content_type() in _DSN_TYPES), None)
        if status is not None:
            return _dsn(_dsn_blocks(status), _original_id(children))
    if not _from_machine(sender, raw_headers):
        return None
    return _plain_bounce(subject, text, _original_id(children))


def _children(msg: Message) -> list[Any]:
    payload = _raw(msg)
    return payload if isinstance(payload, list) else []


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part (the first is about the whole message)."""
    payload = _raw(part)
    if not isinstance(payload, list):
        return _text_blocks(_part_text(part))
    blocks: list[dict[str, str]] = []
    for block in payload:
        if isinstance(block, Message):
            fields: dict[str, str] = {}
            for name, value in block.raw_items():
                fields.setdefault(name.lower(), _unfold(_from_8bit(str(value))))
            blocks.append(fields)
            rest = _raw(block)
            if isinstance(rest, str) and rest.strip():  # global-delivery-status: one message
                blocks.extend(_text_blocks(rest))
    return blocks


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        for m in _FIELD.finditer(chunk):
            fields.setdefault(m.group(1).lower(), _unfold(m.group(2)))
        if fields:
            blocks.append(fields)
    return blocks


def _dsn(blocks: list[dict[str, str]], original: str | None) -> DeliveryReport:
    """Failed recipients, else delayed ones (a temporary report); success reports list none."""
    failed: list[tuple[str, str, str]] = []
    delayed: list[tuple[str, str, str]] = []
    first_status = ""
    for fields in blocks:
        # The Original-Recipient is the address we wrote; Final-Recipient may be an alias.
        rcpt = _dsn_address(fields.get("original-recipient", "")) \
            or _dsn_address(fields.get("final-recipient", ""))
        if rcpt is None:
            continue
        action = fields.get("action", "").lower()
        m = _STATUS.search(fields.get("status", "")) or _STATUS.search(
            fields.get("diagnostic-code", ""))
        status = m.group() if m else ""
        first_status = first_status or status
        diagnostic = fields.get("diagnostic-code", "").partition(";")[2].strip() \
            or fields.get("diagnostic-code", "")
        entry = (rcpt, status, diagnostic[:1000])
        if action == "failed" or status.startswith("5"):
            failed.append(entry)
        elif action == "delayed" or status.startswith("4"):
            delayed.append(entry)
    chosen = failed or delayed
    return DeliveryReport(
        recipients=tuple(dict.fromkeys(r for r, _, _ in chosen)),
        status=chosen[0][1] if chosen else first_status,
        diagnostic=chosen[0][2] if chosen else "",
        original_message_id=original, permanent=bool(failed))


def _dsn_address(value: str) -> str | None:
    """`rfc822; alice@example.org` → alice@example.org."""
    addr = value.partition(";")[2] if ";" in value else value
    addr = addr.strip().strip("<>").strip().lower()
    return addr if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", addr) else None


def _original_id(children: list[Message]) -> str | None:
    """The Message-ID of the returned mail, from its attached copy or headers."""
    for child in children:
        ctype = child.get_content_type()
        if ctype not in _ORIGINAL_TYPES:
            continue
        inner = _children(child)
        if inner and isinstance(inner[0], Message):
            value = next((str(v) for k, v in inner[0].raw_items() if k.lower() == "message-id"),
                         "")
        else:
            m = _MSGID_FIELD.search(_part_text(child))
            value = m.group(1) if m else ""
        ids = _message_ids(_unfold(value))
        if ids:
            return ids[0]
    return None


# The first lines of the bounces common MTAs send without a DSN, and their subjects.
_BOUNCE_TEXT = re.compile(
    r"This is the qmail-send program|I'm afraid I wasn't able to deliver your message"
    r"|This message was created automatically by mail delivery software"
    r"|A message that you sent could not be delivered|The following address\(es\) failed"
    r"|This is the mail system at host|I'm sorry to have to inform you that your message"
    r"|The following addresses had permanent fatal errors|Transcript of session follows"
    r"|Delivery has failed to these recipients|Your message did not reach some or all"
    r"|The following recipient\(s\) cannot be reached",
    re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"\s*(?:Undeliverable|Undelivered Mail Returned to Sender|Returned mail"
    r"|Mail delivery failed|Delivery Status Notification \(Failure\)|failure notice"
    r"|Delivery failure|Undeliverable mail|Nondeliverable mail)", re.IGNORECASE)
# Where the bounce stops talking and the copy of the returned mail begins.
_BOUNCE_END = re.compile(
    r"^[ \t]*(?:--- Below this line is a copy of the message|------ This is a copy of the"
    r"|-+ ?(?:Original|Returned) message|-+ Transcript of session follows"
    r"|Original message headers:|-+ ?The header of the original message)",
    re.IGNORECASE | re.MULTILINE)
_RECIPIENT_LINE = re.compile(
    r"^[ \t]*<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?"
    r"(?=[:\s(<]|$)", re.MULTILINE)
_TEMPORARY = re.compile(r"has not yet been delivered|will (?:continue|keep) trying"
                        r"|temporar(?:y|ily) (?:error|failure|problem)|\bdelayed\b",
                        re.IGNORECASE)
_SMTP_REPLY = re.compile(r"\b[45]\d\d\b")
_MACHINE_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "mailer_daemon"})


def _from_machine(sender: Address | None, raw_headers: list[tuple[str, str]]) -> bool:
    """Sent by a mail system: MAILER-DAEMON / postmaster / Exchange, or a null return path."""
    if _first(raw_headers, "return-path").strip() == "<>":
        return True
    if sender is not None:
        local = sender.addr.rpartition("@")[0]
        return local in _MACHINE_LOCAL_PARTS or local.startswith("microsoftexchange")
    return bool(re.search(r"mailer-daemon|postmaster", _first(raw_headers, "from"),
                          re.IGNORECASE))


def _plain_bounce(subject: str, text: str, original: str | None) -> DeliveryReport | None:
    """qmail, Exim, old Postfix/Sendmail and Exchange bounces: recipients from the lines that
    start with an address, between the bounce's first words and the returned copy."""
    opening = _BOUNCE_TEXT.search(text, 0, 20_000)
    if opening is None and not _BOUNCE_SUBJECT.match(subject):
        return None
    start = opening.start() if opening else 0
    end_match = _BOUNCE_END.search(text, start, start + 20_000)
    section = text[start : end_match.start() if end_match else start + 20_000]
    recipients = tuple(dict.fromkeys(m.group(1).lower()
                                     for m in _RECIPIENT_LINE.finditer(section)))[:100]
    status = _STATUS.search(section)
    first_rcpt = _RECIPIENT_LINE.search(section)
    after = section[first_rcpt.end() :] if first_rcpt else section
    lines = [line.strip(" \t:") for line in after.splitlines()[:20] if line.strip(" \t:")]
    # The MTA's reply when one is quoted (Exim, Postfix, Exchange), else its own words (qmail).
    diagnostic = next((line for line in lines if _SMTP_REPLY.search(line)),
                      lines[0] if lines and first_rcpt else "")
    temporary = bool(_TEMPORARY.search(section)) or (status is not None
                                                      and status.group(1) == "4")
    if original is None:
        copy = end_match.start() if end_match else 0
        m = _MSGID_FIELD.search(text, copy, copy + 100_000)
        ids = _message_ids(_unfold(m.group(1))) if m else ()
        original = ids[0] if ids else None
    return DeliveryReport(recipients=recipients, status=status.group() if status else "",
                          diagnostic=diagnostic[:1000], original_message_id=original,
                          permanent=not temporary)
