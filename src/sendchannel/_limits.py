"""Provider limits: sending rates over sliding windows, and per-message bounds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import attrs

__all__ = ["MINUTE", "HOUR", "DAY", "Limits", "Rate", "RateUnit"]

RateUnit = Literal["messages", "recipients"]

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, got {value!r}")


def _optional_positive_int(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None:
        _positive_int(instance, attribute, value)  # type: ignore[arg-type]


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _unit(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("messages", "recipients"):
        raise ValueError(f"unit must be 'messages' or 'recipients', got {value!r}")


def _as_float(value: float) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@attrs.frozen
class Rate:
    """At most ``count`` units in any window of ``per`` seconds (a sliding window).

    Args:
        count: How many messages or recipients the window allows.
        per: The window's length in seconds.
        unit: ``"messages"`` (each send counts 1) or ``"recipients"`` (each send counts its recipients).
    """

    count: int = attrs.field(validator=_positive_int)
    per: float = attrs.field(converter=_as_float, validator=_positive_seconds)
    unit: RateUnit = attrs.field(default="messages", validator=_unit)

    @classmethod
    def per_minute(cls, count: int, unit: RateUnit = "messages") -> Rate:
        """``count`` units in any 60 seconds."""
        return cls(count, MINUTE, unit)

    @classmethod
    def per_hour(cls, count: int, unit: RateUnit = "messages") -> Rate:
        """``count`` units in any hour."""
        return cls(count, HOUR, unit)

    @classmethod
    def per_day(cls, count: int, unit: RateUnit = "messages") -> Rate:
        """``count`` units in any rolling 24 hours."""
        return cls(count, DAY, unit)

    def cost(self, recipients: int) -> int:
        """The units one send to ``recipients`` recipients takes from this rate."""
        return recipients if self.unit == "recipients" else 1

    def __str__(self) -> str:
        return f"{self.count} {self.unit} per {_describe_seconds(self.per)}"


def _describe_seconds(seconds: float) -> str:
    for size, name in ((DAY, "day"), (HOUR, "hour"), (MINUTE, "minute"), (1.0, "second")):
        if seconds % size == 0:
            n = int(seconds // size)
            return name if n == 1 else f"{n} {name}s"
    return f"{seconds:g} seconds"


def _rates(value: object) -> tuple[Rate, ...]:
    if isinstance(value, Rate):
        return (value,)
    if not isinstance(value, Iterable):
        raise TypeError(f"rates must be a Rate or a sequence of Rate, got {type(value).__name__}")
    rates = tuple(value)
    for rate in rates:
        if not isinstance(rate, Rate):
            raise TypeError(f"rates must be Rate objects, got {type(rate).__name__}")
    return rates


@attrs.frozen
class Limits:
    """What a provider allows a credential: rates over sliding windows and per-message bounds.

    Each provider channel declares its documented defaults; pass your own where a tenant or plan differs.

    Args:
        rates: Sliding-window rates, all enforced at once by a :class:`~sendchannel.Throttler`.
        max_recipients_per_message: The most recipients (to + cc + bcc) one message may have.
        max_message_bytes: The largest message, as serialised MIME, in bytes.
        max_connections: The most concurrent connections the provider accepts for the credential.
    """

    rates: tuple[Rate, ...] = attrs.field(default=(), converter=_rates)
    max_recipients_per_message: int | None = attrs.field(
        default=None, validator=_optional_positive_int
    )
    max_message_bytes: int | None = attrs.field(default=None, validator=_optional_positive_int)
    max_connections: int | None = attrs.field(default=None, validator=_optional_positive_int)

    def evolve(self, **changes: Any) -> Limits:
        """A copy with some fields changed: ``limits.evolve(max_recipients_per_message=1000)``."""
        return attrs.evolve(self, **changes)

    def __str__(self) -> str:
        parts = [str(rate) for rate in self.rates]
        if self.max_recipients_per_message is not None:
            parts.append(f"{self.max_recipients_per_message} recipients a message")
        if self.max_message_bytes is not None:
            parts.append(f"{self.max_message_bytes:,} bytes a message")
        if self.max_connections is not None:
            parts.append(f"{self.max_connections} concurrent connections")
        return "; ".join(parts) if parts else "no limits declared"
