"""RetryPolicy: what is worth retrying, and how long to wait; the testing switch."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendchannel import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    InvalidMessageError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import is_testing, set_testing

RETRIED = [TransientError, ThrottledError, ConnectionLostError]
NOT_RETRIED = [
    PermanentError,
    AuthenticationError,
    SenderNotAllowedError,
    RecipientsRefusedError,
    MessageRejectedError,
    QuotaExceededError,
    DeliveryUnknownError,
    SendError,
]


def test_defaults_are_the_documented_ones() -> None:
    assert (5, 1.0, 60.0, 2.0, True, 300.0, False) == attrs.astuple(RetryPolicy())


def test_policy_is_a_frozen_value() -> None:
    policy = RetryPolicy(attempts=3)
    assert RetryPolicy(attempts=3) == policy
    assert hash(RetryPolicy(attempts=3)) == hash(policy)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.attempts = 4  # type: ignore[misc]


@pytest.mark.parametrize("error_class", RETRIED)
def test_transient_errors_are_retried(error_class: type[SendError]) -> None:
    assert RetryPolicy().is_retryable(error_class("try later"))


@pytest.mark.parametrize("error_class", NOT_RETRIED)
def test_permanent_quota_and_unknown_errors_are_not_retried(error_class: type[SendError]) -> None:
    assert not RetryPolicy().is_retryable(error_class("no"))


def test_unknown_outcome_is_retried_only_when_ambiguity_is_accepted() -> None:
    assert RetryPolicy(retry_ambiguous=True).is_retryable(DeliveryUnknownError("timeout after DATA"))


@pytest.mark.parametrize("error", [InvalidMessageError("bad"), ValueError("x"), RuntimeError("bug")])
def test_errors_that_are_not_send_errors_are_not_retried(error: Exception) -> None:
    assert not RetryPolicy(retry_ambiguous=True).is_retryable(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", 0),
        ("attempts", 1.5),
        ("attempts", True),
        ("initial", -1.0),
        ("maximum", float("nan")),
        ("multiplier", 0.5),
        ("max_elapsed", 0),
        ("max_elapsed", -3.0),
    ],
)
def test_out_of_range_fields_are_refused_with_the_field_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_max_elapsed_none_means_no_time_bound() -> None:
    assert RetryPolicy(max_elapsed=None).max_elapsed is None


def test_integers_are_kept_as_seconds_in_floats() -> None:
    policy = RetryPolicy(initial=2, maximum=10, multiplier=3, max_elapsed=60)
    values = (policy.initial, policy.maximum, policy.multiplier, policy.max_elapsed)
    assert (2.0, 10.0, 3.0, 60.0) == values
    assert [float] * 4 == [type(value) for value in values]


def test_ceiling_grows_by_the_multiplier_up_to_the_maximum() -> None:
    policy = RetryPolicy(initial=1.0, multiplier=2.0, maximum=10.0)
    assert [1.0, 2.0, 4.0, 8.0, 10.0, 10.0] == [policy.ceiling(n) for n in range(1, 7)]


def test_ceiling_does_not_overflow_after_very_many_attempts() -> None:
    assert 60.0 == RetryPolicy(multiplier=10.0).ceiling(10_000)


def test_without_jitter_the_wait_is_the_ceiling() -> None:
    policy = RetryPolicy(jitter=False, initial=0.5, multiplier=3.0)
    assert [0.5, 1.5, 4.5] == [policy.backoff(n) for n in (1, 2, 3)]


@given(
    failed=st.integers(1, 30),
    initial=st.floats(0.0, 10.0),
    multiplier=st.floats(1.0, 5.0),
    maximum=st.floats(0.0, 120.0),
    retry_after=st.none() | st.floats(0.0, 500.0),
)
def test_jittered_wait_is_between_retry_after_and_the_ceiling(
    failed: int, initial: float, multiplier: float, maximum: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(initial=initial, multiplier=multiplier, maximum=maximum)
    wait = policy.backoff(failed, retry_after)
    floor = retry_after or 0.0
    assert floor <= wait <= max(floor, policy.ceiling(failed))


def test_full_jitter_spreads_waits_over_the_whole_range() -> None:
    policy = RetryPolicy(initial=8.0)
    waits = [policy.backoff(1) for _ in range(2000)]
    assert min(waits) < 1.0
    assert max(waits) > 7.0


def test_wait_is_never_shorter_than_retry_after() -> None:
    assert 45.0 == RetryPolicy(jitter=False).backoff(1, retry_after=45.0)


def test_testing_switch_makes_every_wait_zero_and_is_a_context_manager() -> None:
    policy = RetryPolicy(jitter=False)
    assert not is_testing()
    with set_testing(True):
        assert is_testing()
        assert 0.0 == policy.backoff(3, retry_after=600.0)
    assert not is_testing()
    assert 4.0 == policy.backoff(3)


def test_testing_switch_stays_on_when_called_without_with() -> None:
    set_testing(True)
    assert is_testing()
    set_testing(False)
    assert not is_testing()


def test_testing_switch_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        set_testing(True, attempts=0)
