"""The worker loop: claim due items, send each through its channel, record the outcome.

One loop claims as many items as there are free places (``concurrency``), each item is sent by its own
task, and the loop sleeps until a send finishes, new items arrive (a notification or a short poll), the
next scheduled item comes due, or it is time to settle the leases of workers that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sendchannel._channel import Channel, is_idempotent
from sendchannel._message import Message
from sendchannel._outbox._codec import decode_message, describe_error, encode_result
from sendchannel._outbox._item import Status
from sendchannel._outbox._store import Claimed, Marking, OutboxStore, Settlement
from sendchannel._result import SendResult
from sendchannel._throttle._throttler import default_key
from sendchannel.errors import (
    DeliveryUnknownError,
    QuotaExceededError,
    SendError,
    TransientError,
)

if TYPE_CHECKING:
    from sendchannel._outbox._outbox import Outbox

__all__ = ["SHORT_WAIT", "Worker"]

logger = logging.getLogger("sendchannel.outbox")

#: The longest a worker waits for a throttle permit with an item in hand; a later permit puts it back.
SHORT_WAIT = 1.0

#: How often a worker told to stop once the outbox is empty looks again while only other workers' items are
#: leased: their outcome (a retry, a credential given back) decides whether anything is left for it.
EMPTY_POLL = 0.2

# How deep to look through wrapping layers (Retrying, Throttler, ...) for a throttler's next_permit.
_LAYERS = 8


def _next_permit_of(channel: Channel) -> Callable[[Message], Awaitable[float]] | None:
    layer: Any = channel
    for _ in range(_LAYERS):
        if layer is None:
            return None
        ask = getattr(layer, "next_permit", None)
        if callable(ask):
            return ask  # type: ignore[no-any-return]
        layer = getattr(layer, "channel", None)
    return None


R = TypeVar("R")
T = TypeVar("T")


class _Batcher(Generic[R, T]):
    """Writes the requests made while the previous write was under way together, in one transaction.

    The first request of a quiet moment goes out at once (after the current pass of the event loop, so the
    requests of one burst share it); those that arrive while it is being written make the next batch. The
    batch grows with the load, and a message costs a fraction of a transaction.
    """

    def __init__(self, write: Callable[[list[R]], Awaitable[list[T]]]) -> None:
        self._write = write
        self._pending: list[tuple[R, asyncio.Future[T]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: R) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="outbox batch writer")
        # A caller cancelled meanwhile does not take the write with it: the others' requests are in it.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._write([request for request, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved here if its caller is gone
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class Worker:
    """One ``Outbox.run``: its loop, its tasks, and what it knows of each credential's room."""

    def __init__(
        self,
        outbox: Outbox,
        store: OutboxStore,
        *,
        concurrency: int,
        until_empty: bool,
        progress: Callable[[str], None] | None,
    ) -> None:
        self._outbox = outbox
        self._store = store
        self._clock = outbox.clock
        self._concurrency = concurrency
        self._until_empty = until_empty
        self._progress = progress
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        # Per credential: sends in flight here, the most allowed, and until when it has no permit.
        self._in_flight: dict[str, int] = {}
        self._caps: dict[str, int] = {}
        self._blocked: dict[str, float] = {}
        lease = outbox.lease
        self._sweep_every = max(0.05, min(5.0, lease / 4))
        self._poll = float(getattr(store, "poll_interval", self._sweep_every))
        self._records: _Batcher[Marking | Settlement, bool] = _Batcher(self._write_records)

    async def _write_records(self, requests: list[Marking | Settlement]) -> list[bool]:
        """Marks and settlements together, in one transaction; True for each item marked or settled."""
        marks = [one for one in requests if isinstance(one, Marking)]
        settlements = [one for one in requests if isinstance(one, Settlement)]
        now = self._clock.now()
        marked = await self._store.record(
            self.id, marks, settlements, now=now, lease_until=now + self._outbox.lease
        )
        return [one.id in marked if isinstance(one, Marking) else True for one in requests]

    async def _finish(
        self,
        item: Claimed,
        status: Status,
        *,
        attempts: int,
        credential: str | None,
        error: BaseException | None = None,
        result: SendResult | None = None,
        next_attempt_at: float | None = None,
        report: str | None = None,
    ) -> None:
        """Record an outcome (or the item's return to the queue), then say so to the progress callback."""
        await self._records.submit(
            Settlement(
                item.id,
                status,
                attempts,
                None if error is None else describe_error(error),
                None if result is None else encode_result(result),
                next_attempt_at,
                credential,
            )
        )
        self._report(report or status)

    def stop(self) -> None:
        self._stopping.set()

    # -- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        except BaseException:
            self._stopping.set()
            await self._drain()
            raise
        await self._drain()

    async def _drain(self) -> None:
        """Let the sends in flight finish and be recorded (also when this run is being cancelled)."""
        while self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(asyncio.gather(*self._tasks, return_exceptions=True))

    async def _loop(self) -> None:
        store = self._store
        clock = self._clock
        next_sweep = -math.inf
        while not self._stopping.is_set():
            now = clock.now()
            if now >= next_sweep:
                settled = await store.expire(now)
                if settled:
                    logger.warning(
                        "outbox: settled %d items whose worker stopped while sending them", settled
                    )
                next_sweep = now + self._sweep_every
            free = self._concurrency - len(self._tasks)
            claimed = []
            if free > 0:
                claimed = await store.claim(
                    self.id, free, now=now, lease_until=now + self._outbox.lease, exclude=self._excluded(now)
                )
                for item in claimed:
                    task = asyncio.create_task(self._handle(item), name=f"outbox item {item.id}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if claimed and len(claimed) == free:
                    await asyncio.sleep(0)
                    continue
            timeout = min(self._sweep_every, self._poll)
            if not claimed and free > 0:
                due, leased, next_due = await store.pending(now)
                if self._until_empty and not self._tasks and due == 0 and leased == 0:
                    return
                if self._until_empty and leased and not self._tasks:
                    timeout = min(timeout, EMPTY_POLL)
                if next_due is not None:
                    timeout = min(timeout, max(0.0, next_due - now))
                if due and not self._tasks:
                    # Due items that this worker skipped (their credential is full or waiting).
                    timeout = min(timeout, self._next_unblock(now))
            await self._wait(timeout)

    def _excluded(self, now: float) -> set[str]:
        excluded = {
            credential
            for credential, count in self._in_flight.items()
            if count >= self._caps.get(credential, math.inf)
        }
        for credential, until in list(self._blocked.items()):
            if until > now:
                excluded.add(credential)
            else:
                del self._blocked[credential]
        return excluded

    def _next_unblock(self, now: float) -> float:
        return min((until - now for until in self._blocked.values()), default=self._sweep_every)

    async def _wait(self, seconds: float) -> None:
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._store.wait_for_work()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        if seconds > 0:
            waiters.append(asyncio.ensure_future(self._clock.sleep(seconds)))
        else:
            waiters.append(asyncio.ensure_future(asyncio.sleep(0)))
        if self._tasks:
            # A finished send frees a place (and may unblock its credential).
            waiters.append(
                asyncio.ensure_future(asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED))
            )
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- one item -----------------------------------------------------------------------------------------

    def _report(self, outcome: str) -> None:
        if self._progress is not None:
            try:
                self._progress(outcome)
            except Exception:
                logger.exception("outbox: the progress callback failed")

    async def _handle(self, item: Claimed) -> None:
        try:
            await self._send(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database error: the lease settles the item; this worker goes on with the others.
            logger.exception("outbox: could not record the outcome of item %d", item.id)

    async def _channel_for(self, item: Claimed, message: Message) -> Channel:
        outbox = self._outbox
        if outbox.channel is not None:
            return outbox.channel
        channel: Channel = await outbox.directory.channel_for(
            message, owner=item.owner, max_wait=SHORT_WAIT, retry=False
        )
        return channel

    async def _send(self, item: Claimed) -> None:
        store = self._store
        clock = self._clock
        worker = self.id
        message = decode_message(item.rendered, item.envelope)
        try:
            channel = await self._channel_for(item, message)
        except QuotaExceededError as exc:
            await self._defer(item, item.credential, exc)
            return
        except Exception as exc:  # noqa: BLE001 - routing failed: settled like a send that failed so
            await self._failed_before_sending(item, exc)
            return
        credential = default_key(channel)
        cap = channel.limits.max_connections
        if cap is not None:
            self._caps[credential] = cap
        if self._stopping.is_set():
            await store.release(item.id, worker, next_attempt_at=None, credential=credential)
            return
        if self._in_flight.get(credential, 0) >= self._caps.get(credential, math.inf):
            # This credential is busy here: give the item back for another worker (or for later).
            await store.release(item.id, worker, next_attempt_at=None, credential=credential)
            return
        self._in_flight[credential] = self._in_flight.get(credential, 0) + 1
        try:
            ask = _next_permit_of(channel)
            if ask is not None:
                try:
                    wait = await ask(message)
                except SendError:
                    wait = 0.0  # the send itself will say what is wrong
                if wait > SHORT_WAIT:
                    until = clock.now() + wait
                    self._blocked[credential] = max(self._blocked.get(credential, 0.0), until)
                    await store.release(item.id, worker, next_attempt_at=until, credential=credential)
                    self._report("deferred")
                    return
            idempotent = is_idempotent(channel)
            if not await self._records.submit(Marking(item.id, idempotent, credential)):
                return  # cancelled meanwhile, or the lease ran out and another worker has it
            attempts = item.attempts + 1
            now = clock.now()
            first = item.first_attempt_at if item.first_attempt_at is not None else now
            try:
                result = await channel.send(message)
            except QuotaExceededError as exc:
                # Nothing was sent: the budget (the throttler's or the provider's) is spent until then.
                await self._defer(item, credential, exc, attempts=attempts - 1)
                return
            except DeliveryUnknownError as exc:
                if idempotent:
                    await self._retry_or_fail(item, credential, exc, attempts, first)
                else:
                    await self._finish(item, "unknown", attempts=attempts, credential=credential, error=exc)
                return
            except TransientError as exc:
                await self._retry_or_fail(item, credential, exc, attempts, first)
                return
            except Exception as exc:  # noqa: BLE001 - permanent errors, and anything else, fail the item
                await self._finish(item, "failed", attempts=attempts, credential=credential, error=exc)
                return
            await self._finish(item, "sent", attempts=attempts, credential=credential, result=result)
        finally:
            self._in_flight[credential] -= 1
            if not self._in_flight[credential]:
                del self._in_flight[credential]

    async def _defer(
        self, item: Claimed, credential: str | None, exc: QuotaExceededError, *, attempts: int | None = None
    ) -> None:
        now = self._clock.now()
        if exc.resets_at is not None:
            until = exc.resets_at
        elif exc.retry_after is not None:
            until = now + exc.retry_after
        else:
            until = None
        if until is None:
            # A quota without a time it resets: nothing says when another attempt could work.
            spent = item.attempts if attempts is None else attempts
            await self._finish(item, "failed", attempts=spent, credential=credential, error=exc)
            return
        until = max(until, now)
        if credential is not None:
            self._blocked[credential] = max(self._blocked.get(credential, 0.0), until)
        if attempts is None:
            await self._store.release(item.id, self.id, next_attempt_at=until, credential=credential)
            self._report("deferred")
        else:
            await self._finish(
                item,
                "queued",
                attempts=attempts,
                credential=credential,
                error=exc,
                next_attempt_at=until,
                report="deferred",
            )

    async def _retry_or_fail(
        self, item: Claimed, credential: str | None, exc: SendError, attempts: int, first: float
    ) -> None:
        policy = self._outbox.retry
        now = self._clock.now()
        wait = max(policy.backoff(attempts, exc.retry_after), exc.retry_after or 0.0)
        out_of_time = policy.max_elapsed is not None and now + wait - first > policy.max_elapsed
        if attempts >= policy.attempts or out_of_time:
            await self._finish(item, "failed", attempts=attempts, credential=credential, error=exc)
            return
        await self._finish(
            item,
            "queued",
            attempts=attempts,
            credential=credential,
            error=exc,
            next_attempt_at=now + wait,
            report="retry",
        )

    async def _failed_before_sending(self, item: Claimed, exc: Exception) -> None:
        """Routing failed (no entry for the sender, a credential to reconnect, the directory's database):
        nothing reached a provider."""
        now = self._clock.now()
        if isinstance(exc, TransientError):
            first = item.first_attempt_at if item.first_attempt_at is not None else now
            await self._retry_or_fail(item, item.credential, exc, item.attempts + 1, first)
            return
        await self._finish(item, "failed", attempts=item.attempts, credential=item.credential, error=exc)
