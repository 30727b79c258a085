"""MIME part payloads for inbound parsing: reading what the parser stored, undoing the
transfer encoding, writing an attached mail back out, naming attachments, and a part's text.
"""

from __future__ import annotations

import binascii
import unicodedata
from email.errors import MessageError
from email.message import Message
from email.policy import Compat32
from typing import Any

from maild.inbound.decode import _clean_body, _decode_bytes, _decode_words, _from_8bit

MAX_FILENAME = 255


def _raw(part: Message) -> Any:
    """A part's payload as the parser stored it: its children, or its text with 8-bit bytes
    kept as surrogates. Message.get_payload() would decode that text with the part's charset
    parameter, which can be anything (a NUL in it makes the codec lookup raise ValueError)."""
    return part._payload  # type: ignore[attr-defined]


class _AsSent(Compat32):
    """Writes an attached mail back with its headers as they came, CRLF line ends.

    compat32 would refold every header through email.header.Header, which is slow on long
    values and raises HeaderParseError on values that look like they hide another header.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


_AS_SENT = _AsSent(linesep="\r\n")


def _attachment_bytes(part: Message) -> bytes:
    payload = _raw(part)
    if isinstance(payload, list):  # an attached mail, or the blocks of a delivery-status
        return b"".join(_flatten(m) for m in payload if isinstance(m, Message))
    return _decoded(part, payload)


def _flatten(msg: Message) -> bytes:
    try:
        return msg.as_bytes(policy=_AS_SENT)
    except (UnicodeError, LookupError, ValueError, TypeError, MessageError):
        # The generator trips over some broken structures (a multipart left as text with
        # 8-bit bytes): keep the headers and the text as they came.
        head = b"".join(_AS_SENT.fold_binary(k, str(v)) for k, v in msg.raw_items())
        text = _raw(msg)
        body = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
        return head + b"\r\n" + body


def _decoded(part: Message, payload: object) -> bytes:
    """The payload with its transfer encoding undone.

    base64 and quoted-printable are decoded here in one C call: the stdlib first copies,
    splits and re-joins the lines and runs a validating regex over them (5× slower), and it
    leaves "base64 " with a stray space undecoded. The rest goes through the stdlib.
    """
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable") and isinstance(payload, str):
        try:
            data = payload.encode("ascii", "surrogateescape")  # 8-bit bytes as they came
        except UnicodeEncodeError:
            data = payload.encode("utf-8", "replace")
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
        for padding in (b"", b"=="):  # "==" repairs a missing padding, as the stdlib does
            try:
                return binascii.a2b_base64(data + padding)
            except binascii.Error:
                continue
        return data  # not decodable at all: the stdlib also hands back the encoded text
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _raw_filename(part: Message) -> str | None:
    """The name a part gives itself (RFC 2231 decoded by the stdlib), or None."""
    if "content-disposition" not in part \
            and "name" not in str(part.get("content-type", "")).lower():
        return None  # no parameter to look at: skip parsing them (most body parts)
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError, TypeError, IndexError):
        return None  # a parameter the stdlib cannot read (e.g. an absurd RFC 2231 index)
    return name if name and name.strip() else None


_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "text/csv": ".csv",
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
    "application/pdf": ".pdf", "application/zip": ".zip", "message/rfc822": ".eml",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}


def _display_filename(raw: str | None, index: int, ctype: str) -> str:
    """A name fit to show: decoded, without directories or control/format characters."""
    name = " ".join(_decode_words(_from_8bit(raw)).split()) if raw else ""  # tabs, folding
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = name.strip()
    if name in ("", ".", ".."):
        return f"attachment-{index}{_EXTENSIONS.get(ctype, '.bin')}"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = f".{ext}" if dot and stem and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME - len(keep)] + keep
    return name


def _part_text(part: Message) -> str:
    raw = _decoded(part, _raw(part))
    return _clean_body(_decode_bytes(raw, part.get_content_charset()))

