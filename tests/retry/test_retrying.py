"""Retrying: scripted fault sequences for each error class, attempts, time bounds, cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest
import tenacity

from sendchannel import (
    AuthenticationError,
    Channel,
    ConnectionLostError,
    CredentialScope,
    DeliveryUnknownError,
    InvalidMessageError,
    Limits,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    Retrying,
    RetryPolicy,
    SenderNotAllowedError,
    SendError,
    SendResult,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import FakeChannel, set_testing
from tests.retry.conftest import RecordingClock, message

NO_JITTER = RetryPolicy(jitter=False)


def retrying(clock: RecordingClock, policy: RetryPolicy = NO_JITTER, **fake: object) -> Retrying:
    return Retrying(FakeChannel(clock=clock, **fake), policy, clock=clock)  # type: ignore[arg-type]


def fake_of(channel: Retrying) -> FakeChannel:
    assert isinstance(channel.channel, FakeChannel)
    return channel.channel


async def test_retrying_is_a_channel_named_after_the_one_it_wraps(clock: RecordingClock) -> None:
    channel = retrying(clock, name="office365")
    assert isinstance(channel, Channel)
    assert "office365" == channel.name
    assert fake_of(channel).scope is channel.scope
    assert fake_of(channel).limits is channel.limits


async def test_a_send_that_succeeds_at_once_takes_one_attempt_and_no_wait(clock: RecordingClock) -> None:
    channel = retrying(clock)
    sent = message()
    result = await channel.send(sent)
    assert 1 == result.attempts
    assert [sent] == fake_of(channel).outbox
    assert [] == clock.waits


@pytest.mark.parametrize("error_class", [TransientError, ConnectionLostError, ThrottledError])
async def test_transient_failures_are_retried_with_exponential_backoff(
    clock: RecordingClock, error_class: type[SendError]
) -> None:
    channel = retrying(clock)
    fake_of(channel).fail_next(error_class, times=3)
    sent = message()
    result = await channel.send(sent)
    assert 4 == result.attempts
    assert [sent] == fake_of(channel).outbox
    assert [sent] * 4 == fake_of(channel).attempts
    assert [1.0, 2.0, 4.0] == clock.waits
    assert 7.0 == clock.now()


async def test_the_result_is_the_channels_own_with_the_attempts_counted(clock: RecordingClock) -> None:
    channel = retrying(clock)
    fake_of(channel).fail_next(TransientError)
    sent = message("bob@example.com", "carol@example.com")
    fake_of(channel).reject_recipients("carol@example.com")
    result = await channel.send(sent)
    expected = SendResult(
        sent.message_id,
        result.provider_id,
        ("bob@example.com",),
        {"carol@example.com": "550 5.1.1 mailbox unavailable"},
        "fake",
        attempts=2,
    )
    assert expected == result
    assert result.provider_id is not None


async def test_a_throttled_send_waits_at_least_the_retry_after_the_provider_asked(
    clock: RecordingClock,
) -> None:
    channel = retrying(clock)
    fake_of(channel).throttle_next(retry_after=30.0, times=2)
    result = await channel.send(message())
    assert 3 == result.attempts
    assert [30.0, 30.0] == clock.waits


async def test_with_jitter_a_throttled_wait_is_still_never_shorter_than_retry_after(
    clock: RecordingClock,
) -> None:
    # max_elapsed above the 4 x 100 s that jitter may draw, so the waits alone decide the outcome.
    channel = retrying(clock, RetryPolicy(initial=100.0, maximum=100.0, max_elapsed=1000.0))
    fake_of(channel).throttle_next(retry_after=20.0, times=4)
    await channel.send(message())
    assert 4 == len(clock.waits)
    assert all(20.0 <= wait <= 100.0 for wait in clock.waits), clock.waits


@pytest.mark.parametrize(
    "error_class",
    [
        PermanentError,
        AuthenticationError,
        SenderNotAllowedError,
        RecipientsRefusedError,
        MessageRejectedError,
        QuotaExceededError,
        DeliveryUnknownError,
    ],
)
async def test_permanent_quota_and_unknown_failures_are_raised_at_once(
    clock: RecordingClock, error_class: type[SendError]
) -> None:
    channel = retrying(clock)
    error = error_class("scripted", code=554)
    fake_of(channel).fail_next(error)
    with pytest.raises(error_class) as raised:
        await channel.send(message())
    assert error is raised.value
    assert 1 == raised.value.attempts
    assert 1 == len(fake_of(channel).attempts)
    assert [] == clock.waits


async def test_a_permanent_failure_after_transient_ones_stops_and_counts_every_attempt(
    clock: RecordingClock,
) -> None:
    channel = retrying(clock)
    fake_of(channel).fail_next(ConnectionLostError, times=2)
    fake_of(channel).fail_next(AuthenticationError("535 5.7.3 bad credentials"))
    with pytest.raises(AuthenticationError) as raised:
        await channel.send(message())
    assert 3 == raised.value.attempts
    assert [1.0, 2.0] == clock.waits


async def test_unknown_outcome_is_retried_when_the_policy_accepts_duplicates(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(jitter=False, retry_ambiguous=True))
    fake_of(channel).fail_next(DeliveryUnknownError("timeout after DATA"), delivered=True)
    sent = message()
    result = await channel.send(sent)
    assert 2 == result.attempts
    # The duplicate the caller accepted by asking for it:
    assert [sent, sent] == fake_of(channel).outbox


async def test_unknown_outcome_is_not_retried_by_default_so_nothing_is_sent_twice(
    clock: RecordingClock,
) -> None:
    channel = retrying(clock)
    fake_of(channel).fail_next(DeliveryUnknownError("timeout after DATA"), delivered=True)
    sent = message()
    with pytest.raises(DeliveryUnknownError):
        await channel.send(sent)
    assert [sent] == fake_of(channel).outbox


async def test_when_attempts_run_out_the_last_send_error_itself_is_raised(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(attempts=3, jitter=False))
    errors = [TransientError(f"failure {n}", code=451) for n in range(1, 4)]
    for error in errors:
        fake_of(channel).fail_next(error)
    with pytest.raises(TransientError) as raised:
        await channel.send(message())
    assert errors[-1] is raised.value
    assert not isinstance(raised.value, tenacity.RetryError)
    assert 3 == raised.value.attempts
    assert 3 == len(fake_of(channel).attempts)
    assert [1.0, 2.0] == clock.waits


async def test_one_attempt_means_no_retry(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(attempts=1))
    fake_of(channel).fail_next(TransientError)
    with pytest.raises(TransientError):
        await channel.send(message())
    assert 1 == len(fake_of(channel).attempts)


async def test_no_attempt_starts_after_max_elapsed(clock: RecordingClock) -> None:
    """Waits of 10 and 20 s fit in 35 s; the next (40 s) would not, so the third error is raised."""
    channel = retrying(clock, RetryPolicy(attempts=10, initial=10.0, jitter=False, max_elapsed=35.0))
    fake_of(channel).fail_next(TransientError, times=10)
    with pytest.raises(TransientError) as raised:
        await channel.send(message())
    assert 3 == raised.value.attempts
    assert [10.0, 20.0] == clock.waits


async def test_a_retry_after_beyond_max_elapsed_raises_the_throttle_at_once(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(max_elapsed=60.0))
    fake_of(channel).throttle_next(retry_after=3600.0)
    with pytest.raises(ThrottledError) as raised:
        await channel.send(message())
    assert 3600.0 == raised.value.retry_after
    assert [] == clock.waits
    assert 0.0 == clock.now()


async def test_time_spent_sending_counts_against_max_elapsed(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(initial=1.0, jitter=False, max_elapsed=25.0), latency=10.0)
    fake_of(channel).fail_next(TransientError, times=5)
    with pytest.raises(TransientError) as raised:
        await channel.send(message())
    # 10 s send, 1 s wait, 10 s send: 21 s; a 2 s wait and another send would start at 23 s, allowed;
    # after it (33 s) the budget is spent.
    assert 3 == raised.value.attempts
    assert [10.0, 1.0, 10.0, 2.0, 10.0] == clock.waits


async def test_no_time_bound_when_max_elapsed_is_none(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(attempts=4, max_elapsed=None, jitter=False))
    fake_of(channel).throttle_next(retry_after=86_400.0, times=3)
    result = await channel.send(message())
    assert 4 == result.attempts
    assert 3 * 86_400.0 == clock.now()


async def test_invalid_messages_are_not_retried(clock: RecordingClock) -> None:
    channel = retrying(clock, limits=Limits(max_recipients_per_message=1))
    with pytest.raises(InvalidMessageError, match="accepts at most 1"):
        await channel.send(message("a@example.com", "b@example.com"))
    assert 1 == len(fake_of(channel).attempts)


async def test_exceptions_that_are_not_send_errors_pass_through_unretried(clock: RecordingClock) -> None:
    channel = retrying(clock)
    await fake_of(channel).aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(message())
    assert 1 == len(fake_of(channel).attempts)


async def test_scope_refusal_is_not_retried(clock: RecordingClock) -> None:
    channel = retrying(clock, scope=CredentialScope.per_address("alice@contoso.com"))
    with pytest.raises(SenderNotAllowedError):
        await channel.send(message(sender="bob@contoso.com"))
    assert 1 == len(fake_of(channel).attempts)


async def test_attempts_of_an_inner_retry_layer_add_up(clock: RecordingClock) -> None:
    inner = Retrying(FakeChannel(clock=clock), RetryPolicy(attempts=2, jitter=False), clock=clock)
    outer = Retrying(inner, RetryPolicy(attempts=2, jitter=False), clock=clock)
    fake_of(inner).fail_next(TransientError, times=3)
    result = await outer.send(message())
    assert 4 == result.attempts


async def test_testing_mode_makes_retries_wait_no_time(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy())
    fake_of(channel).throttle_next(retry_after=600.0, times=4)
    with set_testing(True):
        result = await channel.send(message())
    assert 5 == result.attempts
    assert [0.0] * 4 == clock.waits
    assert 0.0 == clock.now()


async def test_testing_mode_can_cap_attempts(clock: RecordingClock) -> None:
    channel = retrying(clock, RetryPolicy(attempts=5))
    fake_of(channel).fail_next(TransientError, times=5)
    with set_testing(True, attempts=2), pytest.raises(TransientError) as raised:
        await channel.send(message())
    assert 2 == raised.value.attempts


async def test_testing_mode_works_on_the_real_clock_without_sleeping() -> None:
    channel = Retrying(FakeChannel(), RetryPolicy(initial=3600.0))
    fake_of(channel).fail_next(TransientError, times=2)
    with set_testing(True):
        result = await asyncio.wait_for(channel.send(message()), timeout=5.0)
    assert 3 == result.attempts


async def test_each_retry_is_logged_with_the_wait_and_the_error(
    clock: RecordingClock, caplog: pytest.LogCaptureFixture
) -> None:
    channel = retrying(clock)
    fake_of(channel).throttle_next(retry_after=5.0)
    sent = message()
    with caplog.at_level(logging.INFO, logger="sendchannel"):
        await channel.send(sent)
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [
        f"retrying: channel=fake message_id={sent.message_id} attempt=1 wait=5.000s "
        "error=ThrottledError: fake asked to slow down (421 4.7.0 try again later)"
    ] == retries


async def test_verify_is_passed_through_once_and_aclose_closes_the_wrapped_channel(
    clock: RecordingClock,
) -> None:
    channel = retrying(clock)
    await channel.verify()
    async with channel as entered:
        assert channel is entered
    assert fake_of(channel).closed


def test_a_policy_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="policy must be a RetryPolicy"):
        Retrying(FakeChannel(), 3)  # type: ignore[arg-type]


def test_repr_names_the_wrapped_channel() -> None:
    assert "<Retrying <FakeChannel 'fake' scope=unrestricted sent=0> attempts=5>" == repr(
        Retrying(FakeChannel())
    )


# -- cancellation --------------------------------------------------------------------------------------


async def test_cancelled_before_the_first_attempt_sends_nothing(clock: RecordingClock) -> None:
    channel = retrying(clock)
    task = asyncio.create_task(channel.send(message()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [] == fake_of(channel).attempts


async def test_cancelled_mid_send_stops_at_once_and_is_not_retried(clock: RecordingClock) -> None:
    channel = retrying(clock, latency=10.0)
    task = asyncio.create_task(channel.send(message()))
    await clock.sleep(4.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 4.0 == clock.now()
    await clock.sleep(100.0)
    assert 1 == len(fake_of(channel).attempts)
    assert [] == fake_of(channel).outbox


async def test_cancelled_mid_backoff_stops_at_once_without_another_attempt(clock: RecordingClock) -> None:
    channel = retrying(clock)
    fake_of(channel).throttle_next(retry_after=100.0)
    task = asyncio.create_task(channel.send(message()))
    await clock.sleep(50.0)
    assert [50.0, 100.0] == sorted(clock.waits)  # the test waits 50 s; the backoff 100 s is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 50.0 == clock.now()
    await clock.sleep(200.0)
    assert 1 == len(fake_of(channel).attempts)
    assert [] == fake_of(channel).outbox


async def test_a_timeout_around_a_long_backoff_cancels_it(clock: RecordingClock) -> None:
    """asyncio.timeout runs on the event loop's real time; the backoff is on a real clock here."""
    channel = Retrying(FakeChannel(), RetryPolicy(jitter=False, initial=3600.0))
    fake_of(channel).fail_next(TransientError)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await channel.send(message())
    assert 1 == len(fake_of(channel).attempts)


async def test_cancellation_between_attempts_of_concurrent_sends_leaves_the_others_running(
    clock: RecordingClock,
) -> None:
    channel = retrying(clock)
    fake_of(channel).throttle_next(retry_after=10.0, times=2)
    first = asyncio.create_task(channel.send(message("one@example.com")))
    second = asyncio.create_task(channel.send(message("two@example.com")))
    await clock.sleep(5.0)
    first.cancel()
    result = await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert 2 == result.attempts
    assert [("two@example.com",)] == [m.recipients for m in fake_of(channel).outbox]
