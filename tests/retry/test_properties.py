"""Properties over random fault sequences: no message lost or sent twice, waits within the policy."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sendchannel import Message, Retrying, RetryPolicy, SendError, SendResult, send_all
from sendchannel._bulk import Outcome
from sendchannel.testing import FakeChannel
from tests.retry.conftest import RecordingClock, message
from tests.retry.strategies import Fault, fault_sequences, policies


def script(channel: FakeChannel, faults: list[Fault]) -> None:
    for fault in faults:
        channel.fail_next(fault.error, delivered=fault.delivered)


@given(faults=fault_sequences, policy=policies)
def test_one_send_ends_as_the_policy_says_with_waits_inside_it(
    faults: list[Fault], policy: RetryPolicy
) -> None:
    clock = RecordingClock()
    fake = FakeChannel(clock=clock)
    script(fake, faults)
    channel = Retrying(fake, policy, clock=clock)
    sent = message()

    outcome: SendResult | SendError
    try:
        outcome = asyncio.run(channel.send(sent))
    except SendError as exc:
        outcome = exc

    attempts = len(fake.attempts)
    event(f"{type(outcome).__name__} after {attempts} attempts")
    assert 1 <= attempts <= policy.attempts
    # Every attempt but the last failed with an error the policy retries.
    assert all(policy.is_retryable(fault.error) for fault in faults[: attempts - 1])
    delivered_by_faults = sum(fault.delivered for fault in faults[:attempts])
    if isinstance(outcome, SendResult):
        # The fake succeeds once its scripted faults are used up, and not before.
        assert len(faults) + 1 == attempts
        assert attempts == outcome.attempts
        assert 1 + delivered_by_faults == fake.outbox.count(sent)
    else:
        last = faults[attempts - 1]
        assert last.error is outcome
        assert attempts == outcome.attempts
        assert delivered_by_faults == fake.outbox.count(sent)
        ceiling = max(policy.ceiling(attempts), outcome.retry_after or 0.0)
        stopped_for_time = policy.max_elapsed is not None and clock.now() + ceiling > policy.max_elapsed
        assert (not policy.is_retryable(outcome)) or attempts == policy.attempts or stopped_for_time
    # Never twice, unless the caller asked to retry ambiguous outcomes.
    if not policy.retry_ambiguous:
        assert fake.outbox.count(sent) <= 1
    # The waits: one between attempts, at least the retry_after, at most the ceiling (or retry_after).
    assert attempts - 1 == len(clock.waits)
    for number, (wait, fault) in enumerate(zip(clock.waits, faults, strict=False), start=1):
        floor = fault.error.retry_after or 0.0
        assert floor <= wait <= max(floor, policy.ceiling(number))
    if policy.max_elapsed is not None:
        assert sum(clock.waits) <= policy.max_elapsed


@given(
    faults=fault_sequences,
    policy=policies,
    count=st.integers(0, 12),
    concurrency=st.integers(1, 5),
    latency=st.floats(0.0, 3.0),
)
def test_a_retried_batch_accounts_for_every_message_and_sends_none_twice(
    faults: list[Fault], policy: RetryPolicy, count: int, concurrency: int, latency: float
) -> None:
    clock = RecordingClock()
    fake = FakeChannel(clock=clock, latency=latency)
    script(fake, faults)
    channel = Retrying(fake, policy, clock=clock)
    batch = [message(f"user{n}@example.com") for n in range(count)]
    seen: list[Outcome] = []

    report = asyncio.run(send_all(channel, batch, concurrency=concurrency, progress=seen.append))

    assert batch == [outcome.message for outcome in report.outcomes]
    assert sorted(map(id, report.outcomes)) == sorted(map(id, seen))
    assert len(report.sent) + len(report.failed) + len(report.unknown) == count
    for outcome in report.outcomes:
        copies = fake.outbox.count(outcome.message)
        if outcome.status == "sent":
            assert outcome.result is not None
            assert outcome.message.message_id == outcome.result.message_id
            assert copies >= 1
        elif outcome.status == "failed":
            assert isinstance(outcome.error, SendError)
        if not policy.retry_ambiguous:
            assert copies <= 1
    delivered = sum(fault.delivered for fault in faults)
    assert len(fake.outbox) <= len(report.sent) + delivered


@given(
    latencies=st.lists(st.floats(0.5, 20.0), min_size=1, max_size=12),
    concurrency=st.integers(1, 4),
    cancel_at=st.floats(0.0, 60.0),
)
def test_a_batch_cancelled_at_any_moment_reports_every_message_exactly_once(
    latencies: list[float], concurrency: int, cancel_at: float
) -> None:
    clock = RecordingClock()
    batch = [message(f"user{n}@example.com") for n in range(len(latencies))]
    delays = {m.message_id: latency for m, latency in zip(batch, latencies, strict=True)}
    fake = _SlowFake(delays, clock)
    seen: list[Outcome] = []

    async def main() -> bool:
        task = asyncio.create_task(send_all(fake, batch, concurrency=concurrency, progress=seen.append))
        await clock.sleep(cancel_at)
        cancelled = task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return not cancelled

    was_cancelled = asyncio.run(main())

    assert sorted(m.message_id for m in batch) == sorted(o.message.message_id for o in seen)
    for outcome in seen:
        if outcome.status == "sent":
            assert 1 == fake.outbox.count(outcome.message)
        else:
            assert "skipped" == outcome.status
            assert was_cancelled
            assert outcome.message not in fake.attempts
    # Only messages never started are skipped; every started one settled before the cancellation ended.
    assert len(fake.attempts) == sum(outcome.status == "sent" for outcome in seen)


class _SlowFake(FakeChannel):
    """A fake whose every message takes its own time to send."""

    def __init__(self, delays: dict[str, float], clock: RecordingClock) -> None:
        super().__init__(clock=clock)
        self.delays = delays

    async def _send(self, message: Message) -> SendResult:
        await self.clock.sleep(self.delays[message.message_id])
        return await super()._send(message)


RECIPIENTS = [f"r{n}@example.net" for n in range(5)]


@st.composite
def refusals(draw: st.DrawFn) -> dict[str, str]:
    """Some recipients refused, each with a temporary or a permanent reply."""
    refused = draw(st.lists(st.sampled_from(RECIPIENTS), unique=True, max_size=len(RECIPIENTS)))
    replies = st.sampled_from(["452 4.5.3 Too many recipients", "450 4.2.1 busy", "550 5.1.1 unknown"])
    return {address: draw(replies) for address in refused}


@given(
    first_faults=fault_sequences,
    second_faults=fault_sequences,
    first_refusals=refusals(),
    second_refusals=refusals(),
    count=st.integers(1, 4),
    policy=st.none() | policies,
)
def test_failover_never_delivers_to_a_recipient_twice_and_reports_who_accepted(
    first_faults: list[Fault],
    second_faults: list[Fault],
    first_refusals: dict[str, str],
    second_refusals: dict[str, str],
    count: int,
    policy: RetryPolicy | None,
) -> None:
    from sendchannel import FailoverChannel

    clock = RecordingClock()
    first, second = FakeChannel(name="first", clock=clock), FakeChannel(name="second", clock=clock)
    script(first, first_faults)
    script(second, second_faults)
    for fake, refused in ((first, first_refusals), (second, second_refusals)):
        for address, reply in refused.items():
            fake.reject_recipients(address, reply=reply)
    failover = FailoverChannel([first, second], clock=clock)
    channel = failover if policy is None else Retrying(failover, policy, clock=clock)
    sent = message(*RECIPIENTS[:count])

    outcome: SendResult | SendError
    try:
        outcome = asyncio.run(channel.send(sent))
    except SendError as exc:
        outcome = exc

    def delivered(fake: FakeChannel, refused: dict[str, str]) -> list[str]:
        """The recipients that got a copy through ``fake``: of each copy it took, those it did not refuse."""
        return [address for copy in fake.outbox for address in copy.recipients if address not in refused]

    got = delivered(first, first_refusals) + delivered(second, second_refusals)
    ambiguous = policy is not None and policy.retry_ambiguous
    unknown_deliveries = any(f.delivered for f in first_faults + second_faults)
    if not ambiguous:
        assert len(got) == len(set(got)), got
    if isinstance(outcome, SendResult):
        if not unknown_deliveries:
            # retry_ambiguous may repeat a copy (that is what it allows), never leave one unreported
            if ambiguous:
                assert set(got) == set(outcome.accepted)
            else:
                assert sorted(got) == sorted(outcome.accepted)
        assert set(outcome.accepted).isdisjoint(outcome.rejected)
        assert set(sent.recipients) == set(outcome.accepted) | set(outcome.rejected)
    elif not unknown_deliveries:
        # A later channel failed after an earlier one accepted some recipients (their 452 sent the rest on):
        # the error names everyone who already has the message, so nobody gets it again unknowingly.
        for address in set(got):
            assert address in str(outcome), (address, str(outcome))


@given(
    faults=fault_sequences,
    policy=policies,
    latency=st.floats(0.0, 5.0),
    cancel_at=st.floats(0.0, 200.0),
)
def test_a_send_cancelled_at_any_moment_stops_at_once_and_never_tries_again(
    faults: list[Fault], policy: RetryPolicy, latency: float, cancel_at: float
) -> None:
    clock = RecordingClock()
    fake = FakeChannel(clock=clock, latency=latency)
    script(fake, faults)
    channel = Retrying(fake, policy, clock=clock)

    async def main() -> tuple[bool, int]:
        task = asyncio.create_task(channel.send(message()))
        await clock.sleep(cancel_at)
        attempts_so_far = len(fake.attempts)
        if not task.cancel():
            return False, attempts_so_far
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancel_at == clock.now()  # at once: no virtual time passed
        await clock.sleep(1_000.0)  # long enough for any backoff the cancelled task might have left
        return True, attempts_so_far

    cancelled, attempts_so_far = asyncio.run(main())
    if cancelled:
        assert attempts_so_far == len(fake.attempts)
        assert len(fake.outbox) <= sum(fault.delivered for fault in faults)
