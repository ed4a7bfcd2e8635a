"""A conformance kit for throttle stores: the contract MemoryStore, SqliteStore and RedisStore keep.

Subclass :class:`StoreContract` in your test suite and say how to build your store::

    from sendchannel.testing.conformance import StoreContract

    class TestMyStore(StoreContract):
        keeps_own_time = True    # the store reads its own clock (a server's), not the `now` it is given
        window = 0.5             # seconds; short, since a store with its own time is tested in real time

        def make_store(self):
            return MyStore(self.server_url)   # every call: a new store object on the same backend

The tests need nothing but pytest: each runs its coroutine with :func:`asyncio.run`. Each test uses keys
of its own, so the backend need not be emptied between tests. One test starts ``processes`` OS processes
(``spawn``) that call :meth:`StoreContract.make_store` themselves, so the test class and the attributes
it uses must be picklable, and its module importable; set ``processes = 0`` for a store that lives in one
process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sendchannel._limits import Rate
from sendchannel._throttle._store import Costs, Reservation, ThrottleStore

__all__ = ["StoreContract", "sliding_window_excess"]

T = TypeVar("T")


def sliding_window_excess(
    sends: Sequence[tuple[float, int]], count: int, per: float, *, tolerance: float = 0.0
) -> int:
    """By how many units the busiest window of ``per`` seconds goes over ``count`` (0 when none does).

    Args:
        sends: ``(time, units)`` of each send, in any order.
        count: The units a window allows.
        per: The window's length in seconds; windows are half-open, ``[t, t + per)``.
        tolerance: Seconds taken off each window, for times measured with some jitter.
    """
    ordered = sorted(sends)
    worst = 0
    total = 0
    end = 0
    for start, (time_at, _) in enumerate(ordered):
        while end < len(ordered) and ordered[end][0] < time_at + per - tolerance:
            total += ordered[end][1]
            end += 1
        worst = max(worst, total - count)
        total -= ordered[start][1]
    return worst


class _Time:
    """The time the tests give a store: a hand-moved clock, or the real one for a store with its own."""

    def __init__(self, real: bool) -> None:
        self.real = real
        self._now = 1_700_000_000.0

    def now(self) -> float:
        return time.time() if self.real else self._now

    async def advance(self, seconds: float) -> None:
        if self.real:
            await asyncio.sleep(seconds)
        else:
            self._now += seconds


class StoreContract:
    """Tests every ThrottleStore must pass. Subclass it and define :meth:`make_store`."""

    #: True when the store takes the time from elsewhere (a server) rather than the ``now`` it is given:
    #: the tests then run in real time, so keep ``window`` short.
    keeps_own_time: bool = False
    #: The window length, in seconds, the tests use.
    window: float = 60.0
    #: How far (seconds) a slot may be from the exact answer: 0 for a store on the caller's clock, a few
    #: hundredths for one that translates its own time.
    tolerance: float = 0.0
    #: OS processes for the test of one budget shared across processes (0 to skip it).
    processes: int = 3

    def make_store(self) -> ThrottleStore:
        """A new store object on the shared backend (override this)."""
        raise NotImplementedError("override make_store() to build the store under test")

    # -- helpers ---------------------------------------------------------------------------------------------

    def _run(self, body: Callable[[ThrottleStore, _Time], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.make_store()
            try:
                return await body(store, _Time(self.keeps_own_time))
            finally:
                await store.aclose()

        return asyncio.run(main())

    def _window(self) -> float:
        return float(self.window)

    def _assert_close(self, expected: float, actual: float, what: str) -> None:
        slack = self.tolerance + 1e-6
        assert abs(expected - actual) <= slack, f"{what}: expected {expected!r}, got {actual!r}"

    @staticmethod
    def _key() -> str:
        return f"contract:{uuid.uuid4().hex}"

    # -- the contract ----------------------------------------------------------------------------------------

    def test_is_a_throttle_store(self) -> None:
        """The store has every method of the ThrottleStore protocol."""

        async def body(store: ThrottleStore, clock: _Time) -> None:
            assert isinstance(store, ThrottleStore)
            await store.verify()

        self._run(body)

    def test_sends_within_the_count_go_at_once(self) -> None:
        """While a window has room, each send's slot is now."""
        rate = Rate(3, self._window())

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            for _ in range(3):
                now = clock.now()
                reservation = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
                assert reservation.granted
                assert reservation.token is not None
                self._assert_close(now, reservation.at, "slot of a send within the count")

        self._run(body)

    def test_a_send_over_the_count_waits_for_the_oldest_to_leave_the_window(self) -> None:
        """Once the window is full, the next slot is when the oldest entry leaves it."""
        per = self._window()
        rate = Rate(2, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            first = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
            await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
            third = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=math.inf)
            assert third.granted
            self._assert_close(first.at + per, third.at, "slot of the send over the count")
            assert rate == third.limited_by

        self._run(body)

    def test_slots_go_in_the_order_asked(self) -> None:
        """Waiting sends get slots in the order they asked, each as early as the window allows."""
        per = self._window()
        rate = Rate(1, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            slots = [
                (await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=math.inf)).at
                for _ in range(4)
            ]
            for index, slot in enumerate(slots):
                self._assert_close(slots[0] + index * per, slot, f"slot {index}")
            assert sorted(slots) == slots

        self._run(body)

    def test_a_send_beyond_max_wait_is_refused_and_records_nothing(self) -> None:
        """A slot further than max_wait is refused, says when it would be, and takes nothing."""
        per = self._window()
        rate = Rate(1, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            first = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
            refused = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per / 2)
            assert not refused.granted
            assert refused.token is None
            self._assert_close(first.at + per, refused.at, "slot the refused send was told")
            later = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=math.inf)
            self._assert_close(first.at + per, later.at, "slot after a refusal (nothing recorded)")

        self._run(body)

    def test_next_permit_says_when_without_recording(self) -> None:
        """next_permit answers the slot reserve would give, takes nothing, and sees pauses."""
        per = self._window()
        rate = Rate(2, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            now = clock.now()
            empty = await store.next_permit(key, [(rate, 1)], now=clock.now)
            assert not empty.granted
            assert empty.token is None
            self._assert_close(now, empty.at, "next permit of an empty window")
            first = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
            await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0.0)
            for _ in range(3):  # asking again changes nothing
                full = await store.next_permit(key, [(rate, 1)], now=clock.now)
                self._assert_close(first.at + per, full.at, "next permit of a full window")
                assert rate == full.limited_by
            taken = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=math.inf)
            self._assert_close(first.at + per, taken.at, "slot after next_permit (nothing recorded)")
            other = self._key()
            await store.pause(other, per / 2, now=clock.now)
            paused = await store.next_permit(other, [(rate, 1)], now=clock.now)
            self._assert_close(clock.now() + per / 2, paused.at, "next permit inside a pause")

        self._run(body)

    def test_a_send_takes_every_rate_or_none(self) -> None:
        """A send that one rate refuses takes nothing from the others either."""
        per = self._window()
        messages = Rate(2, per)
        recipients = Rate(10, per, "recipients")

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            now = clock.now()
            first = await store.reserve(key, [(messages, 1), (recipients, 9)], now=clock.now, max_wait=0)
            assert first.granted
            refused = await store.reserve(key, [(messages, 1), (recipients, 2)], now=clock.now, max_wait=0)
            assert not refused.granted
            assert recipients == refused.limited_by
            fits = await store.reserve(key, [(messages, 1), (recipients, 1)], now=clock.now, max_wait=0)
            assert fits.granted
            self._assert_close(now, fits.at, "slot of the send that fits both rates")

        self._run(body)

    def test_the_window_slides(self) -> None:
        """An entry frees its units exactly ``per`` seconds after its slot, not at a fixed boundary."""
        per = self._window()
        rate = Rate(2, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            first = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0)
            await clock.advance(per / 2)
            second = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0)
            assert second.granted
            await clock.advance(first.at + per - clock.now())
            third = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per)
            self._assert_close(first.at + per, third.at, "slot once the first entry left")
            fourth = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per)
            self._assert_close(second.at + per, fourth.at, "slot once the second entry leaves")

        self._run(body)

    def test_release_gives_the_units_back(self) -> None:
        """A released send no longer counts."""
        rate = Rate(1, self._window())

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            taken = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0)
            assert taken.token is not None
            await store.release(key, [(rate, 1)], taken.token)
            now = clock.now()
            again = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=0)
            assert again.granted
            self._assert_close(now, again.at, "slot after a release")

        self._run(body)

    def test_a_pause_holds_back_every_send_of_the_key(self) -> None:
        """After pause(key, s) no slot is earlier than s from now; other keys are not paused."""
        per = self._window()
        rate = Rate(100, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            now = clock.now()
            await store.pause(key, per / 2, now=clock.now)
            refused = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per / 4)
            assert not refused.granted
            self._assert_close(now + per / 2, refused.at, "slot told during a pause")
            waits = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per)
            self._assert_close(now + per / 2, waits.at, "first slot after a pause")
            other = await store.reserve(self._key(), [(rate, 1)], now=clock.now, max_wait=0)
            assert other.granted

        self._run(body)

    def test_a_shorter_pause_does_not_shorten_a_longer_one(self) -> None:
        """pause() only ever moves the end of a pause later."""
        per = self._window()
        rate = Rate(100, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            now = clock.now()
            await store.pause(key, per / 2, now=clock.now)
            await store.pause(key, per / 10, now=clock.now)
            reservation = await store.reserve(key, [(rate, 1)], now=clock.now, max_wait=per)
            self._assert_close(now + per / 2, reservation.at, "slot after two pauses")

        self._run(body)

    def test_keys_have_budgets_of_their_own(self) -> None:
        """Sends on one key take nothing from another."""
        rate = Rate(1, self._window())

        async def body(store: ThrottleStore, clock: _Time) -> None:
            first, second = self._key(), self._key()
            assert (await store.reserve(first, [(rate, 1)], now=clock.now, max_wait=0)).granted
            assert (await store.reserve(second, [(rate, 1)], now=clock.now, max_wait=0)).granted
            assert not (await store.reserve(first, [(rate, 1)], now=clock.now, max_wait=0)).granted

        self._run(body)

    def test_rates_with_the_same_window_share_its_entries(self) -> None:
        """Callers whose rates differ only in count share the window's entries, each with its own count."""
        per = self._window()

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            for _ in range(2):
                assert (await store.reserve(key, [(Rate(3, per), 1)], now=clock.now, max_wait=0)).granted
            assert not (await store.reserve(key, [(Rate(2, per), 1)], now=clock.now, max_wait=0)).granted
            assert (await store.reserve(key, [(Rate(3, per), 1)], now=clock.now, max_wait=0)).granted

        self._run(body)

    def test_concurrent_sends_through_several_store_objects_keep_the_bound(self) -> None:
        """Many concurrent reserves through several store objects fill each window exactly to its count."""
        per = self._window()
        rate = Rate(4, per)

        async def body(store: ThrottleStore, clock: _Time) -> None:
            key = self._key()
            others = [self.make_store() for _ in range(2)]
            stores = [store, *others]
            try:
                reservations = await asyncio.gather(
                    *(
                        stores[index % 3].reserve(key, [(rate, 1)], now=clock.now, max_wait=math.inf)
                        for index in range(20)
                    )
                )
            finally:
                for other in others:
                    await other.aclose()
            slots = sorted(r.at for r in reservations)
            assert 0 == sliding_window_excess([(s, 1) for s in slots], 4, per, tolerance=self.tolerance)
            for index, slot in enumerate(slots):
                self._assert_close(slots[0] + (index // 4) * per, slot, f"slot {index}")

        self._run(body)

    def test_several_processes_share_one_budget(self) -> None:
        """OS processes reserving as fast as they can through one backend never break the bound, and every
        slot they get is the earliest the rate allowed when they asked (no idle quota).

        Both checks read the slots the store granted and the moments the workers asked, not how quickly
        the operating system ran the workers, so a loaded machine cannot fail them.
        """
        if self.processes <= 0:
            return
        per = 0.4 if not self.keeps_own_time else max(self._window(), 0.4)
        rate = Rate(3, per)
        key = self._key()
        sends = 4  # a worker: 4 reserves, so the processes together need several windows
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.processes, mp_context=context) as pool:
            futures = [
                pool.submit(_reserve_several, self, key, rate, sends) for _ in range(self.processes)
            ]
            grants = sorted(grant for future in futures for grant in future.result())
        slots = [slot for slot, _ in grants]
        assert self.processes * sends == len(slots)
        # Safety, strict: no window of `per` seconds holds more than `count` slots.
        assert 0 == sliding_window_excess([(s, 1) for s in slots], rate.count, per, tolerance=self.tolerance)
        # Work-conserving: each slot is at once (no later than the reserve returned) or exactly when the
        # oldest of the `count` slots before it leaves the window, never later.
        slack = self.tolerance + 1e-6
        for index, (slot, returned) in enumerate(grants):
            earliest_free = slots[index - rate.count] + per if index >= rate.count else -math.inf
            assert slot <= max(returned, earliest_free) + slack, (
                f"slot {index} at {slot!r} was granted later than the rate required "
                f"(the window had room from {earliest_free!r}; the reserve returned at {returned!r})"
            )


def _reserve_several(contract: StoreContract, key: str, rate: Rate, sends: int) -> list[tuple[float, float]]:
    """Reserve ``sends`` slots one by one, waiting for each: each slot, and when its reserve came back."""

    async def main() -> list[tuple[float, float]]:
        store = contract.make_store()
        costs: Costs = [(rate, 1)]
        grants: list[tuple[float, float]] = []
        try:
            for _ in range(sends):
                reservation: Reservation = await store.reserve(key, costs, now=time.time, max_wait=math.inf)
                grants.append((reservation.at, time.time()))
                await asyncio.sleep(max(0.0, reservation.at - time.time()))
        finally:
            await store.aclose()
        return grants

    return asyncio.run(main())
