"""The maildir sink: what it writes is a maildir any mail reader opens, nothing half-written."""

from __future__ import annotations

import asyncio
import mailbox
import os
from pathlib import Path

import pytest

from maild.errors import TransientDeliveryError
from maild.outbound.compose import Composed
from maild.outbound.transport import MaildirSink


def composed(n: int) -> Composed:
    body = f"Subject: [#{n}] Printer\r\nMessage-ID: <n{n}@example.com>\r\n\r\nHello {n}\r\n"
    return Composed(envelope_from="bounce+x@example.com", recipients=("a@customer.example",),
                    message=body.encode())


def test_sink_writes_a_maildir_that_mailbox_reads(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "outbox")

    async def send_all() -> None:
        await asyncio.gather(*(sink.send(composed(n)) for n in range(20)))

    asyncio.run(send_all())
    box = mailbox.Maildir(str(tmp_path / "outbox"), create=False)
    got = sorted(int(m["Message-ID"][2:-13]) for m in box)
    assert got == list(range(20))  # unique names, even for mails in the same microsecond
    one = next(m for m in box if m["Message-ID"] == "<n3@example.com>")
    assert one["Return-Path"] == "<bounce+x@example.com>"
    assert one["Delivered-To"] == "a@customer.example"
    assert one.get_payload().strip() == "Hello 3"
    assert os.listdir(tmp_path / "outbox" / "tmp") == []


def test_sink_failure_is_transient_and_leaves_nothing(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "outbox")
    (tmp_path / "outbox" / "new").rmdir()  # e.g. removed by hand while the daemon runs
    with pytest.raises(TransientDeliveryError, match="maildir"):
        asyncio.run(sink.send(composed(1)))
    assert os.listdir(tmp_path / "outbox" / "tmp") == []
