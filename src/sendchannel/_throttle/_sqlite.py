"""SqliteStore: the sliding-window ledger in a SQLite file, shared by the processes of one host.

The algorithm is MemoryStore's (see ``_memory.py``), run inside one ``BEGIN IMMEDIATE`` transaction, so
the processes that share the file take their permits one after the other. The file is in WAL mode with
``synchronous=NORMAL``: a committed permit survives the process being killed (``kill -9``) and restarts;
only a power cut may lose the last few. Every call runs on one worker thread per store, off the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from sendchannel._limits import Rate
from sendchannel._throttle._store import LOOK_ONLY, Costs, Reservation, window_name
from sendchannel.errors import ConfigurationError, ConnectionLostError

__all__ = ["SqliteStore"]

logger = logging.getLogger("sendchannel.throttle")

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sendchannel_throttle_entries (
        key TEXT NOT NULL, window TEXT NOT NULL, slot REAL NOT NULL, units INTEGER NOT NULL,
        token TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS sendchannel_throttle_entries_by_slot
        ON sendchannel_throttle_entries (key, window, slot)""",
    """CREATE TABLE IF NOT EXISTS sendchannel_throttle_totals (
        key TEXT NOT NULL, window TEXT NOT NULL, units INTEGER NOT NULL,
        PRIMARY KEY (key, window)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sendchannel_throttle_pauses (
        key TEXT NOT NULL PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID""",
)

# sqlite3 reports a lock held by another connection as "database is locked" (or "... is busy").
_BUSY_WORDS = ("locked", "busy")


class SqliteStore:
    """Keeps the throttle ledgers in a SQLite database file: for the processes of one host.

    Every process that opens the same file shares the budget of each key. Permits are committed before a
    send goes, so the counts survive restarts and a process killed mid-run. When another process holds
    the database, a call waits for it (and tries again when SQLite gives up early) for up to ``timeout``
    seconds. Nothing touches the file until the first use.

    Args:
        path: The database file (created when missing). Put it on a local disk: SQLite's locking is not
            reliable over network file systems.
        timeout: The longest a call waits for a database that another process holds, in seconds.

    Raises:
        ConfigurationError: ``timeout`` is not a positive number.

    Example::

        store = SqliteStore("/var/lib/myapp/quota.db")
        channel = Throttler(office365_channel, store=store)
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigurationError(f"path must be a file path, got {type(path).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        #: The database file.
        self.path = os.fspath(path)
        self._timeout = float(timeout)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._closed = False

    # -- ThrottleStore ---------------------------------------------------------------------------------------

    async def reserve(
        self, key: str, costs: Costs, *, now: Callable[[], float], max_wait: float
    ) -> Reservation:
        """Record a send at the earliest slot where it fits every window, if within ``max_wait``.

        Raises:
            ConnectionLostError: The database stayed locked for ``timeout`` seconds.
            ConfigurationError: The database cannot be opened or written.
        """
        token = uuid.uuid4().hex
        future = self._submit(self._reserve_sync, key, costs, now, max_wait, token)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The transaction runs to its end in the worker thread; give back what it recorded.
            future.add_done_callback(lambda done: self._release_unused(done, key, costs))
            raise

    async def next_permit(self, key: str, costs: Costs, *, now: Callable[[], float]) -> Reservation:
        """When a send taking ``costs`` would get its slot; records nothing (it may forget expired entries).

        Raises:
            ConnectionLostError: The database stayed locked for ``timeout`` seconds.
            ConfigurationError: The database cannot be opened or written.
        """
        # Every slot is at or after now, so none is within a negative max_wait: reserve records nothing.
        return await self._submit(self._reserve_sync, key, costs, now, LOOK_ONLY, "")

    async def release(self, key: str, costs: Costs, token: str) -> None:
        """Forget a recorded send that never reached the provider."""
        await self._submit(self._release_sync, key, costs, token)

    async def pause(self, key: str, seconds: float, *, now: Callable[[], float]) -> None:
        """Give ``key`` no slot before ``seconds`` from now."""
        await self._submit(self._pause_sync, key, seconds, now)

    async def verify(self) -> None:
        """Open the database and check its tables, recording nothing.

        Raises:
            ConnectionLostError: The database stayed locked for ``timeout`` seconds.
            ConfigurationError: The database cannot be opened or written.
        """
        await self._submit(self._transaction, lambda db: None)

    async def aclose(self) -> None:
        """Close the database connection and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        executor = self._executor
        if executor is not None and self._pid == os.getpid():
            await asyncio.wrap_future(executor.submit(self._close_sync))
            executor.shutdown(wait=False)
        self._executor = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- the worker thread ----------------------------------------------------------------------------------

    def _submit(self, function: Callable[..., T], *args: object) -> asyncio.Future[T]:
        return asyncio.wrap_future(self._worker().submit(function, *args))

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; make a new SqliteStore")
        if self._pid != os.getpid():
            # First use, or a child process after fork(): the parent's thread and connection are not ours.
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sendchannel-sqlite"
            )
            self._connection = None
            self._pid = os.getpid()
        assert self._executor is not None
        return self._executor

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        return connection

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one BEGIN IMMEDIATE transaction, trying again while another process holds it."""
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            connection = self._connection
            try:
                if connection is None:
                    connection = self._connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = body(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.OperationalError as exc:
                busy = any(word in str(exc).lower() for word in _BUSY_WORDS)
                if not busy:
                    raise self._unusable(exc) from exc
                if time.monotonic() >= deadline:
                    raise ConnectionLostError(
                        f"The throttle database {self.path} stayed locked for {self._timeout:g} s, so no "
                        "permit could be taken and nothing was sent. Another process may be holding it in a "
                        "long transaction; try again, or give SqliteStore a longer timeout."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc

    def _unusable(self, exc: sqlite3.DatabaseError) -> ConfigurationError:
        return ConfigurationError(
            f"The throttle database {self.path} cannot be used ({exc}), so nothing was sent. Check that its "
            "directory exists and is writable, and that the file is a SQLite database."
        )

    def _reserve_sync(
        self, key: str, costs: Costs, now: Callable[[], float], max_wait: float, token: str
    ) -> Reservation:
        def body(db: sqlite3.Connection) -> Reservation:
            moment = now()
            start = moment
            row = db.execute(
                "SELECT until FROM sendchannel_throttle_pauses WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row[0] > start:
                    start = row[0]
                else:
                    db.execute("DELETE FROM sendchannel_throttle_pauses WHERE key = ?", (key,))
            totals: list[int] = []
            for rate, _ in costs:
                window = window_name(rate)
                cut = moment - rate.per
                row = db.execute(
                    "SELECT units FROM sendchannel_throttle_totals WHERE key = ? AND window = ?",
                    (key, window),
                ).fetchone()
                total = 0 if row is None else int(row[0])
                expired_units, expired = db.execute(
                    "SELECT COALESCE(SUM(units), 0), COUNT(*) FROM sendchannel_throttle_entries "
                    "WHERE key = ? AND window = ? AND slot <= ?",
                    (key, window, cut),
                ).fetchone()
                if expired:
                    db.execute(
                        "DELETE FROM sendchannel_throttle_entries WHERE key = ? AND window = ? AND slot <= ?",
                        (key, window, cut),
                    )
                    total -= int(expired_units)
                (last,) = db.execute(
                    "SELECT MAX(slot) FROM sendchannel_throttle_entries WHERE key = ? AND window = ?",
                    (key, window),
                ).fetchone()
                if last is not None and last > start:
                    start = last
                totals.append(total)

            at = start
            limited_by: Rate | None = None
            for (rate, units), total in zip(costs, totals, strict=True):
                excess = total + units - rate.count
                if excess <= 0:
                    continue
                free_at = None
                for slot, entry_units in db.execute(
                    "SELECT slot, units FROM sendchannel_throttle_entries WHERE key = ? AND window = ? "
                    "ORDER BY slot",
                    (key, window_name(rate)),
                ):
                    excess -= entry_units
                    if excess <= 0:
                        free_at = slot + rate.per
                        break
                if free_at is None:
                    raise ValueError(f"a send of {units} {rate.unit} can never fit the limit of {rate}")
                if free_at > at:
                    at = free_at
                    limited_by = rate

            granted = at - moment <= max_wait
            for (rate, units), total in zip(costs, totals, strict=True):
                window = window_name(rate)
                if granted:
                    db.execute(
                        "INSERT INTO sendchannel_throttle_entries (key, window, slot, units, token) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (key, window, at, units, token),
                    )
                    total += units
                db.execute(
                    "INSERT INTO sendchannel_throttle_totals (key, window, units) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, window) DO UPDATE SET units = excluded.units",
                    (key, window, total),
                )
            if granted:
                return Reservation(granted=True, at=at, token=token, limited_by=limited_by)
            return Reservation(granted=False, at=at, limited_by=limited_by)

        return self._transaction(body)

    def _release_sync(self, key: str, costs: Costs, token: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            for rate, _ in costs:
                window = window_name(rate)
                row = db.execute(
                    "DELETE FROM sendchannel_throttle_entries WHERE key = ? AND window = ? AND token = ? "
                    "RETURNING units",
                    (key, window, token),
                ).fetchone()
                if row is not None:
                    db.execute(
                        "UPDATE sendchannel_throttle_totals SET units = units - ? "
                        "WHERE key = ? AND window = ?",
                        (row[0], key, window),
                    )

        self._transaction(body)

    def _release_unused(self, done: asyncio.Future[Reservation], key: str, costs: Costs) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        reservation = done.result()
        if reservation.granted and reservation.token is not None and not self._closed:
            self._worker().submit(self._release_quietly, key, costs, reservation.token)

    def _release_quietly(self, key: str, costs: Costs, token: str) -> None:
        try:
            self._release_sync(key, costs, token)
        except Exception as exc:  # noqa: BLE001 - keeping an unused permit is the safe side of a failure
            logger.warning("throttle: could not give back an unused permit for key=%s: %s", key, exc)

    def _pause_sync(self, key: str, seconds: float, now: Callable[[], float]) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO sendchannel_throttle_pauses (key, until) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = MAX(until, excluded.until)",
                (key, now() + seconds),
            )

        self._transaction(body)

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
