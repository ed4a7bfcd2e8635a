"""Outbox: messages queued durably in a database, sent by workers; never lost, never sent twice silently."""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from sendchannel._channel import Channel, check_message
from sendchannel._clock import Clock, SystemClock
from sendchannel._message import Message
from sendchannel._outbox._codec import encode_message
from sendchannel._outbox._item import STATUSES, OutboxItem, Status, from_timestamp
from sendchannel._outbox._store import NewItem, OutboxStore, Summary
from sendchannel._retry import RetryPolicy
from sendchannel.errors import ConfigurationError

__all__ = ["Outbox", "open_store"]

_DEFAULT_RETRY = RetryPolicy()


def open_store(database: str) -> OutboxStore:
    """The outbox store for a database URL: ``memory://``, ``sqlite:///path`` or ``postgresql://...``."""
    if not isinstance(database, str):
        raise ConfigurationError(
            f"database must be a URL string (sqlite:///sendchannel.db, postgresql://..., memory://), "
            f"got {type(database).__name__}"
        )
    scheme = database.partition(":")[0].lower()
    if scheme == "memory":
        from sendchannel._outbox._memory import MemoryOutboxStore

        return MemoryOutboxStore()
    if scheme == "sqlite":
        from sendchannel._outbox._sqlite import SqliteOutboxStore

        return SqliteOutboxStore(database)
    if scheme in ("postgresql", "postgres"):
        from sendchannel._outbox._postgres import PostgresOutboxStore

        return PostgresOutboxStore(database)
    raise ConfigurationError(
        f"The outbox database URL must start with sqlite:///, postgresql:// or memory://, got "
        f"{scheme or '(no scheme)'}://...; for example sqlite:///sendchannel.db"
    )


class Outbox:
    """A durable queue of messages in SQLite or PostgreSQL, sent by any number of workers.

    ``put`` stores a message (its rendered bytes and envelope) before it returns; ``run`` is a worker that
    claims due items, sends them, and records each outcome. Workers on any number of processes and hosts
    may share one database. The delivery rules:

    - An item is marked ``"sending"`` (committed) only just before it is handed to the provider.
    - A transient error puts it back at the retry policy's next time (never sooner than the error's
      ``retry_after``) until the policy's attempts are spent, then ``"failed"``; a permanent error gives
      ``"failed"``; a :class:`~sendchannel.errors.DeliveryUnknownError` gives ``"unknown"``.
    - A spent budget (a throttler's or the provider's ``QuotaExceededError``, or a next permit further
      than a short wait) puts the item back until then, costing no attempt: a worker never sits on a
      long throttle wait.
    - A worker that dies leaves its ``"sending"`` items leased; when the lease ends they become
      ``"unknown"``, never sent again blindly, except through an idempotent channel (its ``idempotent``
      attribute is True), which sends them again with the same Message-ID. Items it had claimed but not
      handed over go back to the queue.
    - A worker never has more items of one credential in flight than that channel's
      ``limits.max_connections``, so one sender's backlog does not hold up the others.

    Args:
        database: ``sqlite:///path`` (processes on one host), ``postgresql://...`` (a fleet; psycopg 3),
            or ``memory://`` (tests; gone with the process). May be the directory's database: the tables
            are prefixed ``sendchannel_``.
        directory: A ``sendchannel.ChannelDirectory``: each message goes through the entry its
            sender (and ``owner``) routes to, inside that entry's throttler.
        channel: The channel every message goes through. Wrap it in ``pipeline(channel, retry=None,
            store=...)`` for the provider's limits: the outbox does the retrying itself.
        retry: When and how often transient failures are tried again.
        lease: Seconds a worker holds an item it claimed or is sending; when it ends without an outcome
            (the worker died), the item is settled as above. Longer than any send takes.
        clock: ``now()`` and ``async sleep()`` (the real clock by default; a VirtualClock in tests).

    Raises:
        ConfigurationError: Not exactly one of ``directory`` and ``channel``, a database URL that is
            not one of the above, or a bad ``retry`` or ``lease``.

    Example::

        async with Outbox("postgresql://mail@db/app", channel=pipeline(smtp, retry=None)) as outbox:
            await outbox.put(message, send_at=tomorrow_9am)
            await outbox.run(until_empty=True)
    """

    def __init__(
        self,
        database: str = "sqlite:///sendchannel.db",
        *,
        directory: Any = None,
        channel: Channel | None = None,
        retry: RetryPolicy = _DEFAULT_RETRY,
        lease: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        if (directory is None) == (channel is None):
            raise ConfigurationError(
                "Outbox takes exactly one of directory= (each message routed by its sender) or channel= "
                "(every message through one channel)"
            )
        if channel is not None and not isinstance(channel, Channel):
            raise ConfigurationError(
                f"channel must be a Channel (name, scope, limits, send, verify, aclose), got "
                f"{type(channel).__name__}"
            )
        if directory is not None and not callable(getattr(directory, "channel_for", None)):
            raise ConfigurationError(
                f"directory must be a sendchannel.ChannelDirectory, got {type(directory).__name__}"
            )
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < math.inf:
            raise ConfigurationError(f"lease must be a positive number of seconds, got {lease!r}")
        self._store = open_store(database)
        self._ready = False
        #: The directory messages are routed through, or None.
        self.directory = directory
        #: The channel every message goes through, or None.
        self.channel = channel
        #: The retry policy for transient failures.
        self.retry = retry
        #: Seconds a worker's claim on an item lasts.
        self.lease = float(lease)
        #: The clock.
        self.clock: Clock = SystemClock() if clock is None else clock
        self._workers: list[Any] = []

    @property
    def store(self) -> OutboxStore:
        """The database the items live in."""
        return self._store

    async def _open(self) -> OutboxStore:
        if not self._ready:
            await self._store.setup()
            self._ready = True
        return self._store

    # -- queueing -----------------------------------------------------------------------------------------

    async def put(
        self,
        message: Message,
        *,
        owner: str | None = None,
        send_at: datetime.datetime | None = None,
        priority: int = 0,
        connection: Any = None,
    ) -> OutboxItem:
        """Queue ``message``; it is stored durably (rendered bytes and envelope) before this returns.

        Args:
            message: What to send.
            owner: Whose message it is: with a directory, the owner whose entries may send it.
            send_at: When to send it: a timezone-aware datetime (None: now).
            priority: Higher goes first among items that are due.
            connection: With PostgreSQL, the psycopg 3 connection of the application's own transaction (an
                ``AsyncConnection``, or a blocking ``Connection`` such as Django's
                ``django.db.connection.connection``): the item exists only if that transaction commits.

        Raises:
            InvalidMessageError: The message breaks the channel's per-message limits.
            SenderNotAllowedError: The channel (or no entry of the directory) may send as the sender.
            ConfigurationError: A bad ``send_at``, ``priority`` or ``owner``.
        """
        items = await self.put_many(
            [message], owner=owner, send_at=send_at, priority=priority, connection=connection
        )
        return items[0]

    async def put_many(
        self,
        messages: Iterable[Message],
        *,
        owner: str | None = None,
        send_at: datetime.datetime | None = None,
        priority: int = 0,
        connection: Any = None,
    ) -> list[OutboxItem]:
        """Queue several messages in one transaction; see :meth:`put`. Returns their items, in order."""
        when = self._send_at(send_at)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(f"priority must be an integer, got {priority!r}")
        if owner is not None and not isinstance(owner, str):
            raise ConfigurationError(f"owner must be a string or None, got {type(owner).__name__}")
        new: list[NewItem] = []
        for message in messages:
            if not isinstance(message, Message):
                raise ConfigurationError(
                    f"put takes sendchannel.Message objects, got {type(message).__name__}"
                )
            await self._check(message, owner)
            rendered, envelope = encode_message(message)
            new.append(
                NewItem(
                    message_id=message.message_id,
                    owner=owner,
                    priority=priority,
                    send_at=when,
                    rendered=rendered,
                    envelope=envelope,
                )
            )
        if not new:
            return []
        store = await self._open()
        ids = await store.insert(new, connection=connection)
        moment = from_timestamp(when)
        return [
            OutboxItem(
                id=item_id,
                message_id=item.message_id,
                owner=owner,
                status="queued",
                attempts=0,
                send_at=moment,
                next_attempt_at=moment,
            )
            for item_id, item in zip(ids, new, strict=True)
        ]

    def _send_at(self, send_at: datetime.datetime | None) -> float:
        if send_at is None:
            return self.clock.now()
        if not isinstance(send_at, datetime.datetime):
            raise ConfigurationError(f"send_at must be a datetime or None, got {type(send_at).__name__}")
        if send_at.tzinfo is None or send_at.utcoffset() is None:
            raise ConfigurationError(
                f"send_at {send_at.isoformat()} has no time zone, so when it is cannot be known; pass an "
                "aware datetime, e.g. datetime.datetime(2026, 12, 3, 9, 0, tzinfo=datetime.UTC)"
            )
        return send_at.timestamp()

    async def _check(self, message: Message, owner: str | None) -> None:
        """Refuse at once what could never be sent: a sender nobody may send as, a message over a limit."""
        if self.channel is not None:
            check_message(self.channel, message)
            return
        self.directory.route(message.sender, owner=owner)

    # -- where things stand -------------------------------------------------------------------------------

    async def get(self, item_id: int) -> OutboxItem | None:
        """The item with this id, as last recorded, or None."""
        store = await self._open()
        return await store.get(item_id)

    async def counts(self) -> dict[str, int]:
        """How many items are in each status (every status is a key, 0 when none)."""
        store = await self._open()
        counts = await store.counts()
        return {status: counts.get(status, 0) for status in STATUSES}

    async def items(
        self, status: Status | None = None, owner: str | None = None
    ) -> AsyncIterator[OutboxItem]:
        """Every item (with this status, of this owner), in id order, read from the database a page at a
        time: memory stays flat however many there are."""
        if status is not None and status not in STATUSES:
            raise ConfigurationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        store = await self._open()
        async for item in store.items(status, owner):
            yield item

    async def summary(self) -> Summary:
        """Counts by owner and status, the oldest queued item and the items in ``unknown``."""
        store = await self._open()
        return await store.summary(self.clock.now())

    async def cancel(self, item_id: int) -> bool:
        """Cancel a queued item; True if it was queued (not yet handed to a provider) and is now cancelled."""
        store = await self._open()
        return await store.cancel(item_id, self.clock.now())

    async def purge(self, older_than: datetime.timedelta) -> int:
        """Remove finished items (sent, failed, unknown, cancelled) whose outcome is older than
        ``older_than``; returns how many."""
        if not isinstance(older_than, datetime.timedelta):
            raise ConfigurationError(
                f"older_than must be a datetime.timedelta, got {type(older_than).__name__}"
            )
        store = await self._open()
        return await store.purge(self.clock.now() - older_than.total_seconds())

    # -- working ------------------------------------------------------------------------------------------

    async def run(
        self,
        *,
        concurrency: int = 8,
        until_empty: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Work: claim due items, send them, record each outcome, until :meth:`stop` (or cancellation).

        Any number of workers may run at once, in this process and others, on any host that reaches the
        database. On :meth:`stop` (the command line calls it on SIGTERM) or cancellation a worker claims
        nothing more, gives back what it claimed but did not hand over, and lets the sends in flight
        finish and be recorded.

        Args:
            concurrency: The most sends in flight at once in this worker.
            until_empty: Return once no item is due and none is leased (scheduled items for later stay).
            progress: Called with each outcome as it is recorded: ``"sent"``, ``"failed"``,
                ``"unknown"``, ``"retry"`` (back in the queue after a transient error) or ``"deferred"``
                (back until its budget has room; no attempt counted).

        Raises:
            ConfigurationError: ``concurrency`` is not a positive integer.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive integer, got {concurrency!r}")
        from sendchannel._outbox._worker import Worker

        store = await self._open()
        worker = Worker(self, store, concurrency=concurrency, until_empty=until_empty, progress=progress)
        self._workers.append(worker)
        try:
            await worker.run()
        finally:
            self._workers.remove(worker)

    def stop(self) -> None:
        """Ask this Outbox's workers to stop gracefully: claim nothing more, finish what is in flight."""
        for worker in self._workers:
            worker.stop()

    async def aclose(self) -> None:
        """Close the database connections (not the channel or directory, which the caller owns)."""
        await self._store.aclose()
        self._ready = False

    async def __aenter__(self) -> Outbox:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        target = (
            f"directory={self.directory!r}" if self.directory is not None else f"channel={self.channel!r}"
        )
        return f"<Outbox {self._store.where} {target}>"
