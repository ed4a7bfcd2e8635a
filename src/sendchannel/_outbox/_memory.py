"""The outbox in this process's memory (``memory://``): for tests and examples, lost when the process ends."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import attrs

from sendchannel._outbox._codec import decode_result
from sendchannel._outbox._item import FINISHED, OutboxItem, Status, from_timestamp
from sendchannel._outbox._store import (
    RESENT_NOTE,
    UNKNOWN_ERROR,
    Claimed,
    Marking,
    NewItem,
    Settlement,
    Summary,
)

__all__ = ["MemoryOutboxStore"]


@attrs.define
class _Row:
    id: int
    message_id: str
    owner: str | None
    priority: int
    send_at: float
    next_attempt_at: float
    rendered: bytes = attrs.field(repr=False)
    envelope: str = attrs.field(repr=False)
    status: Status = "queued"
    attempts: int = 0
    first_attempt_at: float | None = None
    finished_at: float | None = None
    claimed_by: str | None = None
    lease_until: float | None = None
    credential: str | None = None
    idempotent: bool = False
    error: str | None = None
    result: str | None = None

    def item(self) -> OutboxItem:
        return OutboxItem(
            id=self.id,
            message_id=self.message_id,
            owner=self.owner,
            status=self.status,
            attempts=self.attempts,
            send_at=from_timestamp(self.send_at),
            next_attempt_at=from_timestamp(self.next_attempt_at),
            error=self.error,
            result=decode_result(self.result),
        )


class MemoryOutboxStore:
    """Keeps the items in a dict; every call is atomic (it never awaits in the middle)."""

    where = "memory://"

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        self._arrived = asyncio.Event()

    async def setup(self) -> None:
        """Nothing to set up."""

    async def insert(self, items: Sequence[NewItem], *, connection: Any = None) -> list[int]:
        if connection is not None:
            raise TypeError("connection= is for PostgreSQL outboxes")
        ids = []
        for new in items:
            row = _Row(
                id=next(self._ids),
                message_id=new.message_id,
                owner=new.owner,
                priority=new.priority,
                send_at=new.send_at,
                next_attempt_at=new.send_at,
                rendered=new.rendered,
                envelope=new.envelope,
            )
            self._rows[row.id] = row
            ids.append(row.id)
        self._wake()
        return ids

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    def _claimable(self, row: _Row, now: float) -> bool:
        return (
            row.status == "queued"
            and row.next_attempt_at <= now
            and (row.lease_until is None or row.lease_until <= now)
        )

    async def claim(
        self, worker: str, limit: int, *, now: float, lease_until: float, exclude: Collection[str]
    ) -> list[Claimed]:
        due = [
            row
            for row in self._rows.values()
            if self._claimable(row, now) and (row.credential is None or row.credential not in exclude)
        ]
        due.sort(key=lambda row: (-row.priority, row.next_attempt_at, row.id))
        claimed = []
        for row in due[:limit]:
            row.claimed_by = worker
            row.lease_until = lease_until
            claimed.append(
                Claimed(
                    id=row.id,
                    owner=row.owner,
                    attempts=row.attempts,
                    first_attempt_at=row.first_attempt_at,
                    credential=row.credential,
                    rendered=row.rendered,
                    envelope=row.envelope,
                )
            )
        return claimed

    async def record(
        self,
        worker: str,
        marks: Sequence[Marking],
        settlements: Sequence[Settlement],
        *,
        now: float,
        lease_until: float,
    ) -> set[int]:
        marked = set()
        for mark in marks:
            row = self._rows.get(mark.id)
            if row is None or row.status != "queued" or row.claimed_by != worker:
                continue
            row.status = "sending"
            row.attempts += 1
            if row.first_attempt_at is None:
                row.first_attempt_at = now
            row.lease_until = lease_until
            row.idempotent = mark.idempotent
            row.credential = mark.credential
            marked.add(mark.id)
        for one in settlements:
            self._settle(worker, one, now)
        return marked

    def _settle(self, worker: str, one: Settlement, now: float) -> None:
        row = self._rows.get(one.id)
        if row is None or row.claimed_by != worker or row.status in FINISHED:
            return
        row.status = one.status
        row.attempts = one.attempts
        row.error = one.error
        row.result = one.result
        row.lease_until = None
        if one.credential is not None:
            row.credential = one.credential
        if one.status == "queued":
            row.claimed_by = None
            if one.next_attempt_at is not None:
                row.next_attempt_at = one.next_attempt_at
            self._wake()
        else:
            row.finished_at = now

    async def release(
        self, item_id: int, worker: str, *, next_attempt_at: float | None, credential: str | None
    ) -> None:
        row = self._rows.get(item_id)
        if row is None or row.status != "queued" or row.claimed_by != worker:
            return
        row.claimed_by = None
        row.lease_until = None
        if next_attempt_at is not None:
            row.next_attempt_at = next_attempt_at
        if credential is not None:
            row.credential = credential
        self._wake()

    async def expire(self, now: float) -> int:
        settled = 0
        for row in self._rows.values():
            if row.status == "sending" and row.lease_until is not None and row.lease_until <= now:
                settle_expired(row, now)
                settled += 1
        if settled:
            self._wake()
        return settled

    async def pending(self, now: float) -> tuple[int, int, float | None]:
        due = leased = 0
        next_due: float | None = None
        for row in self._rows.values():
            if row.status not in ("queued", "sending"):
                continue
            if row.lease_until is not None and row.lease_until > now:
                leased += 1
            elif row.status == "queued":
                if row.next_attempt_at <= now:
                    due += 1
                if next_due is None or row.next_attempt_at < next_due:
                    next_due = row.next_attempt_at
        return due, leased, next_due

    async def get(self, item_id: int) -> OutboxItem | None:
        row = self._rows.get(item_id)
        return None if row is None else row.item()

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    async def items(self, status: Status | None, owner: str | None) -> AsyncIterator[OutboxItem]:
        for item_id in sorted(self._rows):
            row = self._rows.get(item_id)
            if row is None or (status is not None and row.status != status):
                continue
            if owner is not None and row.owner != owner:
                continue
            yield row.item()

    async def cancel(self, item_id: int, now: float) -> bool:
        row = self._rows.get(item_id)
        if row is None or row.status != "queued":
            return False
        row.status = "cancelled"
        row.finished_at = now
        return True

    async def purge(self, before: float) -> int:
        gone = [
            row.id
            for row in self._rows.values()
            if row.status in FINISHED and row.finished_at is not None and row.finished_at < before
        ]
        for item_id in gone:
            del self._rows[item_id]
        return len(gone)

    async def summary(self, now: float) -> Summary:
        counts: dict[tuple[str | None, str], int] = {}
        oldest: float | None = None
        due = 0
        unknown = []
        for row in self._rows.values():
            counts[row.owner, row.status] = counts.get((row.owner, row.status), 0) + 1
            if row.status == "queued":
                if oldest is None or row.next_attempt_at < oldest:
                    oldest = row.next_attempt_at
                if row.next_attempt_at <= now:
                    due += 1
            elif row.status == "unknown":
                unknown.append(row)
        unknown.sort(key=lambda row: -row.id)
        return Summary(counts, oldest, due, [row.item() for row in unknown[:50]])

    async def wait_for_work(self) -> None:
        await self._arrived.wait()

    async def aclose(self) -> None:
        """Nothing to close (the items stay, for the process's lifetime)."""


def settle_expired(row: _Row, now: float) -> None:
    """A leased 'sending' row whose worker is gone: unknown, or queued again if its channel is idempotent."""
    row.claimed_by = None
    row.lease_until = None
    if row.idempotent:
        row.status = "queued"
        row.error = RESENT_NOTE
    else:
        row.status = "unknown"
        row.finished_at = now
        row.error = UNKNOWN_ERROR
