"""Edges of the throttler and its stores: options refused with the remedy, stale pauses, impossible costs,
a store's script refused by Redis, and a Redis client missing from the machine."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sendchannel import (
    ConfigurationError,
    CredentialScope,
    Limits,
    MemoryStore,
    Rate,
    RedisStore,
    SqliteStore,
    Throttler,
)
from sendchannel.testing import FakeChannel
from tests.throttle.conftest import RedisServer

# -- Throttler options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"key": ""}, "key must be a non-empty string"),
        ({"key": 42}, "key must be a non-empty string"),
        ({"limits": [Rate(1, 1.0)]}, "limits must be a sendchannel.Limits, got list"),
        ({"max_wait": -1}, "max_wait must be a number of seconds"),
    ],
)
def test_throttler_options_are_checked_before_anything_is_sent(
    options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Throttler(FakeChannel(), **options)  # type: ignore[arg-type]


def test_the_throttler_passes_scope_changes_to_its_channel_and_keeps_its_own_limits() -> None:
    channel = FakeChannel(limits=Limits(rates=(Rate(30, 60.0),)))
    throttler = Throttler(channel)
    throttler.scope = CredentialScope.per_address("alice@example.com")
    assert CredentialScope.per_address("alice@example.com") == channel.scope
    stricter = Limits(rates=(Rate(5, 60.0),))
    throttler.limits = stricter
    assert (stricter, Limits(rates=(Rate(30, 60.0),))) == (throttler.limits, channel.limits)


# -- SqliteStore -------------------------------------------------------------------------------------------


def test_sqlite_store_path_must_be_a_path() -> None:
    with pytest.raises(ConfigurationError, match="path must be a file path, got int"):
        SqliteStore(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_a_pause_that_has_ended_no_longer_delays_a_send(store_kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "quota.db")
    moment = [1000.0]
    rate = Rate(10, 60.0)
    await store.pause("k", 5.0, now=lambda: moment[0])
    paused = await store.reserve("k", [(rate, 1)], now=lambda: moment[0], max_wait=0)
    moment[0] += 6.0
    after = await store.reserve("k", [(rate, 1)], now=lambda: moment[0], max_wait=0)
    await store.aclose()
    assert (False, 1005.0) == (paused.granted, paused.at)
    assert (True, 1006.0) == (after.granted, after.at)


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_a_cost_larger_than_the_rate_itself_is_refused(store_kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "quota.db")
    rate = Rate(2, 60.0)
    await store.reserve("k", [(rate, 1)], now=time.time, max_wait=0)
    try:
        with pytest.raises(ValueError, match="can never fit the limit"):
            await store.reserve("k", [(rate, 3)], now=time.time, max_wait=3600)
    finally:
        await store.aclose()


# -- RedisStore --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "options", "named"),
    [
        ("redis://127.0.0.1:6379/0", {"timeout": 0}, "timeout must be a positive number"),
        ("redis://127.0.0.1:6379/0", {"timeout": True}, "timeout must be a positive number"),
        ("redis://127.0.0.1:6379/0", {"prefix": ""}, "prefix must be a non-empty string"),
        ("redis://127.0.0.1:notaport/0", {}, "cannot use the URL .* Port could not be cast"),
        (42, {}, "takes a Redis URL or a redis.asyncio.Redis client, got int"),
    ],
)
def test_redis_store_options_are_checked_when_it_is_built(
    given: object, options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        RedisStore(given, **options)  # type: ignore[arg-type]


async def test_keys_of_another_program_under_the_prefix_are_a_configuration_error(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Redis refusing the script (WRONGTYPE) says to keep other programs out of the prefix."""
    store = RedisStore(redis_url, prefix="shared-prefix")
    with redis_server.client() as client:
        client.delete("shared-prefix:{k}")
        client.rpush("shared-prefix:{k}", "not the store's hash")
    try:
        with pytest.raises(ConfigurationError, match=r"refused the throttle store's script .* prefix"):
            await store.reserve("k", [(Rate(10, 60.0), 1)], now=time.time, max_wait=0)
    finally:
        await store.aclose()
        with redis_server.client() as client:
            client.delete("shared-prefix:{k}")


async def test_a_pause_of_no_time_writes_nothing(redis_server: RedisServer, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="no-pause")
    await store.pause("k", 0.0, now=time.time)
    await store.aclose()
    with redis_server.client() as client:
        assert [] == client.keys("no-pause:*")


def test_without_the_redis_package_the_store_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"  # what Python does for a package that is not installed
        "from sendchannel import RedisStore\n"
        "try:\n    RedisStore('redis://127.0.0.1:6379/0')\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    expected = 'RedisStore needs the redis package; install it with: pip install "sendchannel[redis]"\n'
    assert expected == out.stdout
