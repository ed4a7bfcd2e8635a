"""Rate and Limits: validation and description."""

from __future__ import annotations

import pytest

from sendchannel import Limits, Rate


def test_rate_constructors_and_cost() -> None:
    assert Rate(30, 60.0) == Rate.per_minute(30)
    assert Rate(10_000, 86_400, "recipients") == Rate.per_day(10_000, "recipients")
    assert 60.0 == Rate(1, 60).per
    assert 1 == Rate.per_minute(30).cost(40)
    assert 40 == Rate.per_day(10_000, "recipients").cost(40)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((0, 60), "count"),
        ((1.5, 60), "count"),
        ((True, 60), "count"),
        ((1, 0), "per"),
        ((1, -5), "per"),
        ((1, float("inf")), "per"),
        ((1, 60, "mails"), "unit"),
    ],
)
def test_invalid_rates_are_refused(args: tuple[object, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Rate(*args)  # type: ignore[arg-type]


def test_limits_take_a_rate_or_a_sequence_and_validate_bounds() -> None:
    assert (Rate.per_minute(1),) == Limits(Rate.per_minute(1)).rates
    assert (Rate.per_minute(1),) == Limits([Rate.per_minute(1)]).rates
    with pytest.raises(TypeError, match="Rate objects"):
        Limits(rates=[(1, 60)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_recipients_per_message"):
        Limits(max_recipients_per_message=0)


def test_limits_describe_themselves_and_evolve() -> None:
    limits = Limits(
        (Rate.per_minute(30), Rate.per_day(10_000, "recipients")),
        max_recipients_per_message=500,
        max_message_bytes=35 * 1024 * 1024,
        max_connections=3,
    )
    assert str(limits) == (
        "30 messages per minute; 10000 recipients per day; 500 recipients a message; "
        "36,700,160 bytes a message; 3 concurrent connections"
    )
    assert 1000 == limits.evolve(max_recipients_per_message=1000).max_recipients_per_message
    assert "no limits declared" == str(Limits())
    assert "5 messages per 90 seconds" == str(Rate(5, 90))
    assert "5 messages per 1.5 seconds" == str(Rate(5, 1.5))
