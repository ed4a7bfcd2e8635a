"""Throttler.next_permit on a VirtualClock: when the next permit comes, without waiting or taking one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sendchannel import (
    InvalidMessageError,
    Limits,
    MemoryStore,
    Rate,
    RedisStore,
    SqliteStore,
    ThrottledError,
    Throttler,
)
from sendchannel._throttle import DEFAULT_PAUSE, ThrottleStore
from sendchannel.testing import FakeChannel, VirtualClock
from tests.throttle.conftest import RedisServer
from tests.throttle.helpers import LoggingChannel, message

ROUNDING = 1e-9


def _throttler(store: ThrottleStore, clock: VirtualClock, limits: Limits) -> tuple[Throttler, LoggingChannel]:
    channel = LoggingChannel(clock=clock)
    return Throttler(channel, store=store, limits=limits, clock=clock, max_wait=0.0), channel


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ThrottleStore:
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(tmp_path / "quota.db")


def test_next_permit_is_now_while_the_window_has_room(store: ThrottleStore) -> None:
    """With room in every window the answer is 0.0, and asking takes no permit."""

    async def main() -> None:
        clock = VirtualClock(start=1000.0)
        throttler, channel = _throttler(store, clock, Limits(rates=(Rate(2, 60),)))
        for _ in range(5):
            assert 0.0 == await throttler.next_permit(message())
        await throttler.send(message())
        await throttler.send(message())
        assert 2 == len(channel.log)
        await store.aclose()

    asyncio.run(main())


def test_next_permit_is_when_the_oldest_send_leaves_the_window(store: ThrottleStore) -> None:
    """A full window answers the seconds until its oldest send leaves it, as time goes by."""

    async def main() -> None:
        clock = VirtualClock(start=1000.0)
        throttler, _ = _throttler(store, clock, Limits(rates=(Rate(2, 60),)))
        await throttler.send(message())
        clock.advance(10)
        await throttler.send(message())
        assert abs(50.0 - await throttler.next_permit(message())) < ROUNDING
        clock.advance(20)
        assert abs(30.0 - await throttler.next_permit()) < ROUNDING
        clock.advance(30)
        assert 0.0 == await throttler.next_permit()
        await throttler.send(message())  # granted at once: max_wait is 0
        await store.aclose()

    asyncio.run(main())


def test_next_permit_counts_the_message_recipients(store: ThrottleStore) -> None:
    """A recipients rate answers for this message's recipients, and refuses one that can never fit."""

    async def main() -> None:
        clock = VirtualClock(start=0.0)
        limits = Limits(rates=(Rate(10, 3600, "recipients"),))
        throttler, _ = _throttler(store, clock, limits)
        await throttler.send(message(recipients=8))
        clock.advance(100)
        assert 0.0 == await throttler.next_permit(message(recipients=2))
        assert abs(3500.0 - await throttler.next_permit(message(recipients=3))) < ROUNDING
        with pytest.raises(InvalidMessageError, match="never allows"):
            await throttler.next_permit(message(recipients=11))
        await store.aclose()

    asyncio.run(main())


def test_next_permit_sees_a_pause_the_provider_asked_for(store: ThrottleStore) -> None:
    """After a ThrottledError the answer is the pause's end, for every throttler of the key."""

    async def main() -> None:
        clock = VirtualClock(start=0.0)
        limits = Limits(rates=(Rate(100, 60),))
        throttler, channel = _throttler(store, clock, limits)
        other = Throttler(
            FakeChannel(clock=clock), store=store, limits=limits, clock=clock, key=throttler.key
        )
        channel.throttle_next(42.0)
        with pytest.raises(ThrottledError):
            await throttler.send(message())
        assert abs(42.0 - await throttler.next_permit()) < ROUNDING
        assert abs(42.0 - await other.next_permit()) < ROUNDING
        channel.throttle_next(None)
        clock.advance(42.0)
        with pytest.raises(ThrottledError):
            await throttler.send(message())
        assert abs(DEFAULT_PAUSE - await other.next_permit()) < ROUNDING
        await store.aclose()

    asyncio.run(main())


def test_next_permit_on_redis_records_nothing(redis_server: RedisServer) -> None:
    """On Redis (server time) the answer follows the window, and asking many times takes nothing."""

    async def main() -> None:
        store = RedisStore(redis_server.url)
        throttler = Throttler(FakeChannel(), store=store, limits=Limits(rates=(Rate(1, 30),)), max_wait=0.0)
        throttler.key = "next-permit-redis"
        assert 0.0 == await throttler.next_permit()
        assert 0.0 == await throttler.next_permit()
        await throttler.send(message())
        wait = await throttler.next_permit()
        assert 29.0 < wait <= 30.0
        await store.aclose()

    asyncio.run(main())
