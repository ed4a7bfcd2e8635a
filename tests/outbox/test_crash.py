"""Crash test: three worker processes SIGKILLed at random moments and restarted, on PostgreSQL and SQLite.

At the end every item is sent, failed or unknown; the server (which logs every Message-ID it delivers) got
every sent item exactly once, no failed item, and each unknown item at most once. Mode ``plain`` sends
through an SmtpChannel to an SMTP server (``_smtp_log_server``). Mode ``idempotent`` sends through the real
SparkpostChannel, whose Idempotency-Key is the Message-ID, to the SparkPost double in its own process
(``_sparkpost_log_server``), which honours the key as SparkPost documents, and drops connections before
and after delivering: there nothing ends unknown and nothing is delivered twice, and some repeats were
answered from the key (the idempotent path was taken). The throttler's bound holds at the server across
all the workers, kills and restarts included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sendchannel import Message, Outbox
from sendchannel.testing import FakeChannel
from sendchannel.testing._store_conformance import sliding_window_excess
from tests.outbox._worker_process import LEASE, RATE

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 5000
WORKERS = 3
KILLS = 8
# The SMTP server logs a message's time after its DATA arrived, the SparkPost double when its request's
# headers did: after its permit's slot by the time a pooled connection, MAIL, RCPT and DATA (or an HTTP
# request) take, which on a loaded machine (CI under coverage, 2 cores) was seen past 0.15 s. Messages
# arriving in any window of per - JITTER seconds were all granted within one window of per seconds as long
# as none took longer than JITTER, so the check stays exact for delays up to half a second.
JITTER = 0.5


@contextlib.contextmanager
def log_server(tmp_path: Path, mode: str, seed: int) -> Iterator[int]:
    """The server for ``mode`` in its own process (SMTP for plain, SparkPost for idempotent); its port.

    Both log each delivery to ``delivered.log``; the SparkPost double logs repeats of an Idempotency-Key
    to ``replays.log``.
    """
    log = str(tmp_path / "delivered.log")
    if mode == "idempotent":
        command = ["tests.outbox._sparkpost_log_server", log, str(tmp_path / "replays.log"), str(seed)]
    else:
        command = ["tests.outbox._smtp_log_server", log, str(seed)]
    process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"the {mode} server did not start: {line!r}"
        yield int(line)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_worker(database: str, port: int, throttle_db: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox._worker_process", database, str(port), str(throttle_db), mode],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def max_in_window(arrivals: list[tuple[float, int]], per: float) -> int:
    """The most arrivals in any window of ``per`` seconds."""
    times = sorted(at for at, _ in arrivals)
    most = start = 0
    for end, at in enumerate(times):
        while times[start] <= at - per:
            start += 1
        most = max(most, end - start + 1)
    return most


def messages(count: int) -> list[Message]:
    return [
        Message("sender@example.com", [f"r{index}@example.net"], subject=f"crash {index}", text="hello")
        for index in range(count)
    ]


async def _counts(database: str) -> dict[str, int]:
    async with Outbox(database, channel=FakeChannel()) as outbox:
        return await outbox.counts()


def crash_run(database: str, tmp_path: Path, mode: str, seed: int) -> None:
    chooser = random.Random(seed)
    log = tmp_path / "delivered.log"
    throttle_db = tmp_path / "throttle.db"

    async def fill() -> dict[int, str]:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            items = await outbox.put_many(messages(ITEMS))
            return {item.id: item.message_id for item in items}

    ids = asyncio.run(fill())
    kills = 0
    with log_server(tmp_path, mode, seed) as port:
        workers = [start_worker(database, port, throttle_db, mode) for _ in range(WORKERS)]
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                time.sleep(chooser.uniform(0.3, 1.2))
                if kills < KILLS:
                    victim = chooser.randrange(WORKERS)
                    workers[victim].kill()
                    workers[victim].wait()
                    kills += 1
                    workers[victim] = start_worker(database, port, throttle_db, mode)
                    continue
                # After the last kill: wait for the workers to drain the outbox (and the leases to end).
                if all(worker.poll() is not None for worker in workers):
                    counts = asyncio.run(_counts(database))
                    if counts["queued"] == 0 and counts["sending"] == 0:
                        break
                    workers = [start_worker(database, port, throttle_db, mode) for _ in range(WORKERS)]
            else:
                raise AssertionError(f"the outbox did not drain in time: {asyncio.run(_counts(database))}")
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    assert KILLS == kills

    async def statuses() -> tuple[dict[str, str], list[str]]:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            items = [item async for item in outbox.items()]
        return {item.message_id: item.status for item in items}, [item.error or "" for item in items]

    final, errors = asyncio.run(statuses())
    assert set(ids.values()) == set(final)
    lines = [line.split() for line in log.read_text().splitlines()]
    delivered = collections.Counter(message_id for _, message_id in lines)
    by_status: dict[str, list[str]] = collections.defaultdict(list)
    for message_id, status in final.items():
        by_status[status].append(message_id)
    assert set(by_status) <= {"sent", "failed", "unknown"}, {k: len(v) for k, v in by_status.items()}
    assert [] == [m for m in by_status["sent"] if delivered[m] != 1], "a sent item not delivered exactly once"
    assert [] == [m for m in by_status["failed"] if delivered[m]], "a failed item was delivered"
    assert [] == [m for m in by_status["unknown"] if delivered[m] > 1], "an unknown item delivered twice"
    if mode == "idempotent":
        assert [] == by_status["unknown"], "an idempotent channel left an item unknown"
        assert [] == [m for m, n in delivered.items() if n > 1]
        replays = [line.split()[1:] for line in (tmp_path / "replays.log").read_text().splitlines()]
        # A repeat with another body (1600) would mean the outbox changed a message between attempts.
        assert [] == [r for r in replays if r not in (["200", "-"], ["409", "1601"])], replays
        assert ["200", "-"] in replays, "no repeat was answered from its Idempotency-Key: nothing proved"
    else:
        # The server's own drops make some items unknown too; these are the kills' (the lease ended).
        killed_while_sending = [e for e in errors if "stopped before recording the outcome" in e]
        assert killed_while_sending, "no worker was killed while sending: the test proved nothing"
    arrivals = [(float(at), 1) for at, _ in lines]
    assert 0 == sliding_window_excess(arrivals, RATE.count, RATE.per, tolerance=JITTER)
    # The bound was reached (the throttler had work to do): some window is nearly full.
    assert RATE.count * 0.8 <= max_in_window(arrivals, RATE.per)
    assert len(by_status["sent"]) > ITEMS * 0.9


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "idempotent"])
def test_killed_workers_on_postgresql_lose_nothing_and_send_nothing_twice(
    postgresql_url: str, tmp_path: Path, mode: str
) -> None:
    """PostgreSQL: 3 workers, 5,000 items, 8 SIGKILLs; the delivery rules and the rate bound hold."""
    crash_run(postgresql_url, tmp_path, mode, seed=16)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "idempotent"])
def test_killed_workers_on_sqlite_lose_nothing_and_send_nothing_twice(tmp_path: Path, mode: str) -> None:
    """SQLite: 3 worker processes, 5,000 items, 8 SIGKILLs; the delivery rules and the rate bound hold."""
    crash_run(f"sqlite:///{tmp_path / 'outbox.db'}", tmp_path, mode, seed=61)


assert LEASE < 10  # the drain above waits for leases of killed workers to end
