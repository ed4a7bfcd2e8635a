"""The interface between the Outbox and the database that holds its items.

An item's life in the store, and the one rule each step keeps:

- ``insert``: queued, committed before ``put`` returns.
- ``claim``: a worker leases due items (``claimed_by``, ``lease_until``); they stay ``queued``, so a worker
  that dies before handing them over leaves them to be claimed again once the lease ends.
- ``record``, a mark: ``sending``, committed just before the provider gets the message, and only if the
  worker still holds the item (nobody cancelled it or took it over); counts the attempt.
- ``record``, a settlement: the outcome (sent, failed, unknown) or back to the queue (a transient error, a
  spent budget), only by the worker that holds the item. A worker's marks and settlements made while its
  previous ``record`` was being written go together in the next one: one transaction.
- ``expire``: items left ``sending`` by a worker whose lease ended become ``unknown``, or, if they went
  through an idempotent channel, back to the queue (the provider recognises the repeat).

Times are seconds since the epoch, on the Outbox's clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, Protocol

import attrs

from sendchannel._outbox._item import OutboxItem, Status

__all__ = [
    "RESENT_NOTE",
    "UNKNOWN_ERROR",
    "Claimed",
    "Marking",
    "NewItem",
    "OutboxStore",
    "Settlement",
    "Summary",
]


#: The error of an item left ``sending`` by a worker whose lease ended (it becomes ``unknown``).
UNKNOWN_ERROR = (
    "DeliveryUnknownError: the worker sending it stopped before recording the outcome; the provider may or "
    "may not have the message, so it is not sent again."
)
#: The note on such an item sent through an idempotent channel (it goes back to the queue).
RESENT_NOTE = "The worker sending it stopped before recording the outcome; sent again (idempotent)."


@attrs.frozen
class NewItem:
    """An item to insert."""

    message_id: str
    owner: str | None
    priority: int
    send_at: float
    rendered: bytes = attrs.field(repr=False)
    envelope: str = attrs.field(repr=False)


@attrs.frozen
class Claimed:
    """An item a worker claimed: what it needs to send it."""

    id: int
    owner: str | None
    attempts: int
    first_attempt_at: float | None
    credential: str | None
    rendered: bytes = attrs.field(repr=False)
    envelope: str = attrs.field(repr=False)


@attrs.frozen
class Marking:
    """An item a worker is about to hand over: marked sending with these."""

    id: int
    idempotent: bool
    credential: str | None


@attrs.frozen
class Settlement:
    """An item's outcome (or its return to the queue), as a worker records it."""

    id: int
    status: Status
    attempts: int
    error: str | None = None
    result: str | None = None
    next_attempt_at: float | None = None
    credential: str | None = None


@attrs.frozen
class Summary:
    """Where an outbox stands, for ``sendchannel outbox``."""

    #: ``(owner, status) -> count``.
    counts: dict[tuple[str | None, str], int]
    #: The earliest ``next_attempt_at`` of the queued items (due or not), or None.
    oldest_queued: float | None
    #: How many queued items are due now.
    due: int
    #: Up to a few dozen items in ``unknown``, newest first.
    unknown: list[OutboxItem]


class OutboxStore(Protocol):
    """Where an Outbox keeps its items (memory, SQLite, PostgreSQL)."""

    #: A short description for messages and the CLI (never a secret).
    where: str

    async def setup(self) -> None:
        """Connect and create the tables if needed."""
        ...

    async def insert(self, items: Sequence[NewItem], *, connection: Any = None) -> list[int]:
        """Store the items as queued, durably, and return their ids (in order)."""
        ...

    async def claim(
        self, worker: str, limit: int, *, now: float, lease_until: float, exclude: Collection[str]
    ) -> list[Claimed]:
        """Lease up to ``limit`` due items (priority first, then oldest), skipping items of ``exclude``."""
        ...

    async def record(
        self,
        worker: str,
        marks: Sequence[Marking],
        settlements: Sequence[Settlement],
        *,
        now: float,
        lease_until: float,
    ) -> set[int]:
        """In one transaction: mark the items of ``marks`` sending (attempts + 1, leased until
        ``lease_until``) where ``worker`` still holds them, queued, and record ``settlements`` (an outcome,
        or ``status="queued"`` back to the queue at ``next_attempt_at``) where ``worker`` holds them and
        they are not finished. Returns the ids marked."""
        ...

    async def release(
        self, item_id: int, worker: str, *, next_attempt_at: float | None, credential: str | None
    ) -> None:
        """Give back a claimed item that was not handed over (no attempt counted)."""
        ...

    async def expire(self, now: float) -> int:
        """Settle items left sending by a worker whose lease ended; return how many."""
        ...

    async def pending(self, now: float) -> tuple[int, int, float | None]:
        """``(due, leased, next_due)``: items due and not leased, items under a live lease, and when
        the next queued item not leased comes due (None if none)."""
        ...

    async def get(self, item_id: int) -> OutboxItem | None:
        """The item, or None."""
        ...

    async def counts(self) -> dict[str, int]:
        """Items by status."""
        ...

    def items(self, status: Status | None, owner: str | None) -> AsyncIterator[OutboxItem]:
        """Every matching item, in id order, read a page at a time."""
        ...

    async def cancel(self, item_id: int, now: float) -> bool:
        """Cancel a queued item (not yet handed over); True if it was."""
        ...

    async def purge(self, before: float) -> int:
        """Remove finished items whose outcome is older than ``before``; return how many."""
        ...

    async def summary(self, now: float) -> Summary:
        """Counts by owner and status, the oldest queued item, unknown items."""
        ...

    async def wait_for_work(self) -> None:
        """Return when new items may have arrived (a notification); may also return for no reason."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...
