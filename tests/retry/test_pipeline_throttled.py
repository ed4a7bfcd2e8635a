"""pipeline() with its throttler: every attempt counts against the limits, on a virtual clock."""

from __future__ import annotations

import pytest

# The Throttler is built on another branch; these tests run once it is merged.
from sendchannel import (
    FailoverChannel,
    Limits,
    MemoryStore,
    Message,
    QuotaExceededError,
    Rate,
    Retrying,
    RetryPolicy,
    SendResult,
    Throttler,
    pipeline,
    send_all,
)
from sendchannel.testing import FakeChannel
from tests.retry.conftest import RecordingClock, message, office365_like, sparkpost_like


class _Timed(FakeChannel):
    """A fake that notes the virtual time of every attempt."""

    def __init__(self, clock: RecordingClock, **options: object) -> None:
        super().__init__(clock=clock, **options)  # type: ignore[arg-type]
        self.times: list[float] = []

    async def send(self, message: Message) -> SendResult:
        self.times.append(self.clock.now())
        return await super().send(message)


def test_it_builds_a_retry_layer_over_a_throttler_over_the_channel(clock: RecordingClock) -> None:
    channel = FakeChannel()
    store = MemoryStore()
    limits = Limits(rates=(Rate.per_minute(10),))
    policy = RetryPolicy(attempts=2)
    built = pipeline(channel, store=store, limits=limits, max_wait=5.0, retry=policy, clock=clock)
    assert isinstance(built, Retrying)
    throttler = built.channel
    assert isinstance(throttler, Throttler)
    assert (channel, store, limits, 5.0, clock) == (
        throttler.channel,
        throttler.store,
        throttler.limits,
        throttler.max_wait,
        throttler.clock,
    )
    assert (policy, clock) == (built.policy, built.clock)


def test_without_retry_it_is_the_throttler_alone() -> None:
    channel = FakeChannel()
    built = pipeline(channel, retry=None)
    assert isinstance(built, Throttler)
    assert channel is built.channel


async def test_a_batch_through_the_pipeline_keeps_to_30_a_minute(clock: RecordingClock) -> None:
    """90 messages to an Office 365-like fake: 30 in each minute, all sent, in two minutes of virtual time."""
    fake = _Timed(clock, limits=office365_like(clock).limits, name="office365")
    report = await send_all(pipeline(fake, clock=clock), [message(f"c{n}@example.net") for n in range(90)])
    assert 90 == len(report.sent)
    assert all(1 == outcome.result.attempts for outcome in report.sent if outcome.result)
    for start in fake.times:
        assert sum(start <= t < start + 60.0 for t in fake.times) <= 30
    assert 120.0 == max(fake.times)


async def test_every_attempt_counts_against_the_limits(clock: RecordingClock) -> None:
    """2 a minute: a throttled attempt at 0 s and its retry use the minute; the next waits until 60 s."""
    fake = _Timed(clock, limits=Limits(rates=(Rate.per_minute(2),)))
    fake.throttle_next(retry_after=20.0)
    channel = pipeline(fake, retry=RetryPolicy(jitter=False), clock=clock)
    first = await channel.send(message())
    second = await channel.send(message())
    assert (2, 1) == (first.attempts, second.attempts)
    assert [0.0, 20.0, 60.0] == fake.times


async def test_a_quota_further_away_than_max_wait_fails_at_once_and_is_not_retried(
    clock: RecordingClock,
) -> None:
    fake = _Timed(clock, limits=Limits(rates=(Rate.per_day(3),)))
    channel = pipeline(fake, retry=RetryPolicy(), clock=clock)
    report = await send_all(channel, [message(f"c{n}@example.net") for n in range(5)], concurrency=1)
    assert ["sent"] * 3 + ["failed"] * 2 == [outcome.status for outcome in report.outcomes]
    error = report.failed[0].error
    assert isinstance(error, QuotaExceededError)
    assert 1 == error.attempts
    assert 86_400.0 == pytest.approx(error.resets_at)
    assert 3 == len(fake.times)
    assert 0.0 == clock.now()


async def test_failover_between_throttled_providers_moves_on_when_the_mailbox_budget_is_spent(
    clock: RecordingClock,
) -> None:
    office = office365_like(clock)
    sparkpost = sparkpost_like(clock)
    store = MemoryStore()
    channel = Retrying(
        FailoverChannel(
            [
                pipeline(office, store=store, max_wait=0.0, retry=None, clock=clock),
                pipeline(sparkpost, store=store, retry=None, clock=clock),
            ],
            clock=clock,
        ),
        clock=clock,
    )
    batch = [message(f"c{n}@example.net", sender="alice@contoso.com") for n in range(45)]
    report = await send_all(channel, batch, concurrency=1)
    assert ["office365"] * 30 + ["sparkpost"] * 15 == [o.result.channel for o in report.outcomes if o.result]
    assert 0.0 == clock.now()
    clock.advance(60.0)
    assert "office365" == (await channel.send(batch[0].evolve(message_id=None))).channel
