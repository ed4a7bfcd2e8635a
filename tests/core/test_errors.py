"""The error hierarchy: classification attributes, construction by users, pickling, no secrets."""

from __future__ import annotations

import pickle

import pytest

from sendchannel import errors

ALL = [getattr(errors, name) for name in errors.__all__]
SEND_ERRORS = [cls for cls in ALL if issubclass(cls, errors.SendError)]


def test_hierarchy_is_as_designed() -> None:
    assert issubclass(errors.ThrottledError, errors.TransientError)
    assert issubclass(errors.ConnectionLostError, errors.TransientError)
    for cls in (
        errors.AuthenticationError,
        errors.SenderNotAllowedError,
        errors.RecipientsRefusedError,
        errors.MessageRejectedError,
    ):
        assert issubclass(cls, errors.PermanentError)
    for cls in (
        errors.TransientError,
        errors.PermanentError,
        errors.QuotaExceededError,
        errors.DeliveryUnknownError,
    ):
        assert cls.__bases__ == (errors.SendError,)
    assert issubclass(errors.InvalidMessageError, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)


@pytest.mark.parametrize("cls", SEND_ERRORS)
def test_every_error_is_built_the_same_way(cls: type[errors.SendError]) -> None:
    error = cls(
        "The server said no.",
        code=451,
        enhanced_code="4.3.0",
        retry_after=30,
        channel="smtp",
        rejected={"a@b.com": "550 no"},
        reply="451 4.3.0 no",
    )
    assert (
        str(error),
        error.code,
        error.enhanced_code,
        error.retry_after,
        error.channel,
    ) == ("The server said no.", 451, "4.3.0", 30.0, "smtp")
    assert {"a@b.com": "550 no"} == dict(error.rejected)
    assert 1 == error.attempts
    assert cls.transient == issubclass(cls, errors.TransientError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(error), str(error), error.code, dict(error.rejected)) == (
        type(copy),
        str(copy),
        copy.code,
        dict(copy.rejected),
    )


def test_rejected_is_empty_by_default_and_retry_after_never_negative() -> None:
    error = errors.TransientError("x", retry_after=-3)
    assert {} == dict(error.rejected)
    assert 0.0 == error.retry_after


def test_quota_error_carries_resets_at() -> None:
    error = errors.QuotaExceededError("spent", resets_at=1_700_000_000.0)
    assert 1_700_000_000.0 == error.resets_at
    assert not error.transient
    assert 1_700_000_000.0 == pickle.loads(pickle.dumps(error)).resets_at


def test_repr_is_short_and_shows_classification() -> None:
    assert (
        repr(errors.ThrottledError("slow", code=421, retry_after=5))
        == "ThrottledError('slow', code=421, retry_after=5.0)"
    )
