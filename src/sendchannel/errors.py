"""The errors sendchannel raises.

Every failure of a send is a :class:`SendError`, classified by what the sender should do next::

    SendError                     .transient .retry_after .code .enhanced_code .channel .rejected
    ├── TransientError            worth trying again later
    │   ├── ThrottledError        the provider asked to slow down (429, 421, 432 4.3.2, 4.7.x, 420 hourly)
    │   └── ConnectionLostError   the connection failed before the message was handed over
    ├── PermanentError            trying again will fail the same way
    │   ├── AuthenticationError   the credentials were rejected
    │   ├── SenderNotAllowedError the credential may not send as this sender
    │   ├── RecipientsRefusedError every recipient was refused (see .rejected)
    │   └── MessageRejectedError  the message itself was refused
    ├── QuotaExceededError        a daily or plan quota is spent (see .resets_at)
    └── DeliveryUnknownError      the message may or may not have gone out

    InvalidMessageError(ValueError)   a message that cannot be sent as built
    ConfigurationError(ValueError)    options that do not fit together

Errors are plain exceptions that users and fakes can raise too::

    raise ThrottledError("slow down", code=421, retry_after=30.0, channel="smtp")

No error ever carries a password, token or API key: channels redact them from provider replies before an
error is built.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectionLostError",
    "DeliveryUnknownError",
    "InvalidMessageError",
    "MessageRejectedError",
    "PermanentError",
    "QuotaExceededError",
    "RecipientsRefusedError",
    "SendError",
    "SenderNotAllowedError",
    "ThrottledError",
    "TransientError",
]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


class SendError(Exception):
    """A send failed.

    Args:
        message: One or two sentences saying what happened, the likely cause and the remedy.
        code: The provider's reply code (an SMTP reply code or an HTTP status), when there was one.
        enhanced_code: The RFC 3463 enhanced status code (``"5.7.3"``) or the provider's own error code.
        retry_after: Seconds the provider asked the client to wait before trying again.
        channel: The name of the channel that raised it.
        rejected: Recipients the provider refused, mapped to its reply for each.
        reply: The provider's original reply text, with any secret removed.
    """

    #: Whether trying again later may succeed.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_code: str | None = None,
        retry_after: float | None = None,
        channel: str | None = None,
        rejected: Mapping[str, str] | None = None,
        reply: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.enhanced_code = enhanced_code
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))
        self.channel = channel
        self.rejected: Mapping[str, str] = (
            _EMPTY if not rejected else types.MappingProxyType(dict(rejected))
        )
        self.reply = reply
        #: How many attempts a retry layer made before giving up (1 when none was involved).
        self.attempts = 1

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        fields = [repr(self.message)]
        for name in ("code", "enhanced_code", "retry_after", "channel"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments need help to survive pickling (multiprocessing, logging handlers).
        state = self.__dict__.copy()
        state["rejected"] = dict(self.rejected)
        return (_rebuild, (type(self), self.message, state))


def _rebuild(cls: type[SendError], message: str, state: dict[str, object]) -> SendError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    error.rejected = types.MappingProxyType(dict(error.rejected))
    return error


class TransientError(SendError):
    """A failure that may pass: try again later (after ``retry_after`` when it is set)."""

    transient = True


class ThrottledError(TransientError):
    """The provider asked the client to slow down; ``retry_after`` says for how long when it said so."""


class ConnectionLostError(TransientError):
    """The connection failed or timed out before the message was handed over, so it was not sent."""


class PermanentError(SendError):
    """A failure that will happen again on every attempt until something is changed."""


class AuthenticationError(PermanentError):
    """The provider rejected the credentials; the message names the likely cause."""


class SenderNotAllowedError(PermanentError):
    """The credential may not send as this sender (checked locally from the scope, or by the provider)."""


class RecipientsRefusedError(PermanentError):
    """Every recipient was refused; ``rejected`` maps each to the provider's reply."""


class MessageRejectedError(PermanentError):
    """The provider refused the message itself (content, size, policy)."""


class QuotaExceededError(SendError):
    """A daily, monthly or plan quota is spent; it comes back at ``resets_at`` when that is known.

    Not retried by default: waiting hours inside a send is rarely what the caller wants.

    Args:
        resets_at: Wall-clock time (seconds since the epoch) at which the quota is known to be back.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_code: str | None = None,
        retry_after: float | None = None,
        channel: str | None = None,
        rejected: Mapping[str, str] | None = None,
        reply: str | None = None,
        resets_at: float | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            enhanced_code=enhanced_code,
            retry_after=retry_after,
            channel=channel,
            rejected=rejected,
            reply=reply,
        )
        self.resets_at = resets_at


class DeliveryUnknownError(SendError):
    """The outcome is not known: the message may have gone out (a connection lost after it was handed over).

    Never retried by default, because a retry could deliver the message twice.
    """


class InvalidMessageError(ValueError):
    """A message that cannot be sent as built; the text names the field and how to fix it."""


class ConfigurationError(ValueError):
    """Options that do not fit together, an unknown URL scheme or region, or a duplicate registration."""
