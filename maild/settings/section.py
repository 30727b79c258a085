"""Typed access to one TOML table, and small checks shared by the section readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maild.errors import ConfigError


class _Section:
    """Typed access to one TOML table that remembers its dotted key for error messages."""

    def __init__(self, raw: Any, key: str, allowed: set[str]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(key, "must be a table")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}" if key else unknown[0], "unknown key")
        self.raw = raw
        self.key = key

    def _name(self, k: str) -> str:
        return f"{self.key}.{k}" if self.key else k

    def get(self, k: str, kind: type, default: Any) -> Any:
        if k not in self.raw:
            return default
        v = self.raw[k]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ConfigError(self._name(k), f"must be {kind.__name__}, got {v!r}")
        return v

    def require(self, k: str, kind: type) -> Any:
        if k not in self.raw:
            raise ConfigError(self._name(k), "is required")
        return self.get(k, kind, None)

    def strings(self, k: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = self.get(k, list, None)
        if v is None:
            return default
        if not all(isinstance(x, str) and x.strip() for x in v):
            raise ConfigError(self._name(k), "must be a list of non-empty strings")
        return tuple(x.strip() for x in v)


def _path(s: _Section, k: str, base: Path) -> Path | None:
    v = s.get(k, str, None)
    return None if v is None else (Path(v) if Path(v).is_absolute() else base / v)


def _host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(key, f"must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _count(s: _Section, k: str) -> int:
    v = s.get(k, int, 0)
    if v < 0:
        raise ConfigError(s._name(k), "must be 0 (no limit) or more")
    return int(v)


def _choice(s: _Section, k: str, choices: tuple[str, ...], default: str) -> str:
    v = s.get(k, str, default)
    if v not in choices:
        raise ConfigError(s._name(k), "must be " + " or ".join(f'"{c}"' for c in choices))
    return str(v)


def _check_address(addr: str, key: str) -> None:
    local, at, domain = addr.partition("@")
    if not at or not local or not domain or " " in addr or "," in addr:
        raise ConfigError(key, f"{addr!r} is not an e-mail address")
