"""Doorbells between the daemon's processes: a ring never blocks, and wakes the other end."""

from __future__ import annotations

import asyncio
import os

from maild.doorbell import Bell, answer


async def test_rings_wake_the_other_end_and_never_block() -> None:
    r, w = os.pipe()
    try:
        bell = Bell(w)
        for _ in range(100_000):  # far more than the pipe holds: a worker busy or dead
            bell.ring()
        woken = asyncio.Event()
        calls = 0

        def rung() -> None:
            nonlocal calls
            calls += 1
            woken.set()

        stop = answer(r, rung, lambda: None)
        await asyncio.wait_for(woken.wait(), 5)
        await asyncio.sleep(0.05)
        assert calls == 1  # every ring waiting is one wake
        woken.clear()
        bell.ring()
        await asyncio.wait_for(woken.wait(), 5)
        assert calls == 2
        stop()
    finally:
        os.close(r)
        os.close(w)


async def test_a_doorbell_nobody_can_ring_hangs_up_once() -> None:
    r, w = os.pipe()
    try:
        rings, hangups = 0, asyncio.Event()

        def rung() -> None:
            nonlocal rings
            rings += 1

        answer(r, rung, hangups.set)
        os.close(w)  # the parent is gone
        await asyncio.wait_for(hangups.wait(), 5)
        await asyncio.sleep(0.05)  # a pipe at its end is readable for ever: not listened to
        assert rings == 0
    finally:
        os.close(r)
