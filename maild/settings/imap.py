"""The `[[inbound.imap]]` mailbox sources: server and TLS, the one secret, what to do with a
mail once read, and how often and how much to fetch."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

from maild.errors import ConfigError
from maild.settings.model import ImapSettings
from maild.settings.section import _path, _Section

IMAP_KEYS = {f for f in ImapSettings.__dataclass_fields__}
SECRET_KEYS = ("password", "password_file", "password_env", "oauth2_command")


def _imap(raw: Any, base: Path) -> tuple[ImapSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("inbound.imap", "must be an array of tables ([[inbound.imap]])")
    return tuple(_mailbox(item, f"inbound.imap[{i}]", base) for i, item in enumerate(raw))


def _mailbox(item: Any, key: str, base: Path) -> ImapSettings:
    """One `[[inbound.imap]]` table; its checks run in the order the keys are reported."""
    s = _Section(item, key, IMAP_KEYS)
    host = s.require("host", str)
    tls = _tls(s, key, host)
    port = s.get("port", int, 993 if tls == "implicit" else 143)
    _check_one_secret(s, key)
    after, move_to = _after_reading(s, key)
    env, pw_file = _secret_source(s, key, base)
    poll, batch = _fetching(s, key)
    return ImapSettings(
        host=host, port=port, tls=tls, user=s.require("user", str),
        group=s.require("group", str), password=s.get("password", str, None),
        password_file=pw_file, password_env=env,
        oauth2_command=s.get("oauth2_command", str, None),
        folder=s.get("folder", str, "INBOX"), after=after, move_to=move_to,
        poll_seconds=poll, idle=s.get("idle", bool, True), ca_file=_path(s, "ca_file", base),
        batch=batch, since=_since(s, key))


def _tls(s: _Section, key: str, host: str) -> str:
    tls = s.get("tls", str, "implicit")
    if tls not in ("implicit", "starttls", "none"):
        raise ConfigError(f"{key}.tls", "must be \"implicit\", \"starttls\" or \"none\"")
    if tls == "none" and host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"{key}.tls", "\"none\" sends the password in clear: only for "
                                        "a server on this machine (127.0.0.1)")
    return str(tls)


def _check_one_secret(s: _Section, key: str) -> None:
    if len([k for k in SECRET_KEYS if k in s.raw]) != 1:
        raise ConfigError(f"{key}.password", "give exactly one of password, password_file, "
                                             "password_env, oauth2_command")


def _after_reading(s: _Section, key: str) -> tuple[str, str | None]:
    """What becomes of a mail once read: moved (to which folder), marked seen, or deleted."""
    after = s.get("after", str, "seen")
    if after not in ("move", "seen", "delete"):
        raise ConfigError(f"{key}.after", "must be \"move\", \"seen\" or \"delete\"")
    move_to = s.get("move_to", str, None)
    if after == "move" and not move_to:
        raise ConfigError(f"{key}.move_to", "is required with after = \"move\"")
    return after, move_to


def _secret_source(s: _Section, key: str, base: Path) -> tuple[str | None, Path | None]:
    """The password's environment variable and file, checked to exist now rather than at
    the first login."""
    env = s.get("password_env", str, None)
    if env is not None and env not in os.environ:
        raise ConfigError(f"{key}.password_env", f"the environment has no {env}")
    pw_file = _path(s, "password_file", base)
    if pw_file is not None and not pw_file.is_file():
        raise ConfigError(f"{key}.password_file", f"cannot read {pw_file}")
    return env, pw_file


def _fetching(s: _Section, key: str) -> tuple[float, int]:
    """How often the mailbox is polled and how many mails one fetch takes."""
    poll = s.get("poll_seconds", float, 60.0)
    if poll <= 0:
        raise ConfigError(f"{key}.poll_seconds", "must be positive")
    batch = s.get("batch", int, 100)
    if not 1 <= batch <= 500:  # aioimaplib's parser recurses per line: ~1000 overflow
        raise ConfigError(f"{key}.batch", "must be between 1 and 500")
    return poll, batch


def _since(s: _Section, key: str) -> date | None:
    """`since = 2026-12-01` (a TOML date) or "2026-12-01"."""
    value = s.raw.get("since")
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}.since", f"must be a date, YYYY-MM-DD, got {value!r}")
