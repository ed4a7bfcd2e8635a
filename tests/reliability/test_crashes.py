"""Crashes: a sending process killed with SIGKILL, and Redis taken away in the middle of a run.

The throttle's counts must survive both: every send that went out is in the store, nothing is counted but
what went out and what was reserved in flight, and the sliding-window bound holds over the whole timeline,
across the crash and the restart.
"""

from __future__ import annotations

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

from sendchannel.testing._store_conformance import sliding_window_excess
from tests.reliability._load import ROOT
from tests.reliability._sender import CONCURRENCY, RATES
from tests.throttle.test_processes import read_log

# Arrival times are written just after the permit's slot, so they carry a little scheduling jitter.
JITTER = 0.05
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
    delay = random.uniform(1.0, 2.5)

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
    assert len(extra) <= CONCURRENCY, (extra, killed_at)

    # 2. A restarted process goes on inside the same windows, and the bound holds across the kill.
    assert 0 == second.wait(timeout=60)
    resumed = [at for at, _ in read_log(second_log)]
    assert 80 == len(resumed)
    assert min(resumed) < killed_at + longest, "the restart came too late to share a window"
    timeline = [(at, 1) for at in sent + resumed]
    assert {str(rate): 0 for rate in RATES} == {
        str(rate): sliding_window_excess(timeline, rate.count, rate.per, tolerance=JITTER) for rate in RATES
    }
    print(
        f"\nkill -9 after {delay:.2f} s: {len(sent)} sent before, {len(recent)} in the last window, all "
        f"counted, {len(extra)} counted in flight; {len(resumed)} sent after the restart, first one "
        f"{min(resumed) - killed_at:.2f} s after the kill; no window over its limit"
    )
