"""Ticket creation limits per group and user (pure; the spec's "Ticket creation limits").

Counted per creator within the group: tickets open now, and tickets opened in the last 365
days. 0 means no limit. `forced` refuses the new ticket; `warning` opens it and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_DAYS = 365


@dataclass(frozen=True, kw_only=True)
class Limits:
    open_tickets: int = 0
    total_tickets: int = 0  # over the last 365 days
    mode: str = "forced"  # forced | warning

    @property
    def any(self) -> bool:
        return bool(self.open_tickets or self.total_tickets)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    refuse: bool = False
    warning: str | None = None  # why the limit is passed, for the refusal or the notification


def judge(limits: Limits, *, open_now: int, opened_in_window: int, group: str) -> Verdict:
    """May one more ticket open, given what the creator has in the group already?"""
    reasons = []
    if limits.open_tickets and open_now >= limits.open_tickets:
        reasons.append(f"{open_now} open tickets in {group} (the limit is "
                       f"{limits.open_tickets})")
    if limits.total_tickets and opened_in_window >= limits.total_tickets:
        reasons.append(f"{opened_in_window} tickets in {group} over the last {WINDOW_DAYS} days "
                       f"(the limit is {limits.total_tickets})")
    if not reasons:
        return Verdict()
    why = "you have " + " and ".join(reasons)
    return Verdict(refuse=limits.mode == "forced", warning=why)
