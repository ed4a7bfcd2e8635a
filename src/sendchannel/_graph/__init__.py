"""Office 365 through Microsoft Graph ``sendMail``, and the description of ``msgraph://`` URLs.

``msgraph://alice@contoso.com?client_id=APP&tenant_id=TENANT`` (delegated: the user signs in with a device
code, per-address) and ``msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com`` (an application with
client credentials, per-domain). See :mod:`sendchannel._graph._url`.

This module is the package's description and imports nothing heavy: the channel (with aiohttp and msal)
loads when it is first used.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from sendchannel._providers import Hint, Provider, lazy_exports
from sendchannel._urls import comma_list, seconds, text
from sendchannel.errors import AuthenticationError, PermanentError

if TYPE_CHECKING:
    from sendchannel._graph._channel import Office365GraphChannel

__all__ = ["MSGRAPH", "Office365GraphChannel"]



def _application(url: urllib.parse.SplitResult) -> bool:
    """Whether ``url`` is the application form (it declares domains), which needs a client secret."""
    return "domains" in urllib.parse.parse_qs(url.query, keep_blank_values=True)


MSGRAPH = Provider(
    scheme="msgraph",
    factory="sendchannel._graph._url:from_url",
    title="Office 365 (Microsoft Graph)",
    extra="msgraph",
    exports={"Office365GraphChannel": "sendchannel._graph._channel:Office365GraphChannel"},
    credential_keyword="client_secret",
    needs_credential=_application,
    options={
        "domains": comma_list,
        "send_as": comma_list,
        "client_id": text,
        "tenant_id": text,
        "cache_path": text,
        "authority": text,
        "base_url": text,
        "timeout": seconds,
    },
    hints=(
        Hint(
            AuthenticationError,
            "Grant the permission the message names in Entra ID (App registrations > API permissions > "
            "Microsoft Graph), grant admin consent for application permissions, then run verify again.",
            words=("mail.send", "mail.readwrite", "permission"),
        ),
        Hint(
            AuthenticationError,
            "Check the client id, tenant and client secret (secrets expire), or sign in again for a "
            "delegated mailbox.",
        ),
        Hint(
            PermanentError,
            "The mailbox must be in Exchange Online with a licence; on-premises mailboxes need SMTP.",
            words=("on-premises", "unlicensed"),
        ),
    ),
)


__getattr__ = lazy_exports(__name__, MSGRAPH)
