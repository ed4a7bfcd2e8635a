"""sendchannel: send mail through SMTP, Office 365, Gmail or SparkPost behind one async Channel.

Each channel knows its provider's credential scope and limits; a Throttler keeps every process sharing a
credential inside them, a retry layer retries what is worth retrying, and ``sendchannel.testing`` gives
test suites a fake that behaves like the real thing.

Provider channels and layers are imported on first use, so ``import sendchannel`` stays light and does not
import Google's client or httpx.
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
    from sendchannel._gmail import GmailOAuthChannel
    from sendchannel._outbox import Outbox, OutboxItem
    from sendchannel._pipeline import pipeline
    from sendchannel._retry import Retrying, RetryPolicy
    from sendchannel._smtp import Office365Channel, SmtpChannel
    from sendchannel._sparkpost import SparkpostChannel
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

# name -> (module, extra that provides its optional dependency, or None)
_LAZY: dict[str, tuple[str, str | None]] = {
    "BulkReport": ("sendchannel._bulk", None),
    "Outcome": ("sendchannel._bulk", None),
    "send_all": ("sendchannel._bulk", None),
    "ChannelDirectory": ("sendchannel._directory", None),
    "DirectoryEntry": ("sendchannel._directory", None),
    "FailoverChannel": ("sendchannel._failover", None),
    "GmailOAuthChannel": ("sendchannel._gmail", "gmail"),
    "Outbox": ("sendchannel._outbox", None),
    "OutboxItem": ("sendchannel._outbox", None),
    "pipeline": ("sendchannel._pipeline", None),
    "RetryPolicy": ("sendchannel._retry", None),
    "Retrying": ("sendchannel._retry", None),
    "Office365Channel": ("sendchannel._smtp", None),
    "SmtpChannel": ("sendchannel._smtp", None),
    "SparkpostChannel": ("sendchannel._sparkpost", "sparkpost"),
    "MemoryStore": ("sendchannel._throttle", None),
    "RedisStore": ("sendchannel._throttle", None),
    "SqliteStore": ("sendchannel._throttle", None),
    "Reservation": ("sendchannel._throttle", None),
    "ThrottleStore": ("sendchannel._throttle", None),
    "Throttler": ("sendchannel._throttle", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'sendchannel' has no attribute {name!r}") from None
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
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
