"""Is a mail whose Message-ID was seen before the same mail again? (pure)

A Message-ID is chosen by the sender's client, so anybody can reuse one: alone it proves
nothing. A retried delivery is the same mail, though the relays on its way may have added
trace headers (Received, Authentication-Results…) that differ from the first time; so the
comparison is over what the mail says, as parsed, not over its raw bytes.
"""

from __future__ import annotations

import hashlib

from maild.domain import Parsed


def content_digest(parsed: Parsed) -> str:
    """A digest of the mail's author, addressees, subject, date, body and attachments."""
    h = hashlib.sha256()

    def add(value: str | bytes) -> None:
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    add(parsed.sender.addr.lower() if parsed.sender else "")
    add(parsed.sender.name if parsed.sender else "")
    add("\n".join(a.addr.lower() for a in parsed.to))
    add("\n".join(a.addr.lower() for a in parsed.cc))
    add(parsed.subject)
    add(parsed.date.isoformat() if parsed.date else "")
    add(parsed.text)
    add(parsed.html or "")
    for a in parsed.attachments:
        add(a.filename)
        add(a.content_type)
        add(hashlib.sha256(a.data).digest())
    return h.hexdigest()
