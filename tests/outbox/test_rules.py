"""The Outbox's delivery rules on every store: queueing, outcomes, retries, budgets, leases, stopping."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from sendchannel import (
    ConfigurationError,
    CredentialScope,
    DeliveryUnknownError,
    InvalidMessageError,
    Limits,
    MessageRejectedError,
    Outbox,
    Rate,
    RetryPolicy,
    SenderNotAllowedError,
    Throttler,
    pipeline,
)
from sendchannel._outbox._codec import encode_message
from sendchannel._outbox._store import Marking
from sendchannel.testing import FakeChannel
from tests.outbox.helpers import CountingChannel, at, message

FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.02, jitter=False)


async def _run(outbox: Outbox, **kwargs: object) -> None:
    await asyncio.wait_for(outbox.run(until_empty=True, **kwargs), 60)  # type: ignore[arg-type]


async def _run_until_finished(outbox: Outbox, item_id: int) -> None:
    """Work until the item has its outcome (until_empty returns while a retry is not due yet)."""
    for _ in range(200):
        await _run(outbox)
        item = await outbox.get(item_id)
        assert item is not None
        if item.finished:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"item {item_id} never finished")


def test_put_stores_the_message_and_run_sends_it(database: str) -> None:
    """A put item is queued at once; a worker sends it and records the provider's result."""

    async def main() -> None:
        channel = FakeChannel()
        async with Outbox(database, channel=channel) as outbox:
            item = await outbox.put(message(1), owner="team-a")
            assert "queued" == item.status
            assert "queued" == (await outbox.get(item.id)).status
            await _run(outbox)
            done = await outbox.get(item.id)
            assert "sent" == done.status
            assert 1 == done.attempts
            assert done.result is not None
            assert item.message_id == done.result.message_id
            assert [item.message_id] == [m.message_id for m in channel.outbox]
            assert "team-a" == done.owner

    asyncio.run(main())


def test_the_worker_sends_the_stored_bytes_and_bcc(database: str) -> None:
    """What reaches the channel renders to the bytes stored at put time, Bcc recipients included."""

    async def main() -> None:
        channel = FakeChannel()
        original = message(1).evolve(bcc=("hidden@example.org",))
        stored, _ = encode_message(original)
        async with Outbox(database, channel=channel) as outbox:
            await outbox.put(original)
            await _run(outbox)
        (sent,) = channel.outbox
        assert stored == sent.as_bytes()
        assert ("hidden@example.org",) == sent.bcc
        assert original == sent

    asyncio.run(main())


def test_higher_priority_goes_first_and_later_send_at_waits(database: str) -> None:
    """Due items go by priority, then age; an item scheduled for later stays queued."""

    async def main() -> None:
        channel = CountingChannel()
        async with Outbox(database, channel=channel) as outbox:
            await outbox.put(message(1))
            await outbox.put(message(2), priority=5)
            later = await outbox.put(
                message(3), send_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
            )
            await outbox.put(message(4), priority=5)
            await _run(outbox, concurrency=1)
            assert ["m2", "m4", "m1"] == [subject for _, subject in channel.log]
            assert "queued" == (await outbox.get(later.id)).status
            assert {"queued": 1, "sent": 3} == {k: v for k, v in (await outbox.counts()).items() if v}

    asyncio.run(main())


def test_transient_errors_are_retried_no_sooner_than_retry_after_then_fail(database: str) -> None:
    """A throttled send comes back after its retry_after; when the attempts are spent it is failed."""

    async def main() -> None:
        channel = FakeChannel()
        channel.throttle_next(0.3)
        async with Outbox(database, channel=channel, retry=FAST_RETRY) as outbox:
            before = time.time()
            item = await outbox.put(message(1))
            await _run(outbox)  # returns with the item queued for later (or sent, on a slow machine)
            retried = await outbox.get(item.id)
            assert retried.next_attempt_at.timestamp() >= before + 0.3
            await _run_until_finished(outbox, item.id)
            done = await outbox.get(item.id)
            assert ("sent", 2) == (done.status, done.attempts)
            channel.throttle_next(0.01, times=3)
            failing = await outbox.put(message(2))
            await _run_until_finished(outbox, failing.id)
            done = await outbox.get(failing.id)
            assert ("failed", 3) == (done.status, done.attempts)
            assert done.error is not None
            assert done.error.startswith("ThrottledError: ")

    asyncio.run(main())


def test_a_retried_item_waits_in_the_queue_not_in_the_worker(database: str) -> None:
    """After a transient error the item is queued with next_attempt_at at least retry_after away."""

    async def main() -> None:
        channel = FakeChannel()
        channel.throttle_next(3600.0)
        patient = RetryPolicy(attempts=3, initial=0.01, max_elapsed=None)
        async with Outbox(database, channel=channel, retry=patient) as outbox:
            item = await outbox.put(message(1))
            before = datetime.datetime.now(datetime.UTC)
            await _run(outbox)
            done = await outbox.get(item.id)
            assert ("queued", 1) == (done.status, done.attempts)
            assert done.next_attempt_at >= before + datetime.timedelta(seconds=3600)

    asyncio.run(main())


def test_permanent_errors_fail_and_unknown_outcomes_are_never_resent(database: str) -> None:
    """A permanent error gives failed, a DeliveryUnknownError gives unknown: each tried exactly once."""

    async def main() -> None:
        channel = FakeChannel()
        async with Outbox(database, channel=channel, retry=FAST_RETRY) as outbox:
            channel.fail_next(MessageRejectedError("550 5.6.0 rejected"))
            rejected = await outbox.put(message(1))
            await _run(outbox)
            channel.fail_next(DeliveryUnknownError("connection lost after DATA"), delivered=True)
            unknown = await outbox.put(message(2))
            await _run(outbox)
            assert ("failed", 1) == (
                (await outbox.get(rejected.id)).status,
                (await outbox.get(rejected.id)).attempts,
            )
            done = await outbox.get(unknown.id)
            assert ("unknown", 1) == (done.status, done.attempts)
            assert "DeliveryUnknownError: connection lost after DATA" == done.error
            assert 2 == len(channel.attempts)

    asyncio.run(main())


def test_an_idempotent_channel_gets_an_unknown_outcome_again_with_the_same_message_id(database: str) -> None:
    """Through an idempotent channel a DeliveryUnknownError is retried, with the same Message-ID."""

    async def main() -> None:
        channel = CountingChannel(idempotent=True)
        channel.fail_next(DeliveryUnknownError("timeout after the POST"))
        async with Outbox(database, channel=channel, retry=FAST_RETRY) as outbox:
            item = await outbox.put(message(1))
            await _run_until_finished(outbox, item.id)
            done = await outbox.get(item.id)
            assert ("sent", 2) == (done.status, done.attempts)
            assert [item.message_id, item.message_id] == [m.message_id for m in channel.attempts]

    asyncio.run(main())


def test_a_spent_budget_puts_items_back_until_the_next_permit_without_an_attempt(database: str) -> None:
    """With Rate(2, 1 h) two go out; the rest wait in the queue for the next permit, attempts unchanged."""

    async def main() -> None:
        channel = CountingChannel()
        throttled = Throttler(channel, limits=Limits(rates=(Rate(2, 3600),)), max_wait=60.0)
        async with Outbox(database, channel=throttled) as outbox:
            items = [await outbox.put(message(index)) for index in range(5)]
            started = time.monotonic()
            before = datetime.datetime.now(datetime.UTC)
            await _run(outbox)
            assert time.monotonic() - started < 30  # nobody sat on the hour-long wait
            states = [await outbox.get(item.id) for item in items]
            assert ["queued", "queued", "queued", "sent", "sent"] == sorted(s.status for s in states)
            for state in (s for s in states if s.status == "queued"):
                assert 0 == state.attempts
                assert state.next_attempt_at >= before + datetime.timedelta(seconds=3590)
            assert 2 == len(channel.attempts)

    asyncio.run(main())


def test_a_throttler_quota_error_defers_the_item_without_an_attempt(database: str) -> None:
    """A QuotaExceededError raised by a throttler with max_wait=0 puts the item back, attempts unchanged."""

    async def main() -> None:
        channel = CountingChannel()
        throttled = pipeline(channel, limits=Limits(rates=(Rate(1, 3600),)), max_wait=0.0, retry=None)
        async with Outbox(database, channel=throttled) as outbox:
            first = await outbox.put(message(1))
            second = await outbox.put(message(2))
            await _run(outbox, concurrency=1)
            assert "sent" == (await outbox.get(first.id)).status
            deferred = await outbox.get(second.id)
            assert ("queued", 0) == (deferred.status, deferred.attempts)

    asyncio.run(main())


def test_in_flight_sends_of_one_credential_stay_within_max_connections(database: str) -> None:
    """With limits.max_connections=2 a worker of concurrency 8 never has more than 2 sends in flight."""

    async def main() -> None:
        channel = CountingChannel(limits=Limits(max_connections=2), latency=0.02)
        async with Outbox(database, channel=channel) as outbox:
            await outbox.put_many([message(index) for index in range(20)])
            await _run(outbox, concurrency=8)
            assert 20 == len(channel.outbox)
            assert 2 == channel.most_in_flight

    asyncio.run(main())


def test_a_dead_workers_sending_item_becomes_unknown_when_its_lease_ends(database: str) -> None:
    """An item left 'sending' by a worker that died is unknown after the lease, and never sent again."""

    async def main() -> None:
        channel = FakeChannel()
        async with Outbox(database, channel=channel, lease=0.3) as outbox:
            item = await outbox.put(message(1))
            store = outbox.store
            now = time.time()
            (claimed,) = await store.claim("dead", 1, now=now, lease_until=now + 0.3, exclude=())
            marks = [Marking(claimed.id, idempotent=False, credential=None)]
            assert {claimed.id} == await store.record("dead", marks, [], now=now, lease_until=now + 0.3)
            await _run(outbox)
            done = await outbox.get(item.id)
            assert ("unknown", 1) == (done.status, done.attempts)
            assert "stopped before recording the outcome" in (done.error or "")
            assert [] == channel.attempts

    asyncio.run(main())


def test_a_dead_workers_item_through_an_idempotent_channel_is_sent_again(database: str) -> None:
    """Through an idempotent channel a dead worker's 'sending' item is sent again with the same key."""

    async def main() -> None:
        channel = CountingChannel(idempotent=True)
        async with Outbox(database, channel=channel, lease=0.3) as outbox:
            item = await outbox.put(message(1))
            store = outbox.store
            now = time.time()
            (claimed,) = await store.claim("dead", 1, now=now, lease_until=now + 0.3, exclude=())
            marks = [Marking(claimed.id, idempotent=True, credential=None)]
            assert {claimed.id} == await store.record("dead", marks, [], now=now, lease_until=now + 0.3)
            await _run(outbox)
            done = await outbox.get(item.id)
            assert ("sent", 2) == (done.status, done.attempts)
            assert [item.message_id] == [m.message_id for m in channel.outbox]

    asyncio.run(main())


def test_claimed_items_not_handed_over_go_back_to_the_queue(database: str) -> None:
    """Items a dead worker claimed but never marked sending are sent by another worker after the lease."""

    async def main() -> None:
        channel = FakeChannel()
        async with Outbox(database, channel=channel, lease=0.3) as outbox:
            items = await outbox.put_many([message(1), message(2)])
            now = time.time()
            claimed = await outbox.store.claim("dead", 5, now=now, lease_until=now + 0.3, exclude=())
            assert 2 == len(claimed)
            await _run(outbox)
            assert ["sent", "sent"] == [(await outbox.get(item.id)).status for item in items]
            assert 2 == len(channel.outbox)

    asyncio.run(main())


def test_stop_lets_sends_in_flight_finish_and_claims_nothing_more(database: str) -> None:
    """After stop() the sends in flight are recorded; the rest stay queued, none is left sending."""

    async def main() -> None:
        channel = CountingChannel(latency=0.2)
        async with Outbox(database, channel=channel) as outbox:
            await outbox.put_many([message(index) for index in range(10)])
            worker = asyncio.create_task(outbox.run(concurrency=3))
            await asyncio.wait_for(channel.wait_until(lambda: channel.in_flight >= 3), 30)
            outbox.stop()
            await asyncio.wait_for(worker, 30)
            counts = await outbox.counts()
            assert 3 == counts["sent"]
            assert 7 == counts["queued"]
            assert 0 == counts["sending"]

    asyncio.run(main())


def test_cancelling_run_finishes_the_sends_in_flight(database: str) -> None:
    """A cancelled worker records the sends it had in flight before the cancellation goes on."""

    async def main() -> None:
        channel = CountingChannel(latency=0.2)
        async with Outbox(database, channel=channel) as outbox:
            await outbox.put_many([message(index) for index in range(4)])
            worker = asyncio.create_task(outbox.run(concurrency=2))
            await asyncio.wait_for(channel.wait_until(lambda: channel.in_flight >= 2), 30)
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
            counts = await outbox.counts()
            assert (2, 2, 0) == (counts["sent"], counts["queued"], counts["sending"])

    asyncio.run(main())


def test_cancel_and_purge(database: str) -> None:
    """cancel() works on queued items only; purge() removes finished items older than asked."""

    async def main() -> None:
        channel = FakeChannel()
        async with Outbox(database, channel=channel) as outbox:
            keep = await outbox.put(message(1), send_at=at(time.time() + 3600))
            gone = await outbox.put(message(2), send_at=at(time.time() + 3600))
            sent = await outbox.put(message(3))
            assert await outbox.cancel(gone.id)
            assert not await outbox.cancel(gone.id)
            await _run(outbox)
            assert not await outbox.cancel(sent.id)
            assert 0 == await outbox.purge(datetime.timedelta(hours=1))
            assert 2 == await outbox.purge(datetime.timedelta(0))
            assert await outbox.get(sent.id) is None
            assert "queued" == (await outbox.get(keep.id)).status
            assert [] == [m.subject for m in channel.outbox if m.subject == "m2"]

    asyncio.run(main())


def test_items_streams_by_status_and_owner(database: str) -> None:
    """items() yields every matching item in id order."""

    async def main() -> None:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            later = at(time.time() + 3600)
            mine = await outbox.put_many([message(i) for i in range(3)], owner="alice", send_at=later)
            await outbox.put_many([message(i) for i in range(2)], owner="bob", send_at=later)
            await outbox.cancel(mine[1].id)
            assert [mine[0].id, mine[2].id] == [
                item.id async for item in outbox.items(status="queued", owner="alice")
            ]
            assert 5 == len([item async for item in outbox.items()])
            assert 1 == len([item async for item in outbox.items(status="cancelled")])

    asyncio.run(main())


def test_bad_input_is_refused_before_anything_is_stored(database: str) -> None:
    """A sender outside the channel's scope, a naive send_at, both or neither target: clear errors."""

    async def main() -> None:
        channel = FakeChannel(
            scope=CredentialScope.per_domain("example.com"), limits=Limits(max_recipients_per_message=2)
        )
        async with Outbox(database, channel=channel) as outbox:
            with pytest.raises(SenderNotAllowedError):
                await outbox.put(message(1, sender="eve@elsewhere.org"))
            with pytest.raises(InvalidMessageError, match="at most 2"):
                await outbox.put(message(1, recipients=3))
            with pytest.raises(ConfigurationError, match="no time zone"):
                await outbox.put(message(1), send_at=datetime.datetime(2030, 1, 1, 9, 0))
            assert 0 == sum((await outbox.counts()).values())
        with pytest.raises(ConfigurationError, match="exactly one"):
            Outbox(database)
        with pytest.raises(ConfigurationError, match="sqlite:///"):
            Outbox("mysql://x", channel=channel)

    asyncio.run(main())


def test_run_without_work_returns_when_until_empty(database: str) -> None:
    """until_empty with an empty outbox returns at once."""

    async def main() -> None:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            await _run(outbox)
            assert {} == {k: v for k, v in (await outbox.counts()).items() if v}

    asyncio.run(main())


class _Gated(CountingChannel):
    """Holds every send until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def _send(self, message: object) -> object:  # type: ignore[override]
        self.entered.set()
        await self.gate.wait()
        return await super()._send(message)  # type: ignore[arg-type]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_until_empty_returns_soon_after_another_workers_send_is_recorded(database: str) -> None:
    """A worker told to stop once the outbox is empty, while only another worker's item is leased, looks
    again soon rather than after its long wait (5 s): it returns soon after the other worker's outcome is
    recorded."""

    async def main() -> None:
        holding = _Gated()
        async with (
            Outbox(database, channel=holding) as first,
            Outbox(database, channel=FakeChannel()) as second,
        ):
            await first.put(message(1))
            worker = asyncio.create_task(first.run())
            await asyncio.wait_for(holding.entered.wait(), 30)
            # Its own poll (SQLite's 0.2 s) must not be what wakes it.
            second.store.poll_interval = 3600.0  # type: ignore[attr-defined]
            waiting = asyncio.create_task(second.run(until_empty=True))
            await asyncio.sleep(0.3)  # most likely asleep by now; the outcome does not depend on it
            assert not waiting.done(), "the second worker returned while the first one's item was leased"
            opened = time.monotonic()
            holding.gate.set()
            await asyncio.wait_for(waiting, 30)
            elapsed = time.monotonic() - opened
            # Looking again every 0.2 s it returns within a few tenths; without that it slept for its whole
            # wait, min(lease / 4, poll, 5 s) = 5 s.
            assert elapsed < 2.5, f"took {elapsed:.2f} s after the other worker's send was released"
            assert {"sent": 1} == {k: v for k, v in (await second.counts()).items() if v}
            first.stop()
            await asyncio.wait_for(worker, 30)

    asyncio.run(main())
