"""Gmail through the Gmail API with the account owner's OAuth grant, and the description of ``gmail://``.

``gmail://alice@example.com?credentials=/path/to/authorized_user.json`` (or the environment variable
``SENDCHANNEL_GMAIL_CREDENTIALS``). No password: Gmail is reached with OAuth only.

This module is the package's description and imports nothing heavy: the channel (and Google's client)
load when they are first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sendchannel._providers import Hint, Provider, lazy_exports
from sendchannel._urls import boolean, comma_list, integer, seconds, text
from sendchannel.errors import AuthenticationError

if TYPE_CHECKING:
    from sendchannel._gmail._channel import GmailOAuthChannel

__all__ = ["GMAIL", "GmailOAuthChannel"]

#: gmail:// (no secret in the URL: the grant comes from a file or the environment).
GMAIL = Provider(
    "gmail",
    "sendchannel._gmail._config:from_url",
    "Gmail",
    exports={"GmailOAuthChannel": "sendchannel._gmail._channel:GmailOAuthChannel"},
    extra="gmail",
    options={
        "credentials": text,
        "workspace": boolean,
        "api_endpoint": text,
        "timeout": seconds,
        "send_as": comma_list,
        "max_concurrency": integer,
    },
    hints=(
        Hint(
            AuthenticationError,
            "The Gmail grant was refused or lacks a scope: the user must connect their Gmail account again "
            "(a new authorised-user JSON file with the gmail.send scope).",
        ),
    ),
)


__getattr__ = lazy_exports(__name__, GMAIL)
