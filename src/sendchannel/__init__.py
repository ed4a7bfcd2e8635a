"""sendchannel: send mail through SMTP, Office 365, Gmail or SparkPost behind one async Channel.

Each channel knows its provider's credential scope and limits; a Throttler keeps every process sharing a
credential inside them, a retry layer retries what is worth retrying, and ``sendchannel.testing`` gives
test suites a fake that behaves like the real thing.

Provider channels and layers are imported on first use, so ``import sendchannel`` stays light and does not
import Google's client, aiohttp or aiosmtplib. Each provider's public classes are found through its
description (``sendchannel._providers``), so a new provider adds no line here but its name in
``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sendchannel import errors
from sendchannel._channel import BaseChannel, Channel
from sendchannel._limits import Limits, Rate
from sendchannel._message import Attachment, Message
from sendchannel._registry import channel_from_url, register_channel, schemes
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    DeliveryUnknownError,
    InvalidMessageError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)

if TYPE_CHECKING:
    from sendchannel._bulk import BulkReport, Outcome, send_all
    from sendchannel._directory import ChannelDirectory, DirectoryEntry
    from sendchannel._failover import FailoverChannel
    from sendchannel._gmail._channel import GmailOAuthChannel
    from sendchannel._graph._channel import Office365GraphChannel
    from sendchannel._outbox import Outbox, OutboxItem
    from sendchannel._pipeline import pipeline
    from sendchannel._retry import Retrying, RetryPolicy
    from sendchannel._smtp._channel import SmtpChannel
    from sendchannel._smtp._office365 import Office365Channel
    from sendchannel._sparkpost._channel import SparkpostChannel
    from sendchannel._throttle import (
        MemoryStore,
        RedisStore,
        Reservation,
        SqliteStore,
        Throttler,
        ThrottleStore,
    )

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "AuthenticationError",
    "BaseChannel",
    "BulkReport",
    "Channel",
    "ChannelDirectory",
    "ConfigurationError",
    "ConnectionLostError",
    "CredentialScope",
    "DeliveryUnknownError",
    "DirectoryEntry",
    "FailoverChannel",
    "GmailOAuthChannel",
    "InvalidMessageError",
    "Limits",
    "MemoryStore",
    "Message",
    "MessageRejectedError",
    "Office365Channel",
    "Office365GraphChannel",
    "Outbox",
    "OutboxItem",
    "Outcome",
    "PermanentError",
    "QuotaExceededError",
    "Rate",
    "RecipientsRefusedError",
    "RedisStore",
    "Reservation",
    "RetryPolicy",
    "Retrying",
    "ScopeKind",
    "SendError",
    "SendResult",
    "SenderNotAllowedError",
    "SmtpChannel",
    "SparkpostChannel",
    "SqliteStore",
    "ThrottleStore",
    "ThrottledError",
    "Throttler",
    "TransientError",
    "channel_from_url",
    "errors",
    "pipeline",
    "register_channel",
    "schemes",
    "send_all",
]

# name -> (module, extra that provides its optional dependency, or None); providers' classes come from
# their descriptions (see _provider_export).
_LAZY: dict[str, tuple[str, str | None]] = {
    "BulkReport": ("sendchannel._bulk", None),
    "Outcome": ("sendchannel._bulk", None),
    "send_all": ("sendchannel._bulk", None),
    "ChannelDirectory": ("sendchannel._directory", None),
    "DirectoryEntry": ("sendchannel._directory", None),
    "FailoverChannel": ("sendchannel._failover", None),
    "Outbox": ("sendchannel._outbox", None),
    "OutboxItem": ("sendchannel._outbox", None),
    "pipeline": ("sendchannel._pipeline", None),
    "RetryPolicy": ("sendchannel._retry", None),
    "Retrying": ("sendchannel._retry", None),
    "MemoryStore": ("sendchannel._throttle", None),
    "RedisStore": ("sendchannel._throttle", None),
    "SqliteStore": ("sendchannel._throttle", None),
    "Reservation": ("sendchannel._throttle", None),
    "ThrottleStore": ("sendchannel._throttle", None),
    "Throttler": ("sendchannel._throttle", None),
}


def _provider_export(name: str) -> tuple[str, str | None] | None:
    from sendchannel._providers import builtin_providers

    for provider in builtin_providers().values():
        if name in provider.exports:
            return provider.exports[name], provider.extra
    return None


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, extra = _LAZY[name]
        attribute = name
    elif name in __all__ and (export := _provider_export(name)) is not None:
        reference, extra = export
        module_name, _, attribute = reference.partition(":")
    else:
        raise AttributeError(f"module 'sendchannel' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or (exc.name or "").startswith("sendchannel"):
            raise
        missing = (exc.name or "").partition(".")[0]
        raise ImportError(
            f"sendchannel.{name} needs the optional dependency {missing!r}; "
            f'install it with: pip install "sendchannel[{extra}]"',
            name=exc.name,
        ) from exc
    value = getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
