"""Who may hold a session at the SMTP listener, and how the listener speaks of the others.

Every session holds a file descriptor and a task for as long as the client keeps it open,
so idle connections by the thousand used up the process's descriptors: the next client,
/healthz and the database all failed. The `Gate` caps the sessions open at once, in all and
per client address (a session past either cap gets `421 4.7.0` as its greeting and is closed
at once), and counts them in `ConnectionStats` for /metrics.

A flood must not flood the log either. Refused and timed-out connections, and the protocol
warnings aiosmtpd logs for each bad command ("mail.log"), go to a `FloodLog`: the first of an
episode is logged at once, the rest are summed up in one line a minute while they go on.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("maild.smtp")

# Descriptors kept for everything of the listener's process that is not an SMTP session:
# the database pool (20 PostgreSQL connections, or SQLite files), the web part and its
# clients, IMAP connections, the workers' pipes, logs, attachments being written.
FD_RESERVE = 200
SUMMARY_SECONDS = 60.0
TOP_ADDRESSES = 1000  # addresses counted per summary, so a spoofed spread costs no memory


class ListenerSettings(Protocol):
    """What the limits are read from (`[inbound.smtp]`'s `SmtpSettings` has it)."""

    @property
    def max_connections(self) -> int: ...
    @property
    def max_connections_per_ip(self) -> int: ...
    @property
    def command_timeout_seconds(self) -> float: ...
    @property
    def data_timeout_seconds(self) -> float: ...
    @property
    def max_line_length(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class ListenerLimits:
    """The defaults are `SmtpSettings`' (tests/inbound/test_listener.py checks they agree)."""

    max_connections: int = 1000
    max_connections_per_ip: int = 50  # 0: no limit
    command_timeout: float = 300.0
    data_timeout: float = 300.0
    max_line_length: int = 2048  # CRLF not counted

    @classmethod
    def of(cls, smtp: ListenerSettings) -> ListenerLimits:
        return cls(max_connections=smtp.max_connections,
                   max_connections_per_ip=smtp.max_connections_per_ip,
                   command_timeout=smtp.command_timeout_seconds,
                   data_timeout=smtp.data_timeout_seconds,
                   max_line_length=smtp.max_line_length)


@dataclass
class ConnectionStats:
    """The listener's sessions, for /metrics: open now, and totals since the start."""

    open: int = 0
    limit: int = 0  # max_connections as applied (lowered if the open files limit is low)
    accepted: int = 0
    refused: int = 0  # over max_connections or max_connections_per_ip: 421
    timed_out: int = 0  # silent past the command or data timeout: 421, closed


class FloodLog:
    """Events that come by the thousand in a flood (refusals, timeouts, protocol errors),
    logged as one line when an episode starts and one summary a minute while it lasts."""

    def __init__(self, stats: ConnectionStats, interval: float = SUMMARY_SECONDS) -> None:
        self.stats, self.interval = stats, interval
        self._counts: Counter[str] = Counter()
        self._peers: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def note(self, what: str, peer: str, detail: str, *, level: int = logging.WARNING,
             exc_info: BaseException | None = None) -> None:
        """One event: `what` names its kind in the summary, `detail` says it in full."""
        if self._timer is None:  # a new episode: this one in full, the rest summed up
            log.log(level, "%s (%s); more of these are summed up every %g s", detail, peer,
                    self.interval, exc_info=exc_info)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not from the listener's loop: nothing to sum up with
                return
            self._timer = loop.call_later(self.interval, self._flush)
            return
        self._counts[what] += 1
        if peer in self._peers or len(self._peers) < TOP_ADDRESSES:
            self._peers[peer] += 1

    def _flush(self) -> None:
        if not self._counts:  # a whole interval without any: the episode is over
            self._timer = None
            return
        kinds = ", ".join(f"{n} {what}" for what, n in self._counts.most_common())
        top = ", ".join(f"{peer} ×{n}" for peer, n in self._peers.most_common(3))
        log.warning("in the last %g s: %s; most from %s; %d sessions open", self.interval,
                    kinds, top, self.stats.open)
        self._counts.clear()
        self._peers.clear()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Gate:
    """Admits sessions up to the caps; counts them; notes refusals and timeouts."""

    def __init__(self, limits: ListenerLimits, stats: ConnectionStats, hostname: str) -> None:
        self.limits, self.stats = limits, stats
        self.max_connections = usable_connections(limits.max_connections)
        stats.limit = self.max_connections
        self.flood = FloodLog(stats)
        self._per_ip: Counter[str] = Counter()
        name = hostname.encode("ascii", "replace")
        self._busy = b"421 4.7.0 %s Too many connections, try again later\r\n" % name
        self._busy_ip = (b"421 4.7.0 %s Too many connections from your address, try again "
                         b"later\r\n" % name)
        self.timeout_reply = b"421 4.4.2 %s Error: timeout exceeded\r\n" % name

    @property
    def full(self) -> bool:
        return self.stats.open >= self.max_connections

    def enter(self, ip: str) -> bytes | None:
        """Admit a session from `ip` (then `leave` it once), or the 421 greeting to refuse it."""
        per_ip = self.limits.max_connections_per_ip
        if self.stats.open >= self.max_connections:
            self._refused(ip, f"connection refused: {self.stats.open} sessions open "
                              f"(max_connections = {self.max_connections})")
            return self._busy
        if per_ip and self._per_ip[ip] >= per_ip:
            self._refused(ip, f"connection refused: {self._per_ip[ip]} sessions open from "
                              f"this address (max_connections_per_ip = {per_ip})")
            return self._busy_ip
        self._per_ip[ip] += 1
        self.stats.open += 1
        self.stats.accepted += 1
        return None

    def refuse_early(self, ip: str) -> bytes:
        """The 421 for a connection turned away before a session was made for it (`full`)."""
        self._refused(ip, f"connection refused: {self.stats.open} sessions open "
                          f"(max_connections = {self.max_connections})")
        return self._busy

    def leave(self, ip: str) -> None:
        self.stats.open -= 1
        left = self._per_ip[ip] - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]

    def timed_out(self, ip: str, in_data: bool) -> None:
        self.stats.timed_out += 1
        if in_data:
            self.flood.note("timed out in DATA", ip, "session closed: silent within DATA for "
                            f"{self.limits.data_timeout:g} s (data_timeout_seconds)")
        else:
            self.flood.note("timed out", ip, "session closed: no command for "
                            f"{self.limits.command_timeout:g} s (command_timeout_seconds)")

    def _refused(self, ip: str, detail: str) -> None:
        self.stats.refused += 1
        self.flood.note("refused", ip, detail)


def usable_connections(wanted: int) -> int:
    """`wanted`, if the process may open that many descriptors and FD_RESERVE more; else the
    soft limit (`ulimit -n`) is raised toward the hard one, and if that is not enough the cap
    is lowered to what fits, with a warning: running out of descriptors fails every part of
    the process at once, a cap fails only the sessions past it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d for max_connections = %d", soft,
                     target, wanted)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit (%d): %s", soft, exc)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fits = max(soft - FD_RESERVE, 1)
    log.warning("max_connections lowered from %d to %d: the process may open only %d files "
                "(raise `ulimit -n`, or LimitNOFILE= in a systemd unit)", wanted, fits, soft)
    return fits


class ProtocolNoise(logging.Filter):
    """aiosmtpd's own log ("mail.log") says something at INFO for every connection and
    command, and at WARNING for every bad one ("unrecognised: FOO", "too many bogus
    commands"): a line per command of a flood. Installed on that logger by the listener, it
    lets only its errors through and counts the warnings in the flood summary; with maild's
    own listener log at DEBUG (`maild --verbose`) everything goes through, as aiosmtpd says it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flood: FloodLog | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or log.isEnabledFor(logging.DEBUG):
            return True
        if record.levelno >= logging.WARNING and self.flood is not None:
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            self.flood.note("protocol errors", ip, "protocol error: "
                            + ascii(record.getMessage())[1:-1][:200])
        return False


NOISE = ProtocolNoise()


def quiet_aiosmtpd(flood: FloodLog) -> None:
    """Route aiosmtpd's per-connection log lines into `flood` (see `ProtocolNoise`)."""
    NOISE.flood = flood
    aiosmtpd_log = logging.getLogger("mail.log")
    if NOISE not in aiosmtpd_log.filters:
        aiosmtpd_log.addFilter(NOISE)
