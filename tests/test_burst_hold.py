"""The delivery process's burst hold, with time passed in."""

from __future__ import annotations

from maild.outbound.burst import BurstHold


def feed(hold: BurstHold, per_second: float, seconds: float, *, start: float = 0.0,
         first_id: int = 0, poll: float = 0.05) -> list[tuple[float, bool]]:
    """Poll every `poll` s while mail arrives at `per_second`; (time, holding) per poll."""
    out = []
    t = start
    while t < start + seconds - 1e-9:
        out.append((round(t, 3), hold.holding(first_id + int((t - start) * per_second), t)))
        t += poll
    return out


def test_a_trickle_of_mail_never_holds_notifications() -> None:
    hold = BurstHold(hold_seconds=30)
    assert not any(h for _, h in feed(hold, per_second=5, seconds=10))
    # three mails at once (a customer and two colleagues on copy) are no burst either
    assert not hold.holding(53, 10.0)
    assert not hold.holding(53, 10.05)


def test_a_burst_holds_until_it_ends() -> None:
    hold = BurstHold(hold_seconds=30)
    polls = feed(hold, per_second=200, seconds=8)
    assert [h for t, h in polls if t >= 0.5] == [True] * len([t for t, _ in polls if t >= 0.5])
    # the burst is over: the next polls see no new mail, and notifications go out
    after = [hold.holding(1600, 8.0 + i * 0.05) for i in range(40)]
    assert after[-1] is False and after.index(False) < 25  # within ~1 s of the last mail


def test_a_long_burst_holds_notifications_for_at_most_hold_seconds() -> None:
    hold = BurstHold(hold_seconds=5)
    polls = feed(hold, per_second=100, seconds=12)
    held = [t for t, h in polls if h]
    assert held and max(held) < 5.5  # from the burst's start, not from each poll
    assert all(not h for t, h in polls if t >= 5.5)


def test_zero_never_holds() -> None:
    hold = BurstHold(hold_seconds=0)
    assert not any(h for _, h in feed(hold, per_second=500, seconds=3))
