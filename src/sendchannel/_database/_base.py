"""What every database of the layer offers: transactions of SQL statements, one placeholder style.

SQL is written once for both engines, with ``?`` placeholders (the PostgreSQL side turns them into
``%s``), so a ``?`` must not appear inside a string literal. Where the engines differ (column types,
``FOR UPDATE SKIP LOCKED``), branch on :attr:`Database.dialect`. Portable habits: times as epoch seconds
in ``REAL``/``DOUBLE PRECISION`` columns, booleans as ``INTEGER`` 0/1, secrets as ``BLOB``/``BYTEA``,
``INSERT ... ON CONFLICT ... DO UPDATE`` and ``RETURNING`` (both engines have them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

from sendchannel._database._url import DatabaseURL

__all__ = ["Database", "Dialect", "Row", "Transaction"]

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]


class Transaction(Protocol):
    """One open transaction: statements run in order and commit together when the block ends."""

    @property
    def dialect(self) -> Dialect:
        """``"sqlite"`` or ``"postgresql"``."""

    async def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement; return its rows (an empty list for a statement that returns none)."""

    async def executemany(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        """Run one statement once for each parameter tuple."""

    @property
    def rowcount(self) -> int:
        """How many rows the last statement changed."""


class Database(Protocol):
    """A SQLite file or a PostgreSQL server, reached asynchronously; see :func:`open_database`."""

    @property
    def dialect(self) -> Dialect:
        """``"sqlite"`` or ``"postgresql"``."""

    @property
    def url(self) -> DatabaseURL:
        """The parsed URL (its ``display`` is safe to show)."""

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.transaction() as tx:`` — commits at the end, rolls back on an exception.

        ``write=True`` takes the write lock at once on SQLite (``BEGIN IMMEDIATE``), so a transaction that
        reads then writes never fails half-way on a lock; ``write=False`` is for reads only.
        """

    async def run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool = True) -> T:
        """Run ``body(tx)`` in a transaction, again from the start after a conflict that the engine
        resolves by aborting one side (PostgreSQL serialization failure or deadlock), up to the timeout."""

    async def execute(self, sql: str, params: Sequence[object] = (), *, write: bool = True) -> list[Row]:
        """Run one statement in a transaction of its own; return its rows (``write=False`` for a read,
        which on SQLite waits for no writer)."""

    async def batch(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool = True
    ) -> list[list[Row]]:
        """Run ``(sql, params)`` statements in order in one transaction; return each one's rows. The
        cheapest way to a few statements that need no answer in between: on PostgreSQL BEGIN, the
        statements and COMMIT go in one round trip (a pipeline); on SQLite, one trip to the worker thread."""

    async def aclose(self) -> None:
        """Close every connection this process holds (idempotent)."""
