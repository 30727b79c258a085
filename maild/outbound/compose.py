"""A rendered notification → an RFC 5322 message with maild's hygiene headers.

Every mail carries its stored Message-ID (the same across retries), threading headers, a
Reply-To private to its recipient and ticket, Auto-Submitted and a signed loop header; the
envelope sender is a signed VERP address so a bounce names the notification that failed.

Whatever a row holds (it comes, through the service, from mail anybody can send), `compose`
either returns a mail whose header lines are CRLF-separated and free of control characters,
or raises `UncomposableError` naming why: names and subjects are cleaned to one line and
RFC 2047-encoded when not ASCII; a Message-ID in In-Reply-To/References that is not plain
ASCII is left out (not referenced); an internationalised address (RFC 6531/6532) makes the
header block UTF-8 and the mail `utf8`, to go out only through a relay offering SMTPUTF8.
"""

from __future__ import annotations

import binascii
import functools
import re
import unicodedata
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
from email.utils import format_datetime
from io import BytesIO

from maild.errors import DeliveryError
from maild.outbound.render import Rendered
from maild.tokens import Signer, make_address
from store.outbox_rows import OutgoingMail


class UncomposableError(DeliveryError):
    """A row that can never become a mail (an address or its own Message-ID is unusable):
    it goes dead with this reason, since trying again would fail the same way."""


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
    utf8: bool = False  # needs SMTPUTF8: an address (envelope and header) is not ASCII


# -- text that goes into a header --------------------------------------------------------------

_NOT_ESCAPED = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # surrogates no byte made


def _unsurrogate(value: str) -> str:
    """Text without lone surrogates (which no codec writes): bytes kept by `surrogateescape`
    are decoded as UTF-8 where they are UTF-8, anything else becomes U+FFFD."""
    value = _NOT_ESCAPED.sub("\ufffd", value)
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _unsurrogate(text).encode("utf-8")


_BREAKS = frozenset(("Cc", "Zl", "Zp", "Zs", "Cs"))


def _one_line(value: str) -> str:
    """One line of printable text: CR, LF, any other control or line-breaking character, and
    runs of spaces become one space, whatever a subject or name contained."""
    if not value.isprintable():  # the common case skips this: str.isprintable runs in C
        value = "".join(" " if unicodedata.category(c) in _BREAKS else c
                        for c in _unsurrogate(value))
    return " ".join(value.split())


def _unstructured(value: str) -> str:
    """A Subject-like value: as is when plain ASCII in foldable words, else RFC 2047."""
    if value.isascii() and all(len(w) <= 76 for w in value.split(" ")):
        return value
    return Header(value, "utf-8").encode()


_UTF8_WORDS = Charset("utf-8")
_PHRASE_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


@functools.lru_cache(maxsize=4096)  # staff names, maild's own name: the same again and again
def _phrase(name: str) -> str:
    """A display name: RFC 2047 when not ASCII, quoted when it holds specials."""
    if not name.isascii() or any(len(w) > 76 for w in name.split(" ")):
        word = _UTF8_WORDS.header_encode(name)  # one encoded word, when it is short enough
        return word if len(word) <= 75 else Header(name, "utf-8").encode()
    if _PHRASE_SPECIALS.search(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


# -- addresses and Message-IDs -----------------------------------------------------------------

_ATOMS = r'[^\s"(),:;<>@\[\\\]]+'
_MAILBOX = re.compile(rf'((?:"(?:[^"\\]|\\.)*"|{_ATOMS}))@({_ATOMS}|\[[^\s\[\]\\]+\])')


def mailbox(addr: str, what: str = "recipient address") -> tuple[str, bool]:
    """`addr` as it can go on the wire, and whether that needs SMTPUTF8.

    A non-ASCII domain is written in IDNA (any relay takes it); a non-ASCII local part needs
    SMTPUTF8. Anything that is not one plain addr-spec (spaces, control characters, several
    addresses, comments) is refused: on an SMTP command line it could end the address."""
    found = _MAILBOX.fullmatch(addr)
    if found is None or not addr.isprintable():
        raise UncomposableError(f"{what} {addr!r} is not a mail address maild can send to")
    local, domain = found.groups()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a valid IDN: sent as it is, in UTF-8, if the relay takes it
    wire = f"{local}@{domain}"
    return wire, not wire.isascii()


_MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")  # printable ASCII, no spaces or <>


def message_id_ok(value: str) -> bool:
    return len(value) <= 250 and _MSG_ID.fullmatch(value) is not None


def _address(name: str, addr: str) -> str:
    return f"{_phrase(name)} <{addr}>" if name else addr


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


# -- the body ------------------------------------------------------------------------------

_WIRE = compat32.clone(linesep="\r\n")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in a raw view, safe for 8-bit-unaware relays
_TEXT_HEAD = (b'Content-Type: text/%s; charset="utf-8"\r\n'
              b"Content-Transfer-Encoding: quoted-printable\r\n")


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends (binascii does it in C)."""
    data = _utf8(text.replace("\r\n", "\n").replace("\r", "\n"))
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


def _mime_body(rendered: Rendered, attachments: tuple[tuple[str, str, bytes], ...]) -> bytes:
    """The compat32 MIME classes make a body with attachments (e.g. a work order's PDF)."""
    body: Message = MIMEText(_unsurrogate(rendered.text), "plain",
                             _UTF8)  # type: ignore[arg-type]
    if rendered.html:
        alt = MIMEMultipart("alternative", boundary=f"=_maild_{uuid.uuid4().hex}")
        alt.attach(body)
        alt.attach(MIMEText(_unsurrogate(rendered.html), "html", _UTF8))  # type: ignore[arg-type]
        body = alt
    mixed = MIMEMultipart("mixed", boundary=f"=_maild_{uuid.uuid4().hex}")
    mixed.attach(body)
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        part = MIMEApplication(data, _subtype=subtype or "octet-stream") \
            if maintype == "application" else MIMEApplication(data)
        name = _one_line(filename)
        part.add_header("Content-Disposition", "attachment",
                        filename=name if name.isascii() else ("utf-8", "", name))
        mixed.attach(part)
    out = BytesIO()
    BytesGenerator(out, policy=_WIRE).flatten(mixed)
    return out.getvalue()


# -- the mail ------------------------------------------------------------------------------

def compose(mail: OutgoingMail, rendered: Rendered, *, signer: Signer, me: Identity,
            now: datetime, attachments: tuple[tuple[str, str, bytes], ...] = ()) -> Composed:
    """The mail of one outbox row; `UncomposableError` when it can never be one."""
    if not message_id_ok(mail.message_id):
        raise UncomposableError(f"its own Message-ID {mail.message_id!r} is not plain ASCII")
    to_addr, to_utf8 = mailbox(mail.to_addr)
    from_addr, from_utf8 = mailbox(me.from_addr, "sender address [outbound] from")
    # The envelope headers, all of our own making and encoded here, are written directly:
    # the email package's per-header folding cost more than everything else in a mail.
    headers = [("From", _address(_one_line(me.from_name), from_addr)),
               ("To", _address(_recipient_name(mail), to_addr)),
               ("Subject", _unstructured(_one_line(rendered.subject))),
               ("Date", format_datetime(now)), ("Message-ID", mail.message_id),
               *_threading(mail), *_reply_to(mail, signer, me), *_automation(mail, signer)]
    payload = _mime_body(rendered, attachments) if attachments else _plain_body(rendered)
    head = "\r\n".join(_fold(k, v) for k, v in headers) + "\r\n"
    utf8 = to_utf8 or from_utf8  # RFC 6532: the header block goes out as UTF-8
    envelope_from = make_address(me.reply_local, signer.bounce_token(mail.id), me.reply_domain)
    return Composed(envelope_from=envelope_from, recipients=(to_addr,),
                    message=head.encode("utf-8" if utf8 else "ascii") + payload, utf8=utf8)


def _recipient_name(mail: OutgoingMail) -> str:
    """The display name the mail's context gives its recipient, on one line ("" if none)."""
    recipient = mail.context.get("recipient") if isinstance(mail.context, dict) else None
    return _one_line(str(recipient.get("name") or "") if isinstance(recipient, dict) else "")


def _threading(mail: OutgoingMail) -> list[tuple[str, str]]:
    """In-Reply-To and References. A Message-ID we cannot write as it came is not
    referenced: threading is a nicety, the notification is not."""
    headers = []
    if mail.in_reply_to and message_id_ok(mail.in_reply_to):
        headers.append(("In-Reply-To", mail.in_reply_to))
    references = [r for r in mail.references if message_id_ok(r)]
    if references:
        headers.append(("References", " ".join(references)))
    return headers


def _reply_to(mail: OutgoingMail, signer: Signer, me: Identity) -> list[tuple[str, str]]:
    """The tokened reply address of a ticket's mail to a user or a third party, if any."""
    if mail.ticket_id is None or (mail.to_user_id is None
                                  and not mail.template.startswith("ticket/thirdparty/")):
        return []
    # A third party's copy gets a reply address too: a reply threads, but as the word
    # of someone with no powers on the ticket (ignored or kept as an internal note).
    user = mail.to_user_id if mail.to_user_id is not None else Signer.THIRD_PARTY
    token = signer.reply_token(mail.ticket_id, user)
    return [("Reply-To", _address(_one_line(me.from_name),
                                  make_address(me.reply_local, token, me.reply_domain)))]


def _automation(mail: OutgoingMail, signer: Signer) -> list[tuple[str, str]]:
    """The marks of a machine's mail: no auto-replies to it, our loop mark, its ticket."""
    automatic = mail.template.startswith(("refused/", "ticket/creator/"))
    headers = [("Auto-Submitted", "auto-replied" if automatic else "auto-generated"),
               ("X-Auto-Response-Suppress", "All"),  # asks Exchange not to send OOO replies
               ("X-Maild-Loop", signer.loop_mark(mail.message_id))]
    if mail.ticket_id is not None:
        headers.append(("X-Maild-Ticket", str(mail.ticket_id)))
    return headers
