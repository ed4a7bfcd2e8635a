"""SqliteStore: counts that survive restarts, a locked database, clear errors, and a throttled day on it."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sendchannel import (
    ConfigurationError,
    ConnectionLostError,
    Limits,
    Rate,
    SqliteStore,
    Throttler,
)
from sendchannel.testing import VirtualClock
from sendchannel.testing._store_conformance import sliding_window_excess
from tests.throttle.helpers import LoggingChannel, message

MINUTE = Rate(2, 60)


class Hold:
    """When the holder let go of the lock (``time.monotonic()`` just before its COMMIT)."""

    released = math.inf


@contextmanager
def database_held(path: str, seconds: float) -> Iterator[Hold]:
    """Another connection holds the write lock of ``path`` for ``seconds``, from a thread."""
    holding = threading.Event()
    hold_info = Hold()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(seconds)
        hold_info.released = time.monotonic()
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait()
    try:
        yield hold_info
    finally:
        thread.join()


async def test_counts_survive_closing_and_reopening_the_database(sqlite_path: str) -> None:
    """A new SqliteStore on the same file (a restarted process) sees the sends already recorded."""
    clock = VirtualClock(start=1_000.0)
    first = SqliteStore(sqlite_path)
    for _ in range(2):
        assert (await first.reserve("k", [(MINUTE, 1)], now=clock.now, max_wait=0)).granted
    await first.aclose()

    reopened = SqliteStore(sqlite_path)
    refused = await reopened.reserve("k", [(MINUTE, 1)], now=clock.now, max_wait=0)
    await reopened.aclose()

    assert not refused.granted
    assert 1_060.0 == refused.at


async def test_a_locked_database_is_waited_for(sqlite_path: str) -> None:
    """While another process holds the database, a reserve waits for it and then succeeds."""
    store = SqliteStore(sqlite_path)
    await store.verify()  # creates the tables
    with database_held(sqlite_path, 0.3) as hold:
        reservation = await store.reserve("k", [(MINUTE, 1)], now=time.time, max_wait=0)
        finished = time.monotonic()
    await store.aclose()

    assert reservation.granted
    assert finished >= hold.released  # it waited for the lock, however slowly the machine ran


async def test_a_database_locked_for_longer_than_the_timeout_fails_clearly(sqlite_path: str) -> None:
    """ConnectionLostError names the file and the remedy; nothing was recorded."""
    store = SqliteStore(sqlite_path, timeout=0.2)
    await store.verify()
    # Held well past the 0.2 s timeout: SQLite counts its own sleeps, which a loaded machine stretches.
    with database_held(sqlite_path, 1.5), pytest.raises(ConnectionLostError) as caught:
        await store.reserve("k", [(MINUTE, 1)], now=time.time, max_wait=0)
    assert sqlite_path in str(caught.value)
    assert "stayed locked" in str(caught.value)
    # Nothing was recorded: both of the window's sends are still there.
    for _ in range(2):
        assert (await store.reserve("k", [(MINUTE, 1)], now=time.time, max_wait=0)).granted
    await store.aclose()


async def test_a_reserve_cancelled_while_the_database_is_locked_gives_its_slot_back(sqlite_path: str) -> None:
    """The transaction finishes in the worker thread after the cancel, and its permit is released."""
    one = Rate(1, 60)
    store = SqliteStore(sqlite_path)
    await store.verify()
    with database_held(sqlite_path, 0.3):
        task = asyncio.ensure_future(store.reserve("k", [(one, 1)], now=time.time, max_wait=0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The release runs in the worker thread after the cancelled transaction: wait for it (a refused ask
    # records nothing, so asking again is harmless).
    deadline = time.monotonic() + 30
    reservation = await store.reserve("k", [(one, 1)], now=time.time, max_wait=0)
    while not reservation.granted and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        reservation = await store.reserve("k", [(one, 1)], now=time.time, max_wait=0)
    await store.aclose()

    assert reservation.granted


async def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    """A path to something else fails with ConfigurationError naming it, before anything is sent."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    channel = LoggingChannel(limits=Limits(rates=(MINUTE,)))
    throttler = Throttler(channel, store=SqliteStore(path))

    with pytest.raises(ConfigurationError, match=r"notes\.txt"):
        await throttler.send(message())

    assert [] == channel.attempts


async def test_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    """verify() says the database cannot be used and what to check."""
    store = SqliteStore(tmp_path / "missing" / "quota.db")
    with pytest.raises(ConfigurationError, match="directory exists and is writable"):
        await store.verify()


def test_building_a_store_touches_no_file(tmp_path: Path) -> None:
    """Nothing is created until the first use (so a store can be built at import time)."""
    SqliteStore(tmp_path / "quota.db")
    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize("timeout", [0, -1, math.inf, "5"])
def test_timeout_must_be_a_positive_number(tmp_path: Path, timeout: object) -> None:
    """A bad timeout is refused when the store is built."""
    with pytest.raises(ConfigurationError, match="timeout"):
        SqliteStore(tmp_path / "q.db", timeout=timeout)  # type: ignore[arg-type]


async def test_a_closed_store_cannot_be_used(sqlite_path: str) -> None:
    """Using a store after aclose() raises RuntimeError saying so."""
    store = SqliteStore(sqlite_path)
    await store.verify()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.verify()


async def test_a_throttled_hour_on_sqlite_keeps_the_bound(sqlite_path: str) -> None:
    """The throttler's clock drives SqliteStore: a simulated hour of 4 senders keeps 30 a minute exactly."""
    clock = VirtualClock(start=1_700_000_000.0)
    rate = Rate.per_minute(30)
    channel = LoggingChannel(limits=Limits(rates=(rate,)), clock=clock)
    store = SqliteStore(sqlite_path)
    throttler = Throttler(channel, store=store, clock=clock, max_wait=math.inf)
    end = clock.now() + 3_600

    async def sender() -> None:
        while clock.now() < end:
            await throttler.send(message())

    await asyncio.gather(*(sender() for _ in range(4)))
    await store.aclose()

    log = [(at, 1) for at, _ in channel.log]
    assert 0 == sliding_window_excess(log, rate.count, rate.per)
    assert 60 * 30 <= sum(1 for at, _ in log if at < end)
