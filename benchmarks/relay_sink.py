"""A loopback SMTP relay sink for the benchmarks: aiosmtpd in a process of its own.

It accepts every message (``250``), counts messages and bytes and keeps the Message-ID of
each, so a benchmark can check that N notifications arrived exactly once. It runs in a
separate process so that it does not share the benchmarked process's GIL.

Used from the other benchmark scripts through :class:`SinkProcess`; it can also be run by
hand to give a manual test a relay (it prints ``PORT <n>`` and then answers commands read
from standard input, one per line: ``stats``, ``ids``, ``reset``, ``quit``)::

    .venv/bin/python benchmarks/relay_sink.py --port 2526
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")


@dataclass
class Counter:
    """The aiosmtpd handler: accepts everything, remembers what it saw."""

    messages: int = 0
    bytes: int = 0
    recipients: int = 0
    ids: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content or b""
        head = raw.split(b"\r\n\r\n", 1)[0]
        m = MESSAGE_ID.search(head)
        self.ids.append(m.group(1).decode("ascii", "replace").strip() if m else "")
        self.messages += 1
        self.bytes += len(raw)
        self.recipients += len(envelope.rcpt_tos)
        return "250 2.0.0 OK"

    def stats(self) -> dict[str, Any]:
        ids = self.ids
        return {"messages": self.messages, "bytes": self.bytes, "recipients": self.recipients,
                "unique_ids": len(set(ids)), "missing_ids": sum(1 for i in ids if not i)}


async def _serve(host: str, port: int) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    counter = Counter()

    def factory() -> SMTP:
        return SMTP(counter, hostname="relay-sink", enable_SMTPUTF8=True, decode_data=False,
                    data_size_limit=0, ident="relay-sink")

    server = await loop.create_server(factory, host=host, port=port)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.strip()
        if cmd == "stats":
            print(json.dumps(counter.stats()), flush=True)
        elif cmd == "ids":
            print(json.dumps(counter.ids), flush=True)
        elif cmd == "reset":
            counter.messages = counter.bytes = counter.recipients = 0
            counter.ids = []
            print("{}", flush=True)
        elif cmd == "quit" or not line:  # an explicit quit, or EOF: the parent went away
            break
    server.close()
    await server.wait_closed()


class SinkProcess:
    """Starts the sink as a child process and talks to it over its stdin/stdout."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--host", host, "--port", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            self.close()
            raise RuntimeError(f"relay sink did not start (said {first!r})")
        self.host = host
        self.port = int(first[1])

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def _ask(self, cmd: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._ask("stats")
        return result

    def ids(self) -> list[str]:
        result: list[str] = self._ask("ids")
        return result

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (0)")
    a = ap.parse_args(argv)
    try:
        asyncio.run(_serve(a.host, a.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
