"""Throttler benchmarks: cost per send for each store beside the `limits` library, Redis commands per
send, and memory over a million sends.

    python bench/bench_throttle.py            # everything (about a minute)
    python bench/bench_throttle.py --quick    # fewer sends, for a smoke run

Figures are printed with the baseline measured in the same run, so ratios mean something on any machine:

- us/send: Throttler(FakeChannel) with each store, minus FakeChannel alone (the throttler's overhead),
  beside a hit on `limits`' moving window (MemoryStorage, and RedisStorage over the same Redis).
  Target: MemoryStore overhead within 2x of a `limits` memory hit.
- Redis commands a send, from INFO commandstats. Target: exactly one round trip (EVALSHA) per send.
- Memory (RSS and the ledger's entries) at checkpoints over 1,000,000 sends under Office 365's limits
  on a VirtualClock. Target: flat once the first day's window has filled.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import limits
import redis
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis_server import RedisServer

from sendchannel import Limits, MemoryStore, Message, Rate, RedisStore, SendResult, SqliteStore, Throttler
from sendchannel._scope import CredentialScope
from sendchannel.testing import FakeChannel, VirtualClock

# A limit the benchmark never reaches, so that every send measures the path of a permitted send.
ROOMY = Limits(rates=(Rate(10_000_000, 3600),))
ROOMY_OFFICE_SHAPE = Limits(rates=(Rate(10_000_000, 60), Rate(100_000_000, 86_400, "recipients")))
OFFICE_365 = Limits(rates=(Rate.per_minute(30), Rate.per_day(10_000, "recipients")))
MESSAGE = Message("alice@example.com", ["bob@example.net"], subject="bench", text="hello")


def per_call(seconds: float, calls: int) -> float:
    return seconds / calls * 1e6


async def timed(body: Callable[[], Awaitable[object]], calls: int) -> float:
    """Microseconds per call of ``body``, the best of three runs."""
    results = []
    for _ in range(3):
        gc.collect()
        started = time.perf_counter()
        for _ in range(calls):
            await body()
        results.append(per_call(time.perf_counter() - started, calls))
    return min(results)


async def bare_channel(calls: int) -> float:
    channel = FakeChannel(limits=ROOMY)

    async def send() -> object:
        return await channel.send(MESSAGE)

    return await timed(send, calls)


async def throttled(calls: int, store_factory: Callable[[], object], limits_: Limits = ROOMY) -> float:
    store = store_factory()
    throttler = Throttler(FakeChannel(limits=limits_), store=store, key=f"bench-{time.time_ns()}")  # type: ignore[arg-type]

    async def send() -> object:
        return await throttler.send(MESSAGE)

    try:
        return await timed(send, calls)
    finally:
        await store.aclose()  # type: ignore[attr-defined]


async def limits_hit(calls: int, storage: MemoryStorage | RedisStorage) -> float:
    limiter = MovingWindowRateLimiter(storage)
    item = limits.RateLimitItemPerHour(10_000_000)
    key = f"bench-{time.time_ns()}"

    async def hit() -> object:
        return await limiter.hit(item, key)

    return await timed(hit, calls)


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}


async def redis_commands(server: RedisServer, calls: int) -> tuple[float, float, dict[str, float]]:
    """(round trips a send, commands a send counting those inside the script, commands by name)."""
    store = RedisStore(server.url)
    channel = FakeChannel(limits=ROOMY_OFFICE_SHAPE)
    throttler = Throttler(channel, store=store, key=f"commands-{time.time_ns()}")
    await throttler.send(MESSAGE)  # loads the script
    with server.client() as client:
        before = command_calls(client)
        for _ in range(calls):
            await throttler.send(MESSAGE)
        after = command_calls(client)
    await store.aclose()
    grown = {name: (after[name] - before.get(name, 0)) / calls for name in after}
    grown = {name: value for name, value in grown.items() if value and name != "info"}
    round_trips = sum(grown.get(name, 0.0) for name in ("evalsha", "eval", "script", "ping"))
    return round_trips, sum(grown.values()), grown


class NullChannel:
    """A channel that keeps nothing (FakeChannel keeps its outbox), so memory measured is the throttler's."""

    name = "null"
    scope = CredentialScope.unrestricted()
    limits = OFFICE_365

    async def send(self, message: Message) -> SendResult:
        return SendResult(message_id=message.message_id, accepted=message.recipients, channel=self.name)

    async def verify(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> NullChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


async def memory_over_sends(total: int) -> list[tuple[int, float, int, int]]:
    """(sends, virtual days, RSS KiB, ledger entries) at checkpoints over ``total`` sends."""
    clock = VirtualClock()
    store = MemoryStore()
    throttler = Throttler(NullChannel(), store=store, clock=clock, max_wait=math.inf)
    checkpoints = sorted({total // 100, total // 10, total // 4, total // 2, 3 * total // 4, total})
    rows = []
    sent = 0
    for checkpoint in checkpoints:
        while sent < checkpoint:
            await throttler.send(MESSAGE)
            sent += 1
        gc.collect()
        entries = sum(len(w.entries) for ledger in store._ledgers.values() for w in ledger.windows.values())
        rows.append((sent, clock.now() / 86_400, rss_kib(), entries))
    return rows


async def main(quick: bool) -> None:
    calls = 5_000 if quick else 20_000
    redis_calls = 2_000 if quick else 10_000
    logging.disable(logging.CRITICAL)  # the channel's debug lines are not what is measured

    print(f"Python {sys.version.split()[0]}, limits {limits.__version__}, redis-py {redis.__version__}")
    print(f"\n== microseconds a send ({calls:,} sends, best of 3) ==")
    bare = await bare_channel(calls)
    memory_one = await throttled(calls, MemoryStore)
    memory_two = await throttled(calls, MemoryStore, ROOMY_OFFICE_SHAPE)
    limits_memory = await limits_hit(calls, MemoryStorage())
    with tempfile.TemporaryDirectory() as directory:
        sqlite = await throttled(calls // 4, lambda: SqliteStore(Path(directory) / "bench.db"))

        server = RedisServer(Path(directory))
        try:
            redis_store = await throttled(redis_calls, lambda: RedisStore(server.url))
            limits_redis = await limits_hit(
                redis_calls, RedisStorage(f"async+redis+unix://{server.socket}", implementation="redispy")
            )
            round_trips, commands, by_name = await redis_commands(server, redis_calls)
        finally:
            server.stop()

    rows = [
        ("FakeChannel.send alone (baseline)", bare, None),
        ("Throttler(FakeChannel, MemoryStore), 1 rate", memory_one, memory_one - bare),
        ("Throttler(FakeChannel, MemoryStore), 2 rates", memory_two, memory_two - bare),
        ("limits moving window hit, MemoryStorage", limits_memory, None),
        ("Throttler(FakeChannel, SqliteStore), 1 rate", sqlite, sqlite - bare),
        ("Throttler(FakeChannel, RedisStore), 1 rate, unix socket", redis_store, redis_store - bare),
        ("limits moving window hit, RedisStorage, unix socket", limits_redis, None),
    ]
    print(f"{'':58} {'us/send':>9} {'overhead':>9}")
    for name, value, overhead in rows:
        print(f"{name:58} {value:9.2f} {'' if overhead is None else f'{overhead:9.2f}':>9}")
    ratio = (memory_one - bare) / limits_memory
    print(f"MemoryStore overhead / limits memory hit: {ratio:.2f}x (target <= 2x)")
    print(f"RedisStore overhead / limits Redis hit:   {(redis_store - bare) / limits_redis:.2f}x")

    print(f"\n== Redis commands a send, two rates ({redis_calls:,} sends, INFO commandstats) ==")
    print(f"round trips a send (EVALSHA, EVAL, SCRIPT, PING): {round_trips:.3f} (target: exactly 1)")
    print(f"commands a send, counting those the script runs inside Redis: {commands:.2f}")
    print("  " + ", ".join(f"{name} {value:.2f}" for name, value in sorted(by_name.items())))

    total = 100_000 if quick else 1_000_000
    print(f"\n== memory over {total:,} sends, Office 365 limits, VirtualClock, MemoryStore ==")
    started = time.perf_counter()
    memory_rows = await memory_over_sends(total)
    elapsed = time.perf_counter() - started
    print(f"{'sends':>10} {'virtual days':>13} {'RSS KiB':>9} {'ledger entries':>15}")
    for sent, days, rss, entries in memory_rows:
        print(f"{sent:>10,} {days:>13.1f} {rss:>9,} {entries:>15,}")
    growth = memory_rows[-1][2] - memory_rows[1][2]
    print(f"RSS growth from {memory_rows[1][0]:,} to {memory_rows[-1][0]:,} sends: {growth:,} KiB")
    print(f"({elapsed:.1f} s of real time, {per_call(elapsed, total):.1f} us a simulated send)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sends, for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
