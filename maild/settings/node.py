"""`[node]`: this node's name and the rhythm of its heartbeat and leases."""

from __future__ import annotations

from typing import Any

from maild.errors import ConfigError
from maild.settings.model import NodeSettings
from maild.settings.section import _Section

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _node(raw: Any) -> NodeSettings:
    s = _Section(raw, "node", {"name", "heartbeat_seconds", "lease_seconds"})
    name = s.get("name", str, None)
    if name is not None and (not name or len(name) > 100 or set(name) - NAME_CHARS):
        raise ConfigError("node.name", "must be 1 to 100 letters, digits, '.', '-' or '_'")
    beat = float(s.get("heartbeat_seconds", float, NodeSettings.heartbeat_seconds))
    lease = float(s.get("lease_seconds", float, NodeSettings.lease_seconds))
    if beat <= 0:
        raise ConfigError("node.heartbeat_seconds", "must be more than 0")
    if lease < 2 * beat:
        raise ConfigError("node.lease_seconds", "must be at least twice heartbeat_seconds "
                                                "(a lease must outlive one missed beat)")
    return NodeSettings(name=name, heartbeat_seconds=beat, lease_seconds=lease)
