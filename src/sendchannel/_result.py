"""What a send returns."""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["SendResult"]


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return types.MappingProxyType(dict(value or {}))


def _tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class SendResult:
    """The outcome of one successful send.

    Args:
        message_id: The Message-ID of the message sent.
        provider_id: The provider's own id: an SMTP queue id, a Gmail message id, a SparkPost
            transmission id, or None when the provider gave none.
        accepted: The recipients the provider accepted.
        rejected: Recipients the provider refused, mapped to its reply for each (the send still succeeded
            for the others).
        channel: The name of the channel that sent it.
        attempts: How many attempts it took (counted by a retry layer).
    """

    message_id: str
    provider_id: str | None = None
    accepted: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    rejected: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    channel: str = ""
    attempts: int = 1

    def __reduce__(self) -> tuple[object, ...]:
        return (
            SendResult,
            (self.message_id, self.provider_id, self.accepted, dict(self.rejected), self.channel,
             self.attempts),
        )
