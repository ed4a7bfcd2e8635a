"""PostgreSQL for the directory and the outbox: psycopg 3, async, a small pool of connections.

Connections are opened on first use (at most ``max_connections`` a process, kept open between
transactions) in autocommit mode, and each transaction is an explicit ``BEGIN ... COMMIT``; a single
statement (``execute``) runs in autocommit, one round trip, and ``batch`` pipelines BEGIN, its statements
and COMMIT into one round trip. A connection
that breaks is dropped and the error becomes a :class:`~sendchannel.errors.ConnectionLostError`; the
password never appears in any message (psycopg's own messages do not carry it, and the URL is shown
redacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sendchannel._database._base import Row, Transaction
from sendchannel._database._errors import ConstraintError
from sendchannel._database._url import DatabaseURL
from sendchannel.errors import ConfigurationError, ConnectionLostError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresDatabase"]

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigurationError(
            "A postgresql:// database needs psycopg 3, which is not installed; "
            'install it with: pip install "sendchannel[postgresql]"'
        ) from exc
    return psycopg


_placeholders: dict[str, str] = {}


def _convert(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` to ``%%``), cached."""
    converted = _placeholders.get(sql)
    if converted is None:
        converted = sql.replace("%", "%%").replace("?", "%s")
        if len(_placeholders) < 4096:
            _placeholders[sql] = converted
    return converted


class _Conflict(ConnectionLostError):
    """PostgreSQL aborted the transaction to resolve a conflict (serialization failure, deadlock)."""


class PostgresDatabase:
    """A PostgreSQL database reached with psycopg 3's async connections.

    Args:
        url: The parsed ``postgresql://`` URL.
        max_connections: The most connections this process opens to the server at once.
    """

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: DatabaseURL, *, max_connections: int = 4) -> None:
        if url.kind != "postgresql" or url.dsn is None:
            raise ConfigurationError(f"{url.display} is not a PostgreSQL database URL")
        _psycopg()
        #: The parsed URL (``url.display`` is safe to show).
        self.url = url
        self._max = max_connections
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.url.display!r})"

    # -- the Database interface ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _using(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of the pool for one unit of work, its errors mapped to the layer's; a connection
        that broke, or whose work was cancelled (a statement may still run on the server), is closed."""
        psycopg = _psycopg()
        semaphore = self._pool()
        async with semaphore:
            connection = await self._acquire()
            healthy = False
            try:
                try:
                    yield connection
                    healthy = True
                except psycopg.errors.IntegrityError as exc:
                    healthy = True
                    diag = exc.diag
                    raise ConstraintError(
                        f"{diag.message_primary or 'a constraint refused the row'}"
                        f" (constraint {diag.constraint_name})"
                    ) from None
                except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                    healthy = True
                    raise _Conflict(f"PostgreSQL at {self.url.display} aborted a transaction: {exc}") from exc
                except psycopg.OperationalError as exc:
                    raise self._lost(exc) from exc
                except asyncio.CancelledError:
                    # A statement may still be running on the server: never hand this connection out again.
                    raise
                except BaseException:
                    healthy = not connection.broken
                    raise
            finally:
                # Autocommit connections: anything but a clean idle state (a transaction left open) is closed.
                if healthy and connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    healthy = False
                self._release(connection, healthy=healthy)

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[PostgresTransaction]:
        """One transaction; see :meth:`sendchannel._database.Database.transaction`."""
        async with self._using() as connection, connection.transaction():
            yield PostgresTransaction(self, connection)

    async def run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool = True) -> T:
        """Run ``body(tx)`` in a transaction; again after a serialization failure or deadlock."""

        async def attempt() -> T:
            async with self.transaction(write=write) as tx:
                return await body(tx)

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.url.timeout
        delay = 0.005
        while True:
            try:
                return await attempt()
            except _Conflict:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.2)

    async def execute(self, sql: str, params: Sequence[object] = (), *, write: bool = True) -> list[Row]:
        """Run one statement in a transaction of its own: in autocommit, one round trip to the server (a
        single statement is atomic on its own; no BEGIN, no COMMIT)."""
        converted, values = _convert(sql), tuple(params)

        async def attempt() -> list[Row]:
            async with self._using() as connection:
                cursor = await connection.execute(converted, values)
                return [] if cursor.description is None else await cursor.fetchall()

        return await self._retrying(attempt)

    async def batch(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool = True
    ) -> list[list[Row]]:
        """Run the statements in order in one transaction; return each one's rows. Pipelined: BEGIN, the
        statements and COMMIT go to the server together, one round trip."""
        if len(statements) == 1:
            return [await self.execute(*statements[0], write=write)]
        converted = [(_convert(sql), tuple(params)) for sql, params in statements]

        async def attempt() -> list[list[Row]]:
            async with self._using() as connection:
                async with connection.pipeline(), connection.transaction():
                    cursors = [await connection.execute(sql, params) for sql, params in converted]
                return [[] if c.description is None else await c.fetchall() for c in cursors]

        return await self._retrying(attempt)

    async def aclose(self) -> None:
        """Close the idle connections (idempotent); connections in use close when their transaction ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        if self._pid != os.getpid():
            return
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.close()

    # -- the pool ------------------------------------------------------------------------------------------

    def _pool(self) -> asyncio.Semaphore:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid() or self._loop is not loop:
            # A child after fork(), or another event loop: the old connections are not ours to use.
            for connection in self._idle if self._pid == os.getpid() else ():
                with contextlib.suppress(Exception):
                    connection.pgconn.finish()
            self._idle = []
            self._pid = os.getpid()
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self._max)
        assert self._semaphore is not None
        return self._semaphore

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and not connection.broken:
                return connection
        psycopg = _psycopg()
        assert self.url.dsn is not None
        try:
            return await psycopg.AsyncConnection.connect(  # type: ignore[no-any-return]
                self.url.dsn, autocommit=True, connect_timeout=max(1, math.ceil(self.url.timeout))
            )
        except psycopg.OperationalError as exc:
            text = self._scrub(str(exc))
            if "password authentication failed" in text or "no password supplied" in text:
                raise ConfigurationError(
                    f"PostgreSQL at {self.url.display} refused the credentials: {text}. Check the user and "
                    "password in the database URL."
                ) from None
            raise ConnectionLostError(
                f"Cannot reach PostgreSQL at {self.url.display}: {text}. Check that the server runs and the "
                "URL's host, port and database are right."
            ) from None

    def _release(self, connection: psycopg.AsyncConnection[Any], *, healthy: bool) -> None:
        if healthy and not self._closed and not connection.broken and len(self._idle) < self._max:
            self._idle.append(connection)
        else:
            with contextlib.suppress(Exception):
                connection.pgconn.finish()

    def _scrub(self, text: str) -> str:
        password = _password(self.url.dsn or "")
        return text.replace(password, "***") if password else text

    def _lost(self, exc: Exception) -> ConnectionLostError:
        return ConnectionLostError(
            f"The connection to PostgreSQL at {self.url.display} failed: {self._scrub(str(exc))}"
        )


def _password(dsn: str) -> str:
    import urllib.parse

    try:
        return urllib.parse.unquote(urllib.parse.urlsplit(dsn).password or "")
    except ValueError:
        return ""


class PostgresTransaction:
    """An open PostgreSQL transaction (see :class:`sendchannel._database.Transaction`)."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, database: PostgresDatabase, connection: psycopg.AsyncConnection[Any]) -> None:
        self._database = database
        #: The psycopg ``AsyncConnection`` (for what only PostgreSQL has, such as ``COPY``).
        self.connection = connection
        self._rowcount = -1

    def __repr__(self) -> str:
        return f"<PostgresTransaction on {self._database.url.display}>"

    async def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement; return its rows."""
        cursor = await self.connection.execute(_convert(sql), tuple(params))
        self._rowcount = cursor.rowcount
        if cursor.description is None:
            return []
        return await cursor.fetchall()

    async def executemany(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        """Run one statement for each parameter tuple."""
        async with self.connection.cursor() as cursor:
            await cursor.executemany(_convert(sql), [tuple(p) for p in params])
            self._rowcount = cursor.rowcount

    @property
    def rowcount(self) -> int:
        """How many rows the last statement changed."""
        return self._rowcount
