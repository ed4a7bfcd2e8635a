"""A caller cancelled while its transaction's BEGIN or a statement runs leaves the connection clean: the next
call works and nothing of the cancelled transaction is committed (real SQLite files, a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sendchannel._database import open_database
from sendchannel._database._postgresql import PostgresDatabase
from sendchannel._database._sqlite import SqliteDatabase

TABLE = "CREATE TABLE IF NOT EXISTS cancel_test (body TEXT NOT NULL)"
# A statement that keeps SQLite busy for a while (it cannot be stopped from the event loop).
SLOW_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c"
)


async def _sqlite_with_trace(tmp_path: Path, prefix: str) -> tuple[SqliteDatabase, threading.Event]:
    """A SQLite database whose connection sets an event when a statement starting with ``prefix`` starts."""
    database = open_database(f"sqlite:///{tmp_path / 'cancel.db'}")
    assert isinstance(database, SqliteDatabase)
    await database.execute(TABLE)  # opens the connection
    started = threading.Event()
    assert database._connection is not None
    database._connection.set_trace_callback(
        lambda statement: started.set() if statement.startswith(prefix) else None
    )
    return database, started


def _bodies(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [row[0] for row in other.execute("SELECT body FROM cancel_test ORDER BY body")]


async def test_sqlite_cancelled_during_begin_leaves_no_transaction_open(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE waits in the worker thread for another process's write lock; the caller is cancelled
    there; the BEGIN succeeds later in the thread, and is rolled back before the next caller's BEGIN."""
    database, begun = await _sqlite_with_trace(tmp_path, "BEGIN IMMEDIATE")
    blocker = sqlite3.connect(tmp_path / "cancel.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: our BEGIN IMMEDIATE waits for it

        async def cancelled() -> None:
            async with database.transaction() as tx:
                await tx.execute("INSERT INTO cancel_test (body) VALUES ('half')")

        task = asyncio.create_task(cancelled())
        assert await asyncio.to_thread(begun.wait, 30), "BEGIN IMMEDIATE never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        blocker.execute("ROLLBACK")  # now the thread's BEGIN succeeds

        async with database.transaction() as tx:  # was: "cannot start a transaction within a transaction"
            await tx.execute("INSERT INTO cancel_test (body) VALUES ('after')")
        assert [("after",)] == await database.execute("SELECT body FROM cancel_test", write=False)
        assert ["after"] == _bodies(tmp_path / "cancel.db")
        assert database._connection is not None
        assert not database._connection.in_transaction
    finally:
        blocker.close()
        await database.aclose()


async def test_sqlite_cancelled_during_a_statement_commits_nothing_and_the_next_call_works(
    tmp_path: Path,
) -> None:
    """The caller is cancelled while a statement of its transaction runs in the worker thread: what the
    transaction wrote before is rolled back, and the next transaction starts on a clean connection."""
    database, slow_started = await _sqlite_with_trace(tmp_path, "WITH RECURSIVE")
    try:

        async def cancelled() -> None:
            async with database.transaction() as tx:
                await tx.execute("INSERT INTO cancel_test (body) VALUES ('half')")
                await tx.execute(SLOW_SQLITE)
                await tx.execute("INSERT INTO cancel_test (body) VALUES ('never')")

        task = asyncio.create_task(cancelled())
        assert await asyncio.to_thread(slow_started.wait, 30), "the slow statement never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async with database.transaction() as tx:
            await tx.execute("INSERT INTO cancel_test (body) VALUES ('after')")
        assert ["after"] == _bodies(tmp_path / "cancel.db")
        assert database._connection is not None
        assert not database._connection.in_transaction
    finally:
        await database.aclose()


async def test_sqlite_a_single_statement_cancelled_mid_call_is_all_or_nothing(tmp_path: Path) -> None:
    """``execute`` (a statement in a transaction of its own) cancelled while the thread runs it: the
    statement's transaction ends in the thread either way, and the next call works."""
    database, slow_started = await _sqlite_with_trace(tmp_path, "INSERT")
    try:
        task = asyncio.create_task(
            database.execute(
                "INSERT INTO cancel_test (body) SELECT 'row' FROM ("
                + SLOW_SQLITE.replace("SELECT count(*) FROM c", "SELECT x FROM c")
                + ")"
            )
        )
        assert await asyncio.to_thread(slow_started.wait, 30), "the insert never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await database.execute("INSERT INTO cancel_test (body) VALUES ('after')")
        rows = await database.execute("SELECT body, COUNT(*) FROM cancel_test GROUP BY body ORDER BY body")
        assert rows in ([("after", 1)], [("after", 1), ("row", 3_000_000)])  # the whole insert or none of it
        assert database._connection is not None
        assert not database._connection.in_transaction
    finally:
        await database.aclose()


async def test_postgresql_a_cancelled_transaction_closes_its_connection_and_commits_nothing(
    postgresql_url: str,
) -> None:
    """Cancelled while a statement runs on the server: the connection is closed, not pooled, the next call
    gets a clean one, and the transaction's earlier insert never commits."""
    database = open_database(postgresql_url, max_connections=1)
    assert isinstance(database, PostgresDatabase)
    try:
        await database.execute(TABLE)
        seen: list[object] = []

        async def cancelled() -> None:
            async with database.transaction() as tx:
                seen.append(tx.connection)  # type: ignore[attr-defined]
                await tx.execute("INSERT INTO cancel_test (body) VALUES ('half')")
                await tx.execute("SELECT pg_sleep(20)")

        task = asyncio.create_task(cancelled())
        watcher = open_database(postgresql_url)
        try:
            deadline = time.monotonic() + 30
            while not await watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE ?",
                ("SELECT pg_sleep%",),
            ):
                assert time.monotonic() < deadline, "pg_sleep never started"
                await asyncio.sleep(0.01)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 10  # the caller is not held until the statement ends
            assert seen[0].closed  # type: ignore[attr-defined]
            assert seen[0] not in database._idle

            # One connection allowed: the next call has a new, clean one.
            await database.execute("INSERT INTO cancel_test (body) VALUES ('after')")
            assert [("after",)] == await watcher.execute("SELECT body FROM cancel_test ORDER BY body")
        finally:
            await watcher.aclose()
    finally:
        await database.aclose()
