"""SQLite for the directory and the outbox: the stdlib driver on a worker thread, WAL, shared by processes.

Each process opens one connection, used only from one worker thread per database, so the event loop never
waits on the disk. The file is in WAL mode (readers never wait for the writer) with ``synchronous=NORMAL``
(a commit survives ``kill -9``; a power cut may lose the last few). A write transaction starts with
``BEGIN IMMEDIATE``: it takes the file's write lock before it reads anything, so two processes that read
then write one after the other never deadlock, and a lock held by another process is waited for (SQLite's
busy timeout, then again with a short sleep) up to the URL's timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from sendchannel._database._base import Row, Transaction
from sendchannel._database._errors import ConstraintError
from sendchannel._database._url import DatabaseURL
from sendchannel.errors import ConfigurationError, ConnectionLostError

__all__ = ["SqliteDatabase"]

T = TypeVar("T")

# sqlite3 reports a lock held by another connection as "database is locked" (or "... is busy").
_BUSY_WORDS = ("locked", "busy")


class SqliteDatabase:
    """A SQLite database file (or a private in-memory one), reached from asyncio.

    Args:
        url: The parsed URL (``sqlite:///path`` or ``memory://``, which is a private in-memory database
            that lives as long as this object).
    """

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, url: DatabaseURL) -> None:
        if url.kind not in {"sqlite", "memory"}:
            raise ConfigurationError(f"{url.display} is not a SQLite database URL")
        #: The parsed URL.
        self.url = url
        self.path = url.path if url.kind == "sqlite" and url.path is not None else ":memory:"
        self._timeout = url.timeout
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._closed = False
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"SqliteDatabase({self.url.display!r})"

    # -- the Database interface ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[SqliteTransaction]:
        """One transaction; see :meth:`sendchannel._database.Database.transaction`."""
        async with self._lock():
            begun = self._call(self._begin, write)
            try:
                await begun
            except asyncio.CancelledError:
                # BEGIN may be running in the worker thread (where it cannot be stopped) and succeed after we
                # leave: queue a ROLLBACK behind it, so the connection is out of any transaction before the
                # next caller's work (the thread runs calls in order) and nothing of ours is left open.
                self._roll_back_later()
                raise
            tx = SqliteTransaction(self)
            try:
                yield tx
            except BaseException:
                # Queued before any await, so it runs before the next transaction even if we are cancelled.
                await asyncio.shield(self._call(self._end, "ROLLBACK"))
                raise
            await asyncio.shield(self._call(self._end, "COMMIT"))

    async def run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool = True) -> T:
        """Run ``body(tx)`` in one transaction (SQLite serialises writers, so there is nothing to retry)."""
        async with self.transaction(write=write) as tx:
            return await body(tx)

    async def execute(self, sql: str, params: Sequence[object] = (), *, write: bool = True) -> list[Row]:
        """Run one statement in a transaction of its own (one trip to the worker thread)."""
        async with self._lock():
            return await self._call(self._execute_alone, sql, tuple(params), write)

    async def batch(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool = True
    ) -> list[list[Row]]:
        """Run the statements in order in one transaction (one trip to the worker thread); their rows."""
        async with self._lock():
            return await self._call(
                self._batch_alone, [(sql, tuple(params)) for sql, params in statements], write
            )

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        executor = self._executor
        if executor is not None and self._pid == os.getpid():
            await asyncio.wrap_future(executor.submit(self._close_sync))
            executor.shutdown(wait=False)
        self._executor = None

    # -- the worker thread ----------------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def _call(self, function: Callable[..., T], *args: object) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._pid != os.getpid():
            # First use, or a child process after fork(): the parent's thread and connection are not ours.
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sendchannel-db"
            )
            self._connection = None
            self._pid = os.getpid()
        assert self._executor is not None
        return asyncio.wrap_future(self._executor.submit(self._guarded, function, *args))

    def _guarded(self, function: Callable[..., T], *args: object) -> T:
        try:
            return function(*args)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if any(word in str(exc).lower() for word in _BUSY_WORDS):
                raise self._locked(exc) from exc
            if "no such" in str(exc) or "syntax error" in str(exc):
                raise  # a mistake in our SQL, not the database's state
            raise self._unusable(exc) from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
                raise
            raise self._unusable(exc) from exc

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            try:
                if self.path != ":memory:":
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _begin(self, write: bool) -> None:
        """BEGIN (IMMEDIATE for a write), waiting for another process's lock up to the timeout."""
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                self._open().execute("BEGIN IMMEDIATE" if write else "BEGIN")
                return
            except sqlite3.OperationalError as exc:
                # SQLite's busy handler gives up early in some cases (a checkpoint, recovery): try again.
                if not any(word in str(exc).lower() for word in _BUSY_WORDS) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _roll_back_later(self) -> None:
        """Queue a ROLLBACK on the worker thread behind what runs there now; nobody waits for it."""
        if self._executor is None or self._pid != os.getpid():
            return
        try:
            future = self._executor.submit(self._end, "ROLLBACK")
        except RuntimeError:  # the executor was shut down: the connection is closed
            return
        future.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _end(self, statement: str) -> None:
        """COMMIT or ROLLBACK the open transaction, if any; a COMMIT that fails is rolled back, so the
        connection never stays inside a transaction."""
        connection = self._connection
        if connection is not None and connection.in_transaction:
            try:
                connection.execute(statement)
            finally:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.rollback()

    def _execute(self, sql: str, params: tuple[object, ...]) -> tuple[list[Row], int]:
        cursor = self._open().execute(sql, params)
        rows = cursor.fetchall()
        return rows, cursor.rowcount

    def _executemany(self, sql: str, params: list[tuple[object, ...]]) -> int:
        return self._open().executemany(sql, params).rowcount

    def _execute_alone(self, sql: str, params: tuple[object, ...], write: bool) -> list[Row]:
        return self._batch_alone([(sql, params)], write)[0]

    def _batch_alone(self, statements: list[tuple[str, tuple[object, ...]]], write: bool) -> list[list[Row]]:
        self._begin(write)
        try:
            results = [self._execute(sql, params)[0] for sql, params in statements]
        except BaseException:
            self._end("ROLLBACK")
            raise
        self._end("COMMIT")
        return results

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _locked(self, exc: Exception) -> ConnectionLostError:
        return ConnectionLostError(
            f"The database {self.url.display} stayed locked for {self._timeout:g} s ({exc}). Another process "
            "may be holding it in a long transaction; try again, or give the URL a longer ?timeout=."
        )

    def _unusable(self, exc: Exception) -> ConfigurationError:
        return ConfigurationError(
            f"The database {self.url.display} cannot be used ({exc}). Check that its directory exists and is "
            "writable, and that the file is a SQLite database."
        )


class SqliteTransaction:
    """An open SQLite transaction (see :class:`sendchannel._database.Transaction`)."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database
        self._rowcount = -1

    def __repr__(self) -> str:
        return f"<SqliteTransaction on {self._database.url.display}>"

    async def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement; return its rows."""
        rows, self._rowcount = await self._database._call(self._database._execute, sql, tuple(params))
        return rows

    async def executemany(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        """Run one statement for each parameter tuple."""
        self._rowcount = await self._database._call(
            self._database._executemany, sql, [tuple(p) for p in params]
        )

    @property
    def rowcount(self) -> int:
        """How many rows the last statement changed."""
        return self._rowcount
