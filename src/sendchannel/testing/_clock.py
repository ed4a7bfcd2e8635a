"""VirtualClock: time that passes only when every task is waiting on it."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["VirtualClock"]

# Rounds of the event loop with nothing else runnable before time jumps (used where the loop's ready
# queue cannot be inspected).
_IDLE_ROUNDS = 20


class VirtualClock:
    """A clock for tests whose sleeps take no real time.

    ``await clock.sleep(s)`` returns once virtual time reaches ``now() + s``. When every task is waiting
    on the clock, time jumps to the earliest deadline (an *autojump* clock, like trio's), so concurrent
    senders, throttlers and retry layers run a simulated day in milliseconds. ``advance(s)`` moves time
    forward by hand.

    Args:
        start: The virtual time to start at, in seconds (since the epoch, if you like).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._jumper: asyncio.Task[None] | None = None

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time reaches ``now() + seconds`` (at least one pass of the event loop)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), future))
        if self._jumper is None or self._jumper.done():
            self._jumper = loop.create_task(self._autojump(), name="VirtualClock.autojump")
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    async def _autojump(self) -> None:
        loop = asyncio.get_running_loop()
        idle = 0
        while True:
            await asyncio.sleep(0)
            self._drop_cancelled()
            if not self._sleepers:
                return
            ready = getattr(loop, "_ready", None)
            if ready is not None:
                if len(ready):
                    continue
            else:
                idle += 1
                if idle < _IDLE_ROUNDS:
                    continue
                idle = 0
            # Nothing else can run: every task is waiting on the clock (or on real I/O); jump.
            self._now = max(self._now, self._sleepers[0][0])
            self._wake_due()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r}, sleepers={len(self._sleepers)})"
