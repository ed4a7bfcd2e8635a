"""The Channel protocol, and an optional base class that does what every built-in channel does."""

from __future__ import annotations

import abc
import logging
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel.errors import InvalidMessageError, SenderNotAllowedError, SendError

__all__ = ["BaseChannel", "Channel", "check_message", "is_idempotent"]

logger = logging.getLogger("sendchannel")


@runtime_checkable
class Channel(Protocol):
    """Anything that sends a :class:`~sendchannel.Message`: a provider, a throttler, a retry layer.

    A plugin needs no base class: an object with these attributes and methods is a Channel. A channel
    may also declare ``idempotent = True`` when its provider recognises a repeated send of the same message
    and delivers it once (``Retrying`` then repeats a send whose outcome is unknown); without the attribute
    it is not.
    """

    #: A short name for logs and results (``"smtp"``, ``"office365"``).
    name: str
    #: Which senders the credential may send as.
    scope: CredentialScope
    #: What the provider allows the credential.
    limits: Limits

    async def send(self, message: Message) -> SendResult:
        """Send one message; raise a :class:`~sendchannel.errors.SendError` when it fails."""
        ...

    async def verify(self) -> None:
        """Reach the provider and authenticate, sending nothing; raise as ``send`` would."""
        ...

    async def aclose(self) -> None:
        """Release connections; the channel cannot send afterwards."""
        ...

    async def __aenter__(self) -> Channel: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def is_idempotent(channel: object) -> bool:
    """Whether ``channel`` declares ``idempotent``: its provider delivers a repeated send of the same
    message (same Message-ID) once, so a send whose outcome is unknown may be repeated."""
    return getattr(channel, "idempotent", False) is True


def check_message(channel: Channel, message: Message) -> None:
    """Check ``message`` against the channel's scope and per-message limits, before any I/O.

    Raises:
        SenderNotAllowedError: The credential may not send as the message's sender.
        InvalidMessageError: Too many recipients, or a message larger than the provider accepts.
    """
    if not channel.scope.allows(message.sender):
        raise SenderNotAllowedError(
            channel.scope.explain(message.sender), channel=channel.name
        )
    limits = channel.limits
    count = len(message.recipients)
    if limits.max_recipients_per_message is not None and count > limits.max_recipients_per_message:
        raise InvalidMessageError(
            f"The message has {count} recipients, but {channel.name} accepts at most "
            f"{limits.max_recipients_per_message} a message; split it into several messages."
        )
    if limits.max_message_bytes is not None:
        size = message.size
        if size > limits.max_message_bytes:
            raise InvalidMessageError(
                f"The message is {size:,} bytes, but {channel.name} accepts at most "
                f"{limits.max_message_bytes:,}; send large files as links instead of attachments."
            )


class Closing:
    """``async with`` for an object with ``aclose()``: entering gives the object, leaving closes it.

    The base of BaseChannel and of the layers that wrap a channel (Throttler, Retrying, FailoverChannel).
    """

    async def aclose(self) -> None:
        """Release resources (nothing to do by default)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BaseChannel(Closing, abc.ABC):
    """An optional base for channels: the scope and size checks before any I/O, logging, ``async with``.

    Subclasses set ``name``, ``scope`` and ``limits`` and implement :meth:`_send`; :meth:`verify` and
    :meth:`aclose` do nothing unless overridden.
    """

    name: str
    scope: CredentialScope
    limits: Limits
    #: The limits the provider documents; a channel's ``limits`` start from these.
    default_limits: ClassVar[Limits] = Limits()
    #: The scope kind the provider's credentials have (used by ``FakeChannel.like``).
    scope_kind: ClassVar[ScopeKind] = ScopeKind.UNRESTRICTED
    #: The provider's name as users know it, used in explanations (``"Office 365"``).
    provider_name: ClassVar[str | None] = None
    #: Whether the provider delivers a repeated send of the same message once (an idempotency key).
    idempotent: ClassVar[bool] = False

    async def send(self, message: Message) -> SendResult:
        """Check the message, send it, and log the outcome (never a secret, never the body).

        Raises:
            SenderNotAllowedError: The scope does not cover the sender (nothing was sent).
            InvalidMessageError: The message breaks a per-message limit (nothing was sent).
            SendError: The provider refused or failed, classified.
        """
        check_message(self, message)
        try:
            result = await self._send(message)
        except SendError as exc:
            if exc.channel is None:
                exc.channel = self.name
            logger.warning(
                "send failed: channel=%s message_id=%s error=%s: %s",
                self.name,
                message.message_id,
                type(exc).__name__,
                exc,
            )
            raise
        logger.debug(
            "sent: channel=%s message_id=%s accepted=%d rejected=%d provider_id=%s",
            self.name,
            message.message_id,
            len(result.accepted),
            len(result.rejected),
            result.provider_id,
        )
        return result

    @abc.abstractmethod
    async def _send(self, message: Message) -> SendResult:
        """Send a message that has passed the checks."""

    async def verify(self) -> None:
        """Reach the provider and authenticate without sending (nothing to do by default)."""

    async def aclose(self) -> None:
        """Release resources (nothing to do by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} scope={self.scope}>"
