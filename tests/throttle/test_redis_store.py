"""RedisStore against a real Redis: one round trip a send, the server's time, expiring keys, clear errors."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import redis
import redis.asyncio

from sendchannel import (
    ConfigurationError,
    ConnectionLostError,
    Limits,
    Rate,
    RedisStore,
    ThrottledError,
    Throttler,
)
from sendchannel._clock import SystemClock
from sendchannel.testing._store_conformance import sliding_window_excess
from tests import sentinels
from tests.throttle.conftest import RedisServer, free_port
from tests.throttle.helpers import LoggingChannel, message

OFFICE_365 = (Rate.per_minute(30), Rate.per_day(10_000, "recipients"))


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls of each command so far, from INFO commandstats (commands run by scripts included)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


#: The commands the store's Lua script runs inside Redis (no round trip of their own).
SCRIPT_COMMANDS = {
    "time", "get", "set", "zcard", "hget", "hset", "zrange", "zrangebyscore", "zremrangebyrank", "zadd",
    "pexpire",
}


async def test_each_permitted_send_is_one_round_trip(redis_server: RedisServer, redis_url: str) -> None:
    """After the script is loaded, N sends cost exactly N EVALSHA calls and no other client command."""
    store = RedisStore(redis_url)
    roomy = (Rate(1_000, 60), Rate(100_000, 86_400, "recipients"))
    throttler = Throttler(LoggingChannel(limits=Limits(rates=roomy)), store=store)
    await throttler.send(message(3))  # loads the script (NOSCRIPT, SCRIPT LOAD, EVALSHA)
    with redis_server.client() as stats:
        before = command_calls(stats)
        for _ in range(50):
            await throttler.send(message(3))
        after = command_calls(stats)
    await store.aclose()

    grown = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert 50 == grown.pop("evalsha")
    assert 1 == grown.pop("info")  # the test's own INFO, before the sends
    assert set() == set(grown) - SCRIPT_COMMANDS


async def test_the_script_is_loaded_again_after_redis_forgets_it(
    redis_server: RedisServer, redis_url: str
) -> None:
    """SCRIPT FLUSH (a restarted Redis) costs one NOSCRIPT answer and a load, then sends go on."""
    store = RedisStore(redis_url)
    one = Rate(100, 60)
    assert (await store.reserve("k", [(one, 1)], now=time.time, max_wait=0)).granted
    with redis_server.client() as client:
        client.script_flush()
    assert (await store.reserve("k", [(one, 1)], now=time.time, max_wait=0)).granted
    await store.aclose()


async def test_time_comes_from_the_redis_server_not_the_callers_clock(redis_url: str) -> None:
    """Throttlers whose clocks are an hour apart still keep one sliding window between them."""

    class SkewedClock(SystemClock):
        def __init__(self, skew: float) -> None:
            self.skew = skew

        def now(self) -> float:
            return time.time() + self.skew

    rate = Rate(1, 0.5)
    store = RedisStore(redis_url)
    arrivals: list[float] = []
    throttlers = []
    for skew in (-3600.0, 3600.0):
        channel = LoggingChannel(limits=Limits(rates=(rate,)))
        throttlers.append(Throttler(channel, store=store, clock=SkewedClock(skew), key="shared"))

    async def send(throttler: Throttler) -> None:
        await throttler.send(message())
        arrivals.append(time.time())

    await asyncio.gather(*(send(throttlers[index % 2]) for index in range(4)))
    await store.aclose()

    # Arrivals are noted after each send returns, so one noted late shortens the next gap: a margin of 0.2 s
    # of the 0.5 s window keeps that out, while clocks an hour apart would let sends go together.
    gaps = [later - earlier for earlier, later in zip(sorted(arrivals), sorted(arrivals)[1:], strict=False)]
    assert all(gap > 0.5 - 0.2 for gap in gaps), gaps


async def test_keys_expire_with_their_windows(redis_server: RedisServer, redis_url: str) -> None:
    """Every key the store writes carries an expiry no longer than its window (or the pause)."""
    store = RedisStore(redis_url)
    rates = (Rate(5, 2.0), Rate(50, 4.0, "recipients"))
    assert (await store.reserve("k", [(rates[0], 1), (rates[1], 3)], now=time.time, max_wait=0)).granted
    await store.pause("k", 1.5, now=time.time)
    await store.aclose()

    with redis_server.client() as client:
        ttls = {key.decode(): client.pttl(key) for key in client.keys("sendchannel:*")}
    assert {
        "sendchannel:{k}",
        "sendchannel:{k}:2.0/messages",
        "sendchannel:{k}:4.0/recipients",
        "sendchannel:{k}:pause",
    } == set(ttls)
    # No longer than the window (strict); the lower bounds leave a loaded machine a second to read them.
    assert 1_000 < ttls["sendchannel:{k}:2.0/messages"] <= 2_001
    assert 3_000 < ttls["sendchannel:{k}:4.0/recipients"] <= 4_001
    assert 3_000 < ttls["sendchannel:{k}"] <= 4_001
    assert 500 < ttls["sendchannel:{k}:pause"] <= 1_501


async def test_the_ledger_holds_only_what_its_windows_hold(redis_server: RedisServer, redis_url: str) -> None:
    """After many sends the window's sorted set holds at most the entries still inside the window."""
    store = RedisStore(redis_url)
    rate = Rate(1_000, 0.05)
    for _ in range(300):
        await store.reserve("k", [(rate, 1)], now=time.time, max_wait=math.inf)
    await asyncio.sleep(0.06)
    await store.reserve("k", [(rate, 1)], now=time.time, max_wait=math.inf)
    await store.aclose()

    with redis_server.client() as client:
        assert 1 == client.zcard("sendchannel:{k}:0.05/messages")
        assert b"1" == client.hget("sendchannel:{k}", "sendchannel:{k}:0.05/messages")


async def test_lost_sums_are_counted_again_from_the_entries(
    redis_server: RedisServer, redis_url: str
) -> None:
    """If the sums hash is lost (evicted), the next reserve recounts it: the bound still holds."""
    store = RedisStore(redis_url)
    rate = Rate(3, 60)
    for _ in range(3):
        assert (await store.reserve("k", [(rate, 1)], now=time.time, max_wait=0)).granted
    with redis_server.client() as client:
        client.delete("sendchannel:{k}")

    refused = await store.reserve("k", [(rate, 1)], now=time.time, max_wait=0)
    await store.aclose()

    assert not refused.granted


async def test_concurrent_throttled_senders_on_redis_keep_both_rates(redis_url: str) -> None:
    """Six tasks through two store objects, real time: the arrival log keeps both sliding windows."""
    rates = (Rate(4, 1.0), Rate(10, 2.0, "recipients"))
    stores = [RedisStore(redis_url), RedisStore(redis_url)]
    channel = LoggingChannel(limits=Limits(rates=rates))
    throttlers = [Throttler(channel, store=store, key="k", max_wait=math.inf) for store in stores]
    end = time.time() + 2.0

    async def sender(index: int) -> None:
        while time.time() < end:
            await throttlers[index % 2].send(message(1 + index % 3))

    await asyncio.gather(*(sender(index) for index in range(6)))
    for store in stores:
        await store.aclose()

    for rate in rates:
        sends = [(at, rate.cost(n)) for at, n in channel.log]
        # Arrivals are logged when a send reaches the channel, up to a few hundred milliseconds after its
        # slot on a loaded machine: each window checked is shortened by that much.
        assert 0 == sliding_window_excess(sends, rate.count, rate.per, tolerance=0.3), rate


async def test_a_unix_socket_url_works(redis_server: RedisServer) -> None:
    """unix:///path/to/redis.sock URLs reach Redis too."""
    store = RedisStore(redis_server.unix_url)
    await store.verify()
    assert (await store.reserve("unix", [(Rate(1, 1), 1)], now=time.time, max_wait=0)).granted
    await store.aclose()


async def test_a_client_given_by_the_user_is_used_and_left_open(redis_server: RedisServer) -> None:
    """RedisStore(redis.asyncio.Redis(...)) works, and aclose() leaves the user's client open."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password)
    store = RedisStore(client, prefix="app")
    assert (await store.reserve("k", [(Rate(1, 1), 1)], now=time.time, max_wait=0)).granted
    await store.aclose()

    assert 1 == await client.exists("app:{k}:1.0/messages")
    await client.aclose()


# -- when Redis cannot be used -----------------------------------------------------------------------------


async def test_an_unreachable_redis_fails_the_send_and_sends_nothing() -> None:
    """Never silently unthrottled: ConnectionLostError names where (not the password); no send happened."""
    url = f"redis://:{sentinels.PASSWORD}@127.0.0.1:{free_port()}/0"
    channel = LoggingChannel(limits=Limits(rates=OFFICE_365))
    throttler = Throttler(channel, store=RedisStore(url, timeout=1.0))

    with pytest.raises(ConnectionLostError) as caught:
        await throttler.send(message())

    assert [] == channel.attempts
    assert "cannot reach Redis at redis://:***@127.0.0.1" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert "fake" == caught.value.channel
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value) + repr(throttler))


async def test_a_wrong_password_is_a_configuration_error_without_the_password(
    redis_server: RedisServer,
) -> None:
    """Redis refusing the password gives ConfigurationError saying to check it, never showing it."""
    url = f"redis://:{sentinels.TOKEN}@127.0.0.1:{redis_server.port}/0"
    store = RedisStore(url)

    with pytest.raises(ConfigurationError, match="Check the password") as caught:
        await store.verify()

    assert [] == sentinels.leaked(str(caught.value) + repr(store))


def test_a_url_that_is_not_for_redis_is_refused() -> None:
    """Only redis://, rediss:// and unix:// URLs are accepted."""
    with pytest.raises(ConfigurationError, match="redis://, rediss:// or unix://"):
        RedisStore("http://localhost:6379")


def test_the_blocking_client_is_refused_with_the_remedy() -> None:
    """A redis.Redis (blocking) client is refused, naming redis.asyncio.Redis."""
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio\.Redis"):
        RedisStore(redis.Redis())  # type: ignore[arg-type]


def test_repr_hides_the_password() -> None:
    """The store's repr shows where Redis is, with the password replaced."""
    store = RedisStore(f"redis://:{sentinels.PASSWORD}@cache.internal:6379/2")
    assert "RedisStore('redis://:***@cache.internal:6379/2', prefix='sendchannel')" == repr(store)


async def test_a_pause_holds_on_redis_without_any_rate(redis_url: str) -> None:
    """With no rates declared, a ThrottledError still pauses the key in Redis for its retry_after."""
    store = RedisStore(redis_url)
    channel = LoggingChannel()
    throttler = Throttler(channel, store=store)
    channel.throttle_next(0.2)

    started = time.monotonic()  # before the pause begins, so a slow machine cannot shorten what is measured
    with pytest.raises(ThrottledError):
        await throttler.send(message())
    other = Throttler(LoggingChannel(), store=store)
    await other.send(message())
    await store.aclose()

    assert time.monotonic() - started > 0.2 - 0.01
