"""VirtualClock: an autojump clock whose sleeps take no real time."""

from __future__ import annotations

import asyncio
import time

import pytest

from sendchannel.testing import VirtualClock


async def test_sleep_jumps_when_everything_waits_on_the_clock() -> None:
    clock = VirtualClock(start=100.0)
    started = time.perf_counter()
    await clock.sleep(86_400)
    assert clock.now() == 100.0 + 86_400
    assert time.perf_counter() - started < 60  # a day of virtual time; a real sleep would never end here


async def test_concurrent_sleepers_wake_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(sleeper("c", 30), sleeper("a", 10), sleeper("b", 20), sleeper("a2", 10))
    assert [("a", 10.0), ("a2", 10.0), ("b", 20.0), ("c", 30.0)] == woke


async def test_time_does_not_jump_while_other_work_is_runnable() -> None:
    clock = VirtualClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(50):
            seen.append(clock.now())
            await asyncio.sleep(0)

    await asyncio.gather(busy(), clock.sleep(5))
    assert all(t == 0.0 for t in seen[:10])
    assert 5.0 == clock.now()


async def test_advance_wakes_due_sleepers_and_refuses_to_go_back() -> None:
    clock = VirtualClock()
    task = asyncio.ensure_future(clock.sleep(10))
    await asyncio.sleep(0)  # let it start sleeping
    clock.advance(10)
    await task
    assert 10.0 == clock.now()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_cancelled_sleepers_are_forgotten() -> None:
    clock = VirtualClock()
    task = asyncio.ensure_future(clock.sleep(1000))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.sleep(1)
    assert 1.0 == clock.now()


async def test_zero_sleep_yields_without_moving_time() -> None:
    clock = VirtualClock(5)
    await clock.sleep(0)
    await clock.sleep(-1)
    assert 5.0 == clock.now()
    assert "VirtualClock(now=5.0, sleepers=0)" == repr(clock)
