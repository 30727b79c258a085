"""maild as an operator runs it, for the tests that start real processes: a config file for
`maild run` / `maild work`, a free port, and waiting for a condition or a listening port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def run_config(path: Path, *, smtp_port: int | None = None, outbound: str = "",
               extra: str = "", database: str = "sqlite:///maild.db") -> Path:
    """A config on a SQLite file (or `database`) and a data folder beside it: one group,
    one manager."""
    listen = f'[inbound.smtp]\nlisten = "127.0.0.1:{smtp_port}"\n' if smtp_port else ""
    path.write_text(f"""
[storage]
database = "{database}"
data_dir = "data"
[security]
secret_key = "a-test-secret-key-0123456789"
{listen}[outbound]
from = "support@example.com"
reply_domain = "example.com"
{outbound}
[[groups]]
name = "Support"
addresses = ["support@example.com"]
default_owner = "ramon"
[[users]]
login = "ramon"
name = "Ramón"
emails = ["ramon@example.com"]
groups = {{ Support = "manage" }}
{extra}""", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def wait_listening(proc: subprocess.Popen[bytes], port: int, seconds: float = 20.0) -> None:
    """Until `port` takes connections, or the process has died."""
    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return proc.poll() is not None

    wait_for(listening, seconds)
