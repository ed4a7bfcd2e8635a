"""SparkPost (Bird Email) through its Transmissions API, and the description of ``sparkpost://`` URLs.

``sparkpost://KEY@us?domains=example.com`` (the host is the region, ``us`` or ``eu``;
``?base_url=https://.../api/v1`` for an Enterprise endpoint). The key sits in the user part, so a
redacted URL hides the whole user part.

This module is the package's description and imports nothing heavy: the channel (and aiohttp) load when
they are first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sendchannel._providers import Hint, Provider, lazy_exports
from sendchannel._urls import comma_list, seconds, text
from sendchannel.errors import AuthenticationError

if TYPE_CHECKING:
    from sendchannel._sparkpost._channel import SparkpostChannel

__all__ = ["SPARKPOST", "SparkpostChannel"]

#: sparkpost:// (the key is the URL's user part).
SPARKPOST = Provider(
    "sparkpost",
    "sendchannel._sparkpost._config:from_url",
    "SparkPost",
    extra="sparkpost",
    credential_keyword="api_key",
    key_in_user=True,
    credential_required=True,
    exports={"SparkpostChannel": "sendchannel._sparkpost._channel:SparkpostChannel"},
    options={"domains": comma_list, "region": text, "base_url": text, "timeout": seconds},
    hints=(
        Hint(
            AuthenticationError,
            "The credential was accepted but lacks a permission: give it the permission the message names "
            "(for a SparkPost key, under Account > API Keys), or use a credential that has it.",
            words=("permission",),
        ),
        Hint(
            AuthenticationError,
            "Check the API key (from the URL or SENDCHANNEL_PASSWORD) and the region: US and EU accounts "
            "are separate.",
        ),
    ),
)


__getattr__ = lazy_exports(__name__, SPARKPOST)
