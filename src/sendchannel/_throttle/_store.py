"""The interface between the Throttler and the place its ledger lives.

A store keeps, for each key (one credential's budget), a sliding-window ledger per ``(per, unit)`` window:
the slot time and units of every send it let through that is still inside its window, the sum of those
units, and a pause-until time. It answers one question atomically, :meth:`ThrottleStore.reserve`: when is
the earliest moment a send taking these units from every window fits, no earlier than any send already in
the ledger (so waiters go in order) and not inside a pause? If that moment is within ``max_wait`` it records
the send there and returns the slot; otherwise it records nothing. The caller sleeps until the slot and sends.

Reserving a *future* slot (rather than polling "may I send now?") is what makes the budget fair and
work-conserving across processes and machines: the first to ask gets the earliest slot, nobody spins, and a
send that had to wait still costs one round trip to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from sendchannel._limits import Rate

__all__ = ["LOOK_ONLY", "Costs", "Reservation", "ThrottleStore", "window_name"]

#: The max_wait that asks a store's reserve for the slot without taking it (every slot is >= now): how the
#: stores answer ``next_permit``.
LOOK_ONLY = -1.0

#: What one send takes: for each rate, the units it costs (1 for "messages", its recipients otherwise).
Costs = Sequence[tuple[Rate, int]]


@attrs.frozen
class Reservation:
    """A store's answer to :meth:`ThrottleStore.reserve`.

    Args:
        granted: Whether the send was recorded at ``at`` (False when ``at`` is further than ``max_wait``;
            then nothing was recorded).
        at: The earliest moment the send may go, in the time of the ``now`` callable the caller passed (a
            store that keeps its own time translates its answer into the caller's).
        token: Names the recorded send for :meth:`ThrottleStore.release`; None when not granted.
        limited_by: The rate whose window set ``at``, or None when nothing did or a pause (or sends
            queued earlier) did.
    """

    granted: bool
    at: float
    token: str | None = None
    limited_by: Rate | None = None


@runtime_checkable
class ThrottleStore(Protocol):
    """Where a Throttler keeps its sliding-window ledgers; implement it to keep them somewhere new.

    The rules every store follows (``sendchannel.testing.conformance.StoreContract`` checks them):

    - :meth:`reserve` is atomic: a send takes its units from every window, or from none.
    - In every window of ``rate.per`` seconds the units recorded for a key add up to at most
      ``rate.count``, for every rate a caller passes.
    - Slots never go backwards for a key, and each is the earliest one possible, so sends go in the order
      they asked and no quota is left idle.
    - Entries are forgotten once their window has passed: a store's size follows what the windows hold,
      not how many sends there were.

    Rates are told apart by ``(per, unit)``: two callers that pass ``Rate(30, 60)`` and ``Rate(20, 60)``
    share the ``60 s, messages`` window of the key, each checking its own count.
    """

    async def reserve(
        self, key: str, costs: Costs, *, now: Callable[[], float], max_wait: float
    ) -> Reservation:
        """Record a send at the earliest slot where it fits every window, if that is within ``max_wait``.

        Args:
            key: The budget (usually ``"{channel.name}:{identity}"``).
            costs: For each rate, the units this send takes; ``(per, unit)`` pairs are distinct and no
                units exceed their rate's count.
            now: The caller's clock; stores that keep their own time (Redis) use it only to translate
                their answer.
            max_wait: The furthest slot, in seconds from now, the caller accepts (``math.inf`` for any).

        Raises:
            SendError: The store cannot be reached (``ConnectionLostError``); nothing was recorded.
        """
        ...

    async def next_permit(self, key: str, costs: Costs, *, now: Callable[[], float]) -> Reservation:
        """Say when a send taking ``costs`` would get its slot, waiting for nothing and recording nothing.

        The answer is the slot :meth:`reserve` would give at this moment (``at``, in the caller's time,
        and ``limited_by``), with ``granted`` False and no token. A store may forget entries whose window
        has passed while it looks, as :meth:`reserve` does; it never records a send or a pause.

        Raises:
            SendError: The store cannot be reached (``ConnectionLostError``).
        """
        ...

    async def release(self, key: str, costs: Costs, token: str) -> None:
        """Forget a recorded send that never reached the provider, giving its units back."""
        ...

    async def pause(self, key: str, seconds: float, *, now: Callable[[], float]) -> None:
        """Give the key no slot before ``seconds`` from now (a pause never shortens an earlier one)."""
        ...

    async def verify(self) -> None:
        """Reach the store, recording nothing; raise a ``SendError`` saying what is wrong if it cannot."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the store cannot be used afterwards."""
        ...


def window_name(rate: Rate) -> str:
    """The name a store gives the window of ``rate``: its length and unit (``"60.0/messages"``)."""
    return f"{rate.per!r}/{rate.unit}"
