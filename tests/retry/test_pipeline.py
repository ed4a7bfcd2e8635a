"""pipeline(): the usual stack from simple arguments."""

from __future__ import annotations

import pytest

from sendchannel import ConfigurationError, Retrying, RetryPolicy, TransientError, pipeline
from sendchannel.testing import FakeChannel
from tests.retry.conftest import RecordingClock, message


def test_without_throttling_it_is_a_retry_layer_over_the_channel(clock: RecordingClock) -> None:
    channel = FakeChannel()
    policy = RetryPolicy(attempts=3)
    built = pipeline(channel, throttle=False, retry=policy, clock=clock)
    assert isinstance(built, Retrying)
    assert (channel, policy, clock) == (built.channel, built.policy, built.clock)


def test_the_default_policy_is_the_default_retry_policy() -> None:
    built = pipeline(FakeChannel(), throttle=False)
    assert isinstance(built, Retrying)
    assert RetryPolicy() == built.policy


def test_with_both_layers_left_out_it_is_the_channel_itself() -> None:
    channel = FakeChannel()
    assert channel is pipeline(channel, throttle=False, retry=None)


@pytest.mark.parametrize(
    ("options", "named"),
    [({"store": object()}, "store"), ({"limits": object()}, "limits"), ({"max_wait": 5.0}, "max_wait")],
)
def test_throttle_options_without_a_throttler_are_refused(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"no throttler to pass {named} to"):
        pipeline(FakeChannel(), throttle=False, **options)  # type: ignore[arg-type]


def test_a_retry_that_is_not_a_policy_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="retry must be a RetryPolicy or None"):
        pipeline(FakeChannel(), throttle=False, retry=3)  # type: ignore[arg-type]


async def test_the_pipeline_retries_on_the_clock_it_was_given(clock: RecordingClock) -> None:
    fake = FakeChannel(clock=clock)
    fake.fail_next(TransientError, times=2)
    built = pipeline(fake, throttle=False, retry=RetryPolicy(jitter=False), clock=clock)
    result = await built.send(message())
    assert 3 == result.attempts
    assert [1.0, 2.0] == clock.waits
