"""config.toml → frozen dataclasses, validated, each error naming its key.

`load_settings(None)` gives the built-in defaults (`./maild-data`, SQLite, SMTP on
127.0.0.1:2525, a maildir sink) so `maild run` works on a fresh machine.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maild.errors import ConfigError
from maild.settings.core import (
    _command_auth,
    _groups,
    _inbound,
    _limits,
    _outbound,
    _satisfaction,
    _secret,
    _site,
    _status_map,
    _storage,
    _tickets,
    _users,
    _web,
)
from maild.settings.features import _fields, _holidays, _scheduler, _slas, _types, _workflow
from maild.settings.model import (
    DEFAULT_DATA_DIR,
    CommandAuth,
    GroupSettings,
    HolidaySettings,
    ImapSettings,
    InboundSettings,
    LimitSettings,
    NodeSettings,
    OutboundSettings,
    SatisfactionSettings,
    SchedulerSettings,
    Settings,
    SiteSettings,
    SlaSettings,
    SmtpSettings,
    StorageSettings,
    TicketSettings,
    UserSettings,
    WebSettings,
)
from maild.settings.node import _node
from maild.settings.section import _Section


def load_settings(path: Path | None, cwd: Path | None = None) -> Settings:
    """Read and validate a config file; None gives the embedded defaults."""
    if path is None:
        return default_settings(cwd or Path.cwd())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "no such config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse_settings(raw, base=path.parent.resolve(), source=path)


def default_settings(cwd: Path) -> Settings:
    data_dir = (cwd / DEFAULT_DATA_DIR).resolve()
    raw: dict[str, Any] = {
        "site": {"name": "maild"},
        "storage": {"database": f"sqlite:///{data_dir / 'maild.db'}", "data_dir": str(data_dir)},
        "security": {"secret_key": read_or_create_secret(data_dir)},
        "outbound": {"from": "support@localhost", "reply_local": "support",
                     "reply_domain": "localhost"},
        "groups": [{"name": "Support", "addresses": ["support@localhost"],
                    "default_owner": "admin"}],
        "users": [{"login": "admin", "name": "Administrator", "emails": ["admin@localhost"],
                   "groups": {"Support": "manage"}, "admin": True}],
    }
    return parse_settings(raw, base=cwd, source=None)


def read_or_create_secret(data_dir: Path) -> str:
    """The secret of a config-less install, made once and kept in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
    return path.read_text(encoding="ascii").strip()


TOP_KEYS = {"site", "storage", "security", "inbound", "outbound", "limits", "tickets",
            "groups", "users", "status_map", "sla", "holidays", "scheduler", "web",
            "satisfaction", "types", "custom_fields", "workflow", "node"}


def parse_settings(raw: Mapping[str, Any], *, base: Path, source: Path | None) -> Settings:
    top = _Section(dict(raw), "", TOP_KEYS)
    site = _site(_Section(top.raw.get("site"), "site", {"name", "url", "timezone"}))
    storage = _storage(
        _Section(top.raw.get("storage"), "storage", {
            "database", "data_dir", "attachments", "attachments_dir",
            "attachments_dir_shared"}), base)
    sec = _Section(top.raw.get("security"), "security", {
        "secret_key", "secret_file", "command_authentication", "authserv_id"})
    secret = _secret(sec, base)
    command_auth = _command_auth(sec)
    inbound = _inbound(top.raw.get("inbound"), base)
    outbound = _outbound(_Section(top.raw.get("outbound"), "outbound", {
        "from", "from_name", "reply_local", "reply_domain", "relay", "relay_user",
        "relay_password", "retry_deadline_hours", "concurrency",
        "nice", "burst_hold_seconds"}))
    limits = _limits(top.raw.get("limits"))
    tickets = _tickets(top.raw.get("tickets"))
    users = _users(top.raw.get("users", []))
    global_fields = _fields(top.raw.get("custom_fields", []), "custom_fields")
    types = _types(top.raw.get("types", []), global_fields)
    slas = _slas(top.raw.get("sla", []))
    groups = _groups(top.raw.get("groups", []), users, slas, base)
    for i, box in enumerate(inbound.imap):
        if not any(g.name == box.group for g in groups):
            raise ConfigError(f"inbound.imap[{i}].group", f"no [[groups]] entry is named "
                                                          f"{box.group!r}")
    return Settings(site=site, storage=storage, secret_key=secret, inbound=inbound,
                    outbound=outbound, limits=limits, tickets=tickets, groups=groups,
                    users=users, status_map=_status_map(top.raw.get("status_map")),
                    command_auth=command_auth, slas=slas, types=types,
                    workflow=_workflow(top.raw.get("workflow", []), users, groups, types,
                                       tickets),
                    custom_fields=global_fields,
                    holidays=_holidays(top.raw.get("holidays")),
                    scheduler=_scheduler(top.raw.get("scheduler")), web=_web(top.raw.get("web")),
                    satisfaction=_satisfaction(top.raw.get("satisfaction")),
                    node=_node(top.raw.get("node")), source=source)


__all__ = [
    "DEFAULT_DATA_DIR",
    "CommandAuth",
    "GroupSettings",
    "HolidaySettings",
    "ImapSettings",
    "InboundSettings",
    "LimitSettings",
    "NodeSettings",
    "OutboundSettings",
    "SatisfactionSettings",
    "SchedulerSettings",
    "Settings",
    "SiteSettings",
    "SlaSettings",
    "SmtpSettings",
    "StorageSettings",
    "TicketSettings",
    "UserSettings",
    "WebSettings",
    "default_settings",
    "load_settings",
    "parse_settings",
    "read_or_create_secret",
]
