"""SMTP and Office 365 channels, and the description of their URL schemes.

``smtp://user:password@host:587`` (STARTTLS; ``?tls=none`` for plaintext), ``smtps://user:password@host``
(implicit TLS, port 465 by default) and ``office365://alice@contoso.com`` (or
``office365://alice:password@contoso.com``). Query parameters are keyword arguments of the channel:
``timeout``, ``pool_size``, ``local_hostname``, ``recycle_after``, ``max_idle``, ``name``, and for smtp
``tls`` and ``allow_insecure_auth``, for office365 ``send_as`` (repeated or comma-separated), ``host`` and
``port``.

This module is the package's description and imports nothing heavy: the channels (and aiosmtplib) load
when they are first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from sendchannel._providers import Hint, Provider, lazy_exports
from sendchannel._urls import boolean, comma_list, integer, seconds, text
from sendchannel.errors import AuthenticationError, SendError

if TYPE_CHECKING:
    from sendchannel._smtp._channel import SmtpChannel
    from sendchannel._smtp._office365 import Office365Channel

__all__ = ["OFFICE365", "SMTP", "SMTPS", "Office365Channel", "SmtpChannel"]

_POOL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "timeout": seconds,
    "pool_size": integer,
    "local_hostname": text,
    "recycle_after": integer,
    "max_idle": float,
    "name": text,
}
_SMTP_OPTIONS: dict[str, Callable[[str], Any]] = {
    "tls": text,
    "allow_insecure_auth": boolean,
    **_POOL_OPTIONS,
}
_SMTP_HINTS = (
    Hint(
        SendError,
        "The server does not offer STARTTLS on this port. Use the port your provider gives for submission "
        "(587 with STARTTLS, or smtps:// on 465); sendchannel never sends a password over an unencrypted "
        "connection.",
        words=("does not offer starttls",),
    ),
    Hint(
        AuthenticationError,
        "SMTP AUTH with a password (Basic authentication) is disabled for this mailbox or tenant: ask an "
        "administrator to enable SMTP AUTH for the mailbox, or sign in with OAuth (token_provider in code).",
        words=("5.7.139", "basic auth", "5.7.30"),
    ),
)
_SMTP_EXPORTS = {"SmtpChannel": "sendchannel._smtp._channel:SmtpChannel"}

SMTP = Provider(
    scheme="smtp",
    factory="sendchannel._smtp._urls:smtp_from_url",
    title="SMTP",
    exports=_SMTP_EXPORTS,
    credential_keyword="password",
    options=_SMTP_OPTIONS,
    hints=_SMTP_HINTS,
)
SMTPS = attrs.evolve(
    SMTP, scheme="smtps", factory="sendchannel._smtp._urls:smtps_from_url", title="SMTP (implicit TLS)"
)
OFFICE365 = Provider(
    scheme="office365",
    factory="sendchannel._smtp._urls:office365_from_url",
    title="Office 365",
    exports={"Office365Channel": "sendchannel._smtp._office365:Office365Channel"},
    credential_keyword="password",
    credential_required=True,
    options={**_POOL_OPTIONS, "send_as": comma_list, "host": text, "port": integer},
    hints=_SMTP_HINTS,
)


__getattr__ = lazy_exports(__name__, SMTP, OFFICE365)
