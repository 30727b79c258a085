"""The envelope of a mail read over IMAP: who it was for and who sent it, as far as its
headers say (there was no SMTP transaction), in values the journal can always store."""

from __future__ import annotations

from email.parser import HeaderParser
from email.utils import getaddresses

from maild.domain import Channel, Envelope
from maild.tokens import split_address

SOURCE_MAX = 200  # characters of the journal's source column
ADDRESS_MAX = 320  # characters of the journal's mail_from column
UNKNOWN_SENDER = "unknown@invalid"  # not the null path: that would make the mail a bounce
_HEADERS_MAX = 256 * 1024


def envelope_of(raw: bytes, *, reply_local: str, reply_domain: str,
                group_address: str) -> Envelope:
    """Reply addresses first (their tokens thread the mail), then the mailbox's group
    address; the sender from Return-Path (the envelope sender the last MTA saw, "<>" for a
    bounce), else From. Header bytes that are not UTF-8 are replaced."""
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    head = raw[:end if 0 <= end < _HEADERS_MAX else _HEADERS_MAX]  # the headers only
    # UTF-8 as RFC 6532 allows (jösé@…); other bytes become stand-ins that _clean replaces
    headers = HeaderParser().parsestr(head.decode("utf-8", "surrogateescape"))
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
        for _, addr in getaddresses([str(v) for v in headers.get_all(name) or []]):
            addr = _clean(addr).lower()
            if (addr and len(addr) <= ADDRESS_MAX
                    and split_address(addr, reply_local, reply_domain) is not None):
                found.append(addr)
    rcpts = (*dict.fromkeys(found), group_address)
    # A mail put into the box without a Return-Path (or with one naming nobody) has its
    # From as the nearest stand-in, not a null sender.
    path = headers.get("Return-Path")
    if path is not None and str(path).strip() == "<>":
        sender = ""
    else:
        sender = (_first_address(str(path or "")) or _first_address(str(headers.get("From") or ""))
                  or UNKNOWN_SENDER)
    return Envelope(mail_from=sender, rcpt_tos=rcpts, channel=Channel.IMAP)


def journal_source(key: str, validity: int, uid: int) -> str:
    """Where a journal row came from: the mailbox key, its UIDVALIDITY and the UID."""
    suffix = f";uidvalidity={validity};uid={uid}"
    return key[:SOURCE_MAX - len(suffix)] + suffix


def _first_address(value: str) -> str:
    addr = _clean(next((a for _, a in getaddresses([value]) if a), ""))
    return addr if len(addr) <= ADDRESS_MAX else ""


def _clean(text: str) -> str:
    """A header value the database takes: the parser's stand-ins for undecodable bytes turned
    back into UTF-8 (or U+FFFD), without control characters (PostgreSQL refuses NUL)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c for c in text if c >= " " and c != "\x7f").strip()
