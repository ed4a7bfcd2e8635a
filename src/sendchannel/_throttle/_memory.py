"""MemoryStore: the sliding-window ledger in a dict, for the throttlers of one process.

This module is also the reference for the ledger algorithm that the SQLite and Redis stores carry out in
SQL and Lua. For each window ``(per, unit)`` of a key the ledger keeps its entries ``(slot, units, token)``
in slot order and their sum. To reserve a send taking ``units`` from each window at time ``now``:

1. Forget the entries whose window has passed (``slot <= now - per``), from the front.
2. The send may go no earlier than ``start``: the latest of ``now``, the pause, and the last entry's slot
   (slots never go backwards, so earlier askers go first and every check only looks back).
3. For each window whose sum plus ``units`` exceeds its count, walk its entries from the oldest,
   dropping them until the rest fit: the slot the last dropped one leaves the window
   (``slot + per``) is the earliest this window allows. The send's slot is the latest over all windows.
4. Within ``max_wait``: append the entry to every window at that slot; otherwise record nothing.

Each step costs O(1) amortised plus the entries dropped in step 3 (one, for sends of equal size), and the
ledger holds exactly what the windows hold, so memory stays flat however many sends go through.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable

from sendchannel._limits import Rate
from sendchannel._throttle._store import LOOK_ONLY, Costs, Reservation

__all__ = ["MemoryStore"]


class _Window:
    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: collections.deque[tuple[float, int, str]] = collections.deque()
        self.total = 0


class _Ledger:
    __slots__ = ("paused_until", "windows")

    def __init__(self) -> None:
        self.windows: dict[tuple[float, str], _Window] = {}
        self.paused_until = -math.inf


class MemoryStore:
    """Keeps the throttle ledgers in this process's memory: for throttlers that share one process.

    Several :class:`~sendchannel.Throttler` objects given the same MemoryStore share the budget of each
    key. It is safe for any number of tasks on one event loop (each call is atomic: it never awaits), and
    its memory holds only what the windows hold.

    Example::

        store = MemoryStore()
        alice = Throttler(office365_channel, store=store)
        again = Throttler(another_channel_for_alice, store=store)   # same key: one budget
    """

    def __init__(self) -> None:
        self._ledgers: dict[str, _Ledger] = {}
        self._tokens = itertools.count(1)

    async def reserve(
        self, key: str, costs: Costs, *, now: Callable[[], float], max_wait: float
    ) -> Reservation:
        """Record a send at the earliest slot where it fits every window, if within ``max_wait``."""
        return self._reserve_at(key, costs, now(), max_wait)

    def _reserve_at(self, key: str, costs: Costs, now: float, max_wait: float) -> Reservation:
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = _Ledger()
        start = now if now > ledger.paused_until else ledger.paused_until
        windows: list[_Window] = []
        for rate, _ in costs:
            window = ledger.windows.get((rate.per, rate.unit))
            if window is None:
                window = ledger.windows[rate.per, rate.unit] = _Window()
            entries = window.entries
            cut = now - rate.per
            while entries and entries[0][0] <= cut:
                window.total -= entries.popleft()[1]
            if entries and entries[-1][0] > start:
                start = entries[-1][0]
            windows.append(window)

        at = start
        limited_by: Rate | None = None
        for (rate, units), window in zip(costs, windows, strict=True):
            excess = window.total + units - rate.count
            if excess <= 0:
                continue
            free_at = _free_at(window, excess, rate)
            if free_at > at:
                at = free_at
                limited_by = rate

        if at - now > max_wait:
            return Reservation(granted=False, at=at, limited_by=limited_by)
        token = str(next(self._tokens))
        for (_, units), window in zip(costs, windows, strict=True):
            window.entries.append((at, units, token))
            window.total += units
        return Reservation(granted=True, at=at, token=token, limited_by=limited_by)

    async def next_permit(self, key: str, costs: Costs, *, now: Callable[[], float]) -> Reservation:
        """When a send taking ``costs`` would get its slot; records nothing."""
        # A slot is never before now, so no slot is within a negative max_wait: nothing is recorded.
        return self._reserve_at(key, costs, now(), LOOK_ONLY)

    async def release(self, key: str, costs: Costs, token: str) -> None:
        """Forget a recorded send that never reached the provider."""
        ledger = self._ledgers.get(key)
        if ledger is None:
            return
        for rate, _ in costs:
            window = ledger.windows.get((rate.per, rate.unit))
            if window is None:
                continue
            for index, (_, units, entry_token) in enumerate(window.entries):
                if entry_token == token:
                    del window.entries[index]
                    window.total -= units
                    break

    async def pause(self, key: str, seconds: float, *, now: Callable[[], float]) -> None:
        """Give ``key`` no slot before ``seconds`` from now."""
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = _Ledger()
        ledger.paused_until = max(ledger.paused_until, now() + seconds)

    async def verify(self) -> None:
        """Nothing to reach: always succeeds."""

    async def aclose(self) -> None:
        """Nothing to release (the ledgers stay usable)."""

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._ledgers)})"


def _free_at(window: _Window, excess: int, rate: Rate) -> float:
    for slot, units, _ in window.entries:
        excess -= units
        if excess <= 0:
            return slot + rate.per
    raise ValueError(f"a send of {excess + rate.count} {rate.unit} can never fit the limit of {rate}")
