"""Waking a worker process from another: one pipe per worker, made by `maild run`.

The listener rings the journal processor after each journal commit, and the processor rings
the delivery worker after each batch, so neither worker polls the database many times a
second to notice new work (an idle daemon's two workers did so 20 times a second each). The
parent keeps both ends of every pipe open for its whole life: a worker that dies and is
restarted finds its doorbell where it was, and ringing never fails with a broken pipe.
A worker still polls, slowly, for work that nobody rings about (the CLI, scheduled jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class Bell:
    """The ringing end: one byte, never blocking (a full pipe has a wake pending already)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, b"\0")


def answer(fd: int, on_ring: Callable[[], None],
           on_hangup: Callable[[], None]) -> Callable[[], None]:
    """Call `on_ring` on the running loop whenever the doorbell `fd` rings, and `on_hangup`
    once when nobody can ring it any more (every write end closed: `maild run` is gone,
    killed without a chance to stop its workers). Returns the function that stops listening."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    listening = True

    def stop() -> None:
        nonlocal listening
        if listening:
            listening = False
            loop.remove_reader(fd)

    def readable() -> None:
        try:
            while os.read(fd, 4096):  # every ring since the last: one wake is enough
                pass
        except BlockingIOError:  # drained; the bell can still ring
            on_ring()
            return
        stop()  # end of file: a pipe without writers is readable for ever
        on_hangup()

    loop.add_reader(fd, readable)
    return stop


BUSY_SECONDS = 1.0  # work found this recently: mail is flowing


async def pause(wake: asyncio.Event, *, tick: float, busy_poll: float | None,
                since_work: float) -> None:
    """A worker's wait before it looks for work again. While work flows (found within
    `BUSY_SECONDS`) and `busy_poll` is set, a fixed short sleep that rings do not cut short:
    a ring comes with every journal commit, and answering each at once made the processor
    commit smaller batches, each taking the writer lock from the SMTP intake once more.
    Otherwise until the next ring (`wake`), or `tick` at the latest."""
    if busy_poll is not None and since_work < BUSY_SECONDS:
        await asyncio.sleep(busy_poll)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), tick)
