"""Hashed reply addresses and other signed values (stdlib only).

A token is base32 (case-insensitive, since MTAs may fold the local part) of
`purpose byte | varint fields | 80-bit HMAC-SHA256 tag`, keyed by the configured secret.
Verification compares tags in constant time and returns None for anything that does not
verify, so callers never see a half-trusted value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

TAG_BYTES = 10  # 80 bits of tag
REPLY = b"r"  # reply address: (ticket id, recipient user id)
BOUNCE = b"b"  # VERP return path: (outbox id,)
SURVEY = b"s"  # satisfaction link: (ticket id, user id, last valid day since 1970)
LINK = b"s"  # signed web link: (ticket id, expiry day number)


@dataclass(frozen=True, kw_only=True)
class ReplyClaim:
    ticket_id: int
    user_id: int


class Signer:
    """Signs and verifies tokens with one installation's secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("the secret key must be at least 16 characters")
        self._key = hashlib.sha256(b"maild-token-v1\0" + secret.encode()).digest()

    # -- generic ---------------------------------------------------------------
    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:TAG_BYTES]

    def sign(self, purpose: bytes, *fields: int) -> str:
        payload = purpose + b"".join(_varint(f) for f in fields)
        raw = payload + self._tag(payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def verify(self, purpose: bytes, token: str, count: int) -> tuple[int, ...] | None:
        raw = _b32decode(token)
        if raw is None or len(raw) <= TAG_BYTES + 1:
            return None
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        if payload[:1] != purpose:
            return None
        fields = _read_varints(payload[1:])
        if fields is None or len(fields) != count:
            return None
        return fields

    # -- reply addresses ---------------------------------------------------------
    THIRD_PARTY = 0  # the "user" of a third-party copy's reply address: it carries no powers

    def reply_token(self, ticket_id: int, user_id: int) -> str:
        return self.sign(REPLY, ticket_id, user_id)

    def verify_reply(self, token: str) -> ReplyClaim | None:
        fields = self.verify(REPLY, token, 2)
        return None if fields is None else ReplyClaim(ticket_id=fields[0], user_id=fields[1])

    def survey_token(self, ticket_id: int, user_id: int, last_day: int) -> str:
        return self.sign(SURVEY, ticket_id, user_id, last_day)

    def verify_survey(self, token: str) -> tuple[int, int, int] | None:
        """(ticket id, user id, last valid day) of a genuine link, expired or not."""
        fields = self.verify(SURVEY, token, 3)
        return None if fields is None else (fields[0], fields[1], fields[2])

    def bounce_token(self, outbox_id: int) -> str:
        return self.sign(BOUNCE, outbox_id)

    def verify_bounce(self, token: str) -> int | None:
        fields = self.verify(BOUNCE, token, 1)
        return None if fields is None else fields[0]

    # -- the loop header -------------------------------------------------------
    def loop_mark(self, message_id: str) -> str:
        """Value of maild's loop header for a mail it sends with this Message-ID."""
        digest = hmac.new(self._key, b"loop\0" + message_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:24]

    def verify_loop_mark(self, message_id: str, mark: str) -> bool:
        return hmac.compare_digest(self.loop_mark(message_id), mark.strip().lower())


def make_address(local: str, token: str, domain: str) -> str:
    return f"{local}+{token}@{domain}"


def split_address(address: str, local: str, domain: str) -> str | None:
    """The token of `local+TOKEN@domain`, or None when the address is not of that form."""
    addr = address.strip().strip("<>")
    at = addr.rfind("@")
    if at < 0 or addr[at + 1 :].lower() != domain.lower():
        return None
    box = addr[:at]
    prefix = local.lower() + "+"
    if not box.lower().startswith(prefix) or len(box) == len(prefix):
        return None
    return box[len(prefix) :]


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("token fields are non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes) -> tuple[int, ...] | None:
    fields: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            return None
        if not byte & 0x80:
            fields.append(value)
            value = shift = 0
    return tuple(fields) if shift == 0 else None


def _b32decode(token: str) -> bytes | None:
    text = token.strip().upper()
    if not text or len(text) > 64 or not text.isalnum():
        return None
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    # Only the canonical spelling counts: the unused low bits of the last character would
    # otherwise give one token several accepted forms.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != text:
        return None
    return raw
