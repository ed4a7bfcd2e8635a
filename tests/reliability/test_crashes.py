"""Crashes: a sending process killed with SIGKILL, and Redis taken away in the middle of a run.

The throttle's counts must survive both: every send that went out is in the store, nothing is counted but
what went out and what was reserved in flight, and the sliding-window bound holds over the whole timeline,
across the crash and the restart.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sendchannel import (
    ConnectionLostError,
    Limits,
    Rate,
    RedisStore,
    RetryPolicy,
    Throttler,
    pipeline,
    send_all,
)
from sendchannel.testing._store_conformance import sliding_window_excess
from tests import sentinels
from tests.reliability._load import ROOT, RestartableRedis
from tests.reliability._sender import CONCURRENCY, RATES
from tests.throttle.helpers import LoggingChannel, message
from tests.throttle.test_processes import read_log

# Arrival times are written just after the permit's slot, so they carry scheduling jitter: a few hundred
# milliseconds when the machine is loaded (0.05 s was exceeded under load).
JITTER = 0.25
KEY = "fake:*"


def start_sender(database: Path, log: Path, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._sender", str(database), str(log), str(count)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def ledger(database: Path, window: str) -> list[float]:
    """The slots the SQLite file holds for the sender's key and ``window``, in order."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT slot FROM sendchannel_throttle_entries WHERE key = ? AND window = ? ORDER BY slot",
            (KEY, window),
        ).fetchall()
    return [slot for (slot,) in rows]


def match(arrivals: list[float], slots: list[float]) -> tuple[list[float], list[float]]:
    """Pair each arrival with a distinct slot at most JITTER before it; return (unmatched arrivals,
    unmatched slots)."""
    free = list(slots)
    missing = []
    for at in sorted(arrivals):
        index = bisect.bisect_left(free, at - JITTER)
        if index < len(free) and free[index] <= at:
            del free[index]
        else:
            missing.append(at)
    return missing, free


@pytest.mark.slow
def test_a_sender_killed_with_sigkill_leaves_every_send_counted_and_a_restart_keeps_the_bound(
    tmp_path: Path,
) -> None:
    """kill -9 a send_all(pipeline(..., store=SqliteStore)) process at a random moment: every send it made
    in the current window is in the file, no more are counted than the sends in flight, and a process
    started at once goes on inside the same windows without going over any limit."""
    database = tmp_path / "quota.db"
    first_log = tmp_path / "first.log"
    second_log = tmp_path / "second.log"
    longest = max(rate.per for rate in RATES)
    delay = random.uniform(0.3, 4.0)

    first = start_sender(database, first_log, 100_000)
    deadline = time.monotonic() + 30
    while not (first_log.exists() and first_log.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(first.pid, signal.SIGKILL)
    killed_at = time.time()
    assert -signal.SIGKILL == first.wait(timeout=10)
    second = start_sender(database, second_log, 80)

    # 1. The file after the kill: the sends of the last window are all there, plus at most the sends in
    #    flight (reserved, not yet gone out).
    sent = [at for at, _ in read_log(first_log)]
    slots = ledger(database, f"{longest!r}/messages")
    recent = [at for at in sent if at > killed_at - longest + JITTER]
    missing, extra = match(recent, [slot for slot in slots if slot > killed_at - longest])
    assert [] == missing, f"sends not counted (killed after {delay:.2f} s)"
    # Counted but never sent: the sends in flight. Slots within JITTER of the window's start are left out,
    # as their arrivals are (a burst there would otherwise look like sends counted twice).
    in_flight = [slot for slot in extra if slot > killed_at - longest + JITTER]
    assert len(in_flight) <= CONCURRENCY, (in_flight, killed_at)

    # 2. A restarted process goes on inside the same windows, and the bound holds across the kill.
    assert 0 == second.wait(timeout=60)
    resumed = [at for at, _ in read_log(second_log)]
    assert 80 == len(resumed)
    assert min(resumed) < max(sent) + longest, "the restart came too late to share a window"
    timeline = [(at, 1) for at in sent + resumed]
    assert {str(rate): 0 for rate in RATES} == {
        str(rate): sliding_window_excess(timeline, rate.count, rate.per, tolerance=JITTER) for rate in RATES
    }
    print(
        f"\nkill -9 after {delay:.2f} s: {len(sent)} sent before, {len(recent)} in the last window, all "
        f"counted, {len(extra)} counted in flight; {len(resumed)} sent after the restart, first one "
        f"{min(resumed) - killed_at:.2f} s after the kill; no window over its limit"
    )


#: Limits whose windows are never idle for long, so that the senders keep asking Redis during the outage.
REDIS_RATES = (Rate(10, 0.5), Rate(50, 3.0))


def persisted_slots(server: RestartableRedis, window: str) -> list[float]:
    """The slots Redis holds for the key's ``window`` (Redis's own time, which is this host's)."""
    with server.client() as client:
        entries = client.zrange(f"sendchannel:{{{KEY}}}:{window}", 0, -1, withscores=True)
    return sorted(score for _, score in entries)


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [True, False], ids=["saved", "empty"])
async def test_sends_stop_while_redis_is_away_and_resume_when_it_returns(
    tmp_path: Path, persistent: bool
) -> None:
    """Stop Redis while a RedisStore-throttled send_all runs: sends fail with ConnectionLostError naming
    Redis, none goes out without a permit, and sending resumes when Redis is back on the same address.
    Saved on shutdown (as an orderly redis-server does with save points), the windows survive and the bound
    holds across the outage; restarted empty, the budget starts afresh, so the window around the restart
    may take up to one window's count more: never more."""
    server = RestartableRedis(tmp_path, persistent=persistent)
    server.start()
    longest = max(rate.per for rate in REDIS_RATES)
    channel = LoggingChannel(limits=Limits(rates=REDIS_RATES))
    store = RedisStore(server.url, timeout=1.0)
    # A message gives up after 0.6 s without Redis, so some fail during the outage and later ones resume.
    retry = RetryPolicy(attempts=3, initial=0.2, maximum=0.4, jitter=False)
    sender = pipeline(channel, store=store, retry=retry)
    messages = [message() for _ in range(120)]
    try:
        batch = asyncio.create_task(send_all(sender, messages, concurrency=CONCURRENCY))
        await asyncio.sleep(1.2)
        await asyncio.to_thread(server.stop)
        stopped_at = time.time()
        await asyncio.sleep(1.5)
        restarting_at = time.time()
        await asyncio.to_thread(server.start)
        restored = persisted_slots(server, f"{longest!r}/messages")
        report = await asyncio.wait_for(batch, 60)
    finally:
        await store.aclose()
        server.stop()

    sent = [at for at, _ in channel.log]
    during = [at for at in sent if stopped_at + JITTER < at < restarting_at]
    after = [at for at in sent if at >= restarting_at]
    # Sends fail clearly while Redis is away; none goes out unthrottled.
    assert report.failed
    for outcome in report.failed:
        error = outcome.error
        assert isinstance(error, ConnectionLostError)
        assert f"cannot reach Redis at redis://:***@127.0.0.1:{server.port}/0" in str(error)
        assert "nothing was sent" in str(error)
        assert [] == sentinels.leaked(str(error))
    assert len(during) <= CONCURRENCY  # only sends that held a permit before Redis went away
    assert after, "sending did not resume"
    assert len(messages) == len(report.sent) + len(report.failed)
    assert len(report.sent) == len(sent)
    timeline = [(at, 1) for at in sent]
    excess = {
        str(rate): sliding_window_excess(timeline, rate.count, rate.per, tolerance=JITTER)
        for rate in REDIS_RATES
    }
    if persistent:
        # Every send of the window around the outage is still counted after the restart.
        recent = [at for at in sent if stopped_at - longest / 2 + JITTER < at < restarting_at]
        missing, _ = match(recent, restored)
        assert [] == missing
        assert {str(rate): 0 for rate in REDIS_RATES} == excess
    else:
        assert [] == restored
        assert all(0 <= excess[str(rate)] <= rate.count for rate in REDIS_RATES), excess
    print(
        f"\nredis away ({'saved' if persistent else 'empty'}): {len(report.sent)} sent "
        f"({len(during)} during the outage with permits taken before, {len(after)} after), "
        f"{len(report.failed)} failed with ConnectionLostError; excess over the limits {excess}"
    )


async def test_the_first_send_after_redis_restarts_on_the_same_address_goes_through(tmp_path: Path) -> None:
    """The store's pooled connections die with Redis; once Redis is back, a send (with no retry layer)
    must not fail with "cannot reach Redis": the store opens a new connection and asks again."""
    server = RestartableRedis(tmp_path, persistent=False)
    server.start()
    store = RedisStore(server.url, timeout=1.0)
    channel = LoggingChannel(limits=Limits(rates=REDIS_RATES))
    throttler = Throttler(channel, store=store)
    try:
        await asyncio.gather(*(throttler.send(message()) for _ in range(4)))
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionLostError, match="cannot reach Redis"):
            await throttler.send(message())
        await asyncio.to_thread(server.start)
        await throttler.send(message())
    finally:
        await store.aclose()
        server.stop()
    assert 5 == len(channel.log)


async def test_a_hung_redis_fails_sends_after_the_timeout_and_they_resume_when_it_wakes(
    tmp_path: Path,
) -> None:
    """Redis stopped with SIGSTOP (hung, not gone): each send fails after the store's timeout with
    ConnectionLostError saying Redis did not answer and nothing was sent; after SIGCONT sending resumes, and
    the asks Redis ran late only count against the budget (nothing goes over a limit)."""
    server = RestartableRedis(tmp_path, persistent=False)
    server.start()
    assert server.process is not None
    store = RedisStore(server.url, timeout=0.3)
    channel = LoggingChannel(limits=Limits(rates=REDIS_RATES))
    throttler = Throttler(channel, store=store)
    try:
        await asyncio.gather(*(throttler.send(message()) for _ in range(4)))
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ConnectionLostError) as caught:
                await throttler.send(message())
            waited = time.monotonic() - started
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        await asyncio.gather(*(throttler.send(message()) for _ in range(12)))
    finally:
        await store.aclose()
        server.stop()
    assert 0.3 <= waited < 2.0
    assert f"Redis at redis://:***@127.0.0.1:{server.port}/0 did not answer" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))
    assert 16 == len(channel.log)
    for rate in REDIS_RATES:
        assert 0 == sliding_window_excess(channel.log, rate.count, rate.per, tolerance=JITTER), rate
