"""Microsoft Graph tokens: msal token providers with Graph's scopes, and what a token's claims allow.

An application token (client credentials) carries its application permissions in the ``roles`` claim; a
delegated token (a user signed in) carries its scopes in ``scp``, separated by spaces. Graph's access tokens
are JWTs meant for Graph, not for us: their claims are read without checking the signature, only to tell the
user which permission is missing before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from sendchannel._entra import ClientCredentialsTokenProvider, DeviceCodeTokenProvider

__all__ = [
    "APP_SCOPE",
    "MAIL_SEND_SCOPE",
    "Grant",
    "client_credentials",
    "device_code",
    "read_grant",
]

#: The scope of application tokens for Graph (the app's granted application permissions).
APP_SCOPE = "https://graph.microsoft.com/.default"
#: The delegated scope for sending (msal adds offline_access itself, for the refresh token).
MAIL_SEND_SCOPE = "https://graph.microsoft.com/Mail.Send"


def client_credentials(
    *, tenant_id: str, client_id: str, client_secret: str, authority: str | None = None, **msal_options: Any
) -> ClientCredentialsTokenProvider:
    """An msal client-credentials provider asking for ``https://graph.microsoft.com/.default``."""
    return ClientCredentialsTokenProvider(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        authority=authority,
        scopes=(APP_SCOPE,),
        app_scope=APP_SCOPE,
        **msal_options,
    )


def device_code(
    *,
    client_id: str,
    tenant_id: str = "organizations",
    cache_path: str | os.PathLike[str] | None = None,
    authority: str | None = None,
    scopes: Sequence[str] = (MAIL_SEND_SCOPE,),
    prompt: Callable[[str], None] | None = None,
    **msal_options: Any,
) -> DeviceCodeTokenProvider:
    """An msal device-code provider asking for ``Mail.Send`` (and ``offline_access``, added by msal)."""
    return DeviceCodeTokenProvider(
        client_id=client_id,
        tenant_id=tenant_id,
        authority=authority,
        scopes=scopes,
        app_scope=APP_SCOPE,
        prompt=prompt,
        cache_path=cache_path,
        **msal_options,
    )


class Grant:
    """What an access token allows, read from its claims (never verified: Graph does that).

    Attributes:
        kind: ``"application"`` (a ``roles`` claim), ``"delegated"`` (``scp``) or ``"unknown"`` (the token
            is not a JWT, or has neither claim).
        permissions: The permission names, such as ``"Mail.Send"``.
        who: The signed-in user (``upn``/``preferred_username``) or the application's id, when present.
    """

    __slots__ = ("kind", "permissions", "who")

    def __init__(self, kind: str, permissions: frozenset[str], who: str | None) -> None:
        self.kind = kind
        self.permissions = permissions
        self.who = who

    def __repr__(self) -> str:
        return f"<Grant {self.kind} {sorted(self.permissions)} who={self.who!r}>"


def _claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def read_grant(token: str) -> Grant:
    """The kind and permissions of ``token``, from its JWT claims (``roles`` or ``scp``)."""
    claims = _claims(token)
    if claims is None:
        return Grant("unknown", frozenset(), None)
    roles = claims.get("roles")
    if isinstance(roles, list):
        return Grant("application", frozenset(str(r) for r in roles), _text(claims.get("appid")))
    scopes = claims.get("scp")
    if isinstance(scopes, str):
        who = _text(claims.get("upn")) or _text(claims.get("preferred_username"))
        return Grant("delegated", frozenset(scopes.split()), who)
    return Grant("unknown", frozenset(), None)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
