"""While mail pours in, notifications wait (for a bounded time): intake comes first.

In a burst the two cores are the scarce thing: every SMTP session is waiting for its 250 and
every received mail for its ticket, while a notification can go out a few seconds later
without anyone noticing. The delivery process of `maild run` watches how fast journal rows
appear; at `BURST_MAILS_PER_SECOND` or more it stops sending, for at most `hold_seconds` from
the start of the burst, then sends normally even if the burst goes on. Nothing is dropped:
held notifications are outbox rows like any other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

BURST_MAILS_PER_SECOND = 20.0
WINDOW_SECONDS = 1.0  # the arrival rate is measured over this much of the recent past


@dataclass
class BurstHold:
    hold_seconds: float  # 0: never hold
    _seen: deque[tuple[float, int]] = field(default_factory=deque)  # (when, newest journal id)
    _since: float | None = None  # when the current burst began

    def holding(self, newest_id: int, now: float) -> bool:
        """Whether to hold notifications now; `newest_id`: the journal's newest row id,
        `now`: a monotonic clock reading (seconds)."""
        self._seen.append((now, newest_id))
        while len(self._seen) > 1 and now - self._seen[0][0] > WINDOW_SECONDS:
            self._seen.popleft()
        start_t, start_id = self._seen[0]
        elapsed = now - start_t
        # at least a quarter second of history, so that two mails 50 ms apart are no burst
        burst = (newest_id - start_id) / max(elapsed, 0.25) >= BURST_MAILS_PER_SECOND
        if not burst:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return self.hold_seconds > 0 and now - self._since < self.hold_seconds
