"""``msgraph://`` URLs: a delegated mailbox, or an application for a tenant's domains.

- ``msgraph://alice@contoso.com?client_id=APP&tenant_id=TENANT``: Alice signs in once with a device code
  (``Mail.Send``); the token cache is kept in ``cache_path`` (default: a file under
  ``$XDG_CACHE_HOME/sendchannel/``, owner-only), so later runs do not ask again.
- ``msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com``: an application with client credentials
  (``https://graph.microsoft.com/.default``), per-domain. The secret may be left out of the URL and passed
  as ``client_secret=``.

Other options: ``send_as`` (delegated), ``authority`` (a national cloud's sign-in authority, used as given),
``base_url``, ``timeout``. ``token_provider=`` passed to ``channel_from_url`` replaces the msal flows.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from sendchannel._graph._channel import Office365GraphChannel
from sendchannel._urls import read_options, redact_url
from sendchannel.errors import ConfigurationError

__all__ = ["from_url", "token_cache_path"]


def token_cache_path(address: str, client_id: str) -> str:
    """Where ``msgraph://`` keeps a delegated mailbox's msal token cache by default."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    safe = re.sub(r"[^A-Za-z0-9@._-]", "_", f"msgraph-{address}-{client_id}")
    return os.path.join(root, "sendchannel", f"{safe}.json")


def from_url(url: urllib.parse.SplitResult, **overrides: Any) -> Office365GraphChannel:
    """Build an :class:`Office365GraphChannel` from a parsed ``msgraph://`` URL (see the module docstring)."""
    from sendchannel._graph import MSGRAPH

    shown = redact_url(url)
    options = read_options(url, MSGRAPH.options)
    user = url.username or ""
    host = url.hostname or ""
    client_secret = overrides.pop("client_secret", None) or url.password
    authority = options.pop("authority", None)
    msal_options: dict[str, Any] = {} if authority is None else {"instance_discovery": False}
    kwargs: dict[str, Any] = {k: options.pop(k) for k in ("base_url", "timeout") if k in options}
    application = "domains" in options or "domains" in overrides or url.password is not None
    if not application and client_secret is not None and "token_provider" not in overrides:
        raise ConfigurationError(
            f"{shown}: a client secret is for an application URL "
            "(msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com); a delegated mailbox signs in "
            "with a device code instead"
        )
    if application:
        if {"send_as", "client_id", "tenant_id", "cache_path"} & set(options):
            raise ConfigurationError(
                f"{shown}: an application URL is msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com; "
                "client_id, tenant_id, cache_path and send_as belong to a delegated URL "
                "(msgraph://alice@contoso.com?client_id=...)"
            )
        kwargs["domains"] = options.pop("domains", None) or overrides.get("domains")
        if not kwargs["domains"]:
            raise ConfigurationError(
                f"{shown} declares no domains; add ?domains=contoso.com (the tenant's domains the app sends "
                "from, comma-separated)"
            )
        if "token_provider" not in overrides:
            if not (user and host and client_secret):
                raise ConfigurationError(
                    f"{shown}: write the app's client id, secret and tenant as "
                    "msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com (percent-encode reserved "
                    "characters of the secret), or pass client_secret= or token_provider="
                )
            kwargs["token_provider"] = Office365GraphChannel.token_from_client_credentials(
                tenant_id=host,
                client_id=user,
                client_secret=client_secret,
                authority=authority,
                **msal_options,
            )
    else:
        if not user or not host:
            raise ConfigurationError(
                f"{shown}: write the mailbox as msgraph://alice@contoso.com?client_id=...&tenant_id=... "
                "(delegated), or msgraph://CLIENT_ID:SECRET@TENANT_ID?domains=contoso.com (application)"
            )
        address = f"{user}@{host}"
        kwargs["address"] = address
        if "send_as" in options:
            kwargs["send_as"] = options.pop("send_as")
        if "token_provider" not in overrides:
            client_id = options.get("client_id")
            if not client_id:
                raise ConfigurationError(
                    f"{shown} has no client_id; add ?client_id=APP_ID (a public client app registration "
                    "with the delegated Mail.Send permission), or pass token_provider="
                )
            cache_path = options.get("cache_path") or token_cache_path(address, client_id)
            kwargs["token_provider"] = Office365GraphChannel.token_from_device_code(
                client_id=client_id,
                tenant_id=options.get("tenant_id") or "organizations",
                cache_path=cache_path,
                authority=authority,
                **msal_options,
            )
    kwargs.update(overrides)
    try:
        return Office365GraphChannel(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None
