"""Microsoft Entra ID token providers over msal, shared by Office 365's SMTP and Graph channels.

Each provider is an async callable returning an access token (what ``token_provider=`` takes) with an
``invalidate()`` method that a channel calls when the server refused the token, so the next call fetches a
new one. msal is synchronous: it runs in a worker thread, one acquisition at a time. The channels build
these through their ``token_from_client_credentials`` and ``token_from_device_code`` static methods, which
choose the scopes (SMTP AUTH or Microsoft Graph).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sendchannel.errors import AuthenticationError, ConfigurationError, TransientError

__all__ = ["ClientCredentialsTokenProvider", "DeviceCodeTokenProvider"]


def _import_msal() -> Any:
    try:
        import msal
    except ImportError as exc:
        raise ConfigurationError(
            'The Microsoft token providers need msal; install it with: pip install "sendchannel[office365]"'
        ) from exc
    return msal


class _MsalTokenProvider:
    """Shared plumbing: msal runs in a worker thread, one acquisition at a time."""

    def __init__(self, scopes: Sequence[str], authority: str | None, tenant_id: str, app_scope: str) -> None:
        if isinstance(scopes, str):
            scopes = (scopes,)
        self.scopes = list(scopes)
        self.app_scope = app_scope
        self.authority = authority or f"https://login.microsoftonline.com/{tenant_id}"
        self._lock = threading.Lock()
        self._app: Any = None
        self._stale = False

    async def __call__(self) -> str:
        """An access token (from msal's cache while it is valid)."""
        return await asyncio.to_thread(self._acquire_locked)

    def invalidate(self) -> None:
        """Forget the cached token: the server refused it, so the next call fetches a new one."""
        self._stale = True

    def _acquire_locked(self) -> str:
        with self._lock:
            try:
                result = self._acquire()
            except ConfigurationError:  # msal is missing: a ValueError too, but not an authority problem
                raise
            except ValueError as exc:  # msal's word for an authority or tenant it cannot use
                raise AuthenticationError(
                    f"Could not use the sign-in authority {self.authority} "
                    f"({self._redact(str(exc))[:300]}); check tenant_id and authority."
                ) from None
            except OSError as exc:
                raise TransientError(
                    f"Could not reach {self.authority} for a token ({type(exc).__name__}: "
                    f"{self._redact(str(exc))[:300]}); check the network, then try again."
                ) from None
            except Exception as exc:  # requests' errors, without importing requests
                if type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
                    raise TransientError(
                        f"Could not reach {self.authority} for a token ({type(exc).__name__}); "
                        "try again later."
                    ) from None
                raise
            self._stale = False
        token = result.get("access_token") if isinstance(result, Mapping) else None
        if not token:
            error = result.get("error", "unknown_error") if isinstance(result, Mapping) else "no_result"
            description = result.get("error_description", "") if isinstance(result, Mapping) else ""
            raise AuthenticationError(
                f"Microsoft refused the token request ({error}: {self._redact(str(description))}); "
                f"{self._remedy(str(error))}"
            )
        return str(token)

    def _remedy(self, error: str) -> str:
        if error == "invalid_scope":
            return f"check the scopes: app-only tokens use {self.app_scope}."
        return _TOKEN_REMEDIES.get(error, "check the app registration and its permissions.")

    def _acquire(self) -> Mapping[str, Any]:
        raise NotImplementedError

    def _redact(self, text: str) -> str:
        return text


_TOKEN_REMEDIES = {
    "invalid_client": "check the client id and the client secret (it may have expired).",
    "unauthorized_client": "check that the app is registered in this tenant for this flow.",
    "invalid_grant": "the user must sign in again (the refresh token expired or was revoked).",
    "authorization_declined": "the user declined the sign-in.",
    "expired_token": "the user did not finish signing in in time; try again.",
    "interaction_required": "the user must sign in again.",
}


class ClientCredentialsTokenProvider(_MsalTokenProvider):
    """OAuth client-credentials tokens: an app that acts without a user.

    Build it with :meth:`Office365Channel.token_from_client_credentials` (SMTP AUTH) or
    :meth:`Office365GraphChannel.token_from_client_credentials` (Microsoft Graph).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
        app_scope: str,
        authority: str | None = None,
        **msal_options: Any,
    ) -> None:
        required = (("tenant_id", tenant_id), ("client_id", client_id), ("client_secret", client_secret))
        for field, value in required:
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{field} must be a non-empty string")
        super().__init__(scopes, authority, tenant_id, app_scope)
        self.client_id = client_id
        self._client_secret = client_secret
        self._options = msal_options

    def _acquire(self) -> Mapping[str, Any]:
        if self._app is None:
            msal = _import_msal()
            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._client_secret,
                authority=self.authority,
                **self._options,
            )
        if self._stale:
            self._app.remove_tokens_for_client()
        result: Mapping[str, Any] = self._app.acquire_token_for_client(scopes=self.scopes)
        return result

    def _redact(self, text: str) -> str:
        return text.replace(self._client_secret, "***")

    def __repr__(self) -> str:
        return (
            f"<ClientCredentialsTokenProvider client_id={self.client_id!r} "
            f"authority={self.authority!r}>"
        )


class DeviceCodeTokenProvider(_MsalTokenProvider):
    """OAuth device-code tokens: a user signs in once on another device, then the refresh token serves.

    Build it with :meth:`Office365Channel.token_from_device_code` (SMTP AUTH) or
    :meth:`Office365GraphChannel.token_from_device_code` (Microsoft Graph).
    """

    def __init__(
        self,
        *,
        client_id: str,
        scopes: Sequence[str],
        app_scope: str,
        tenant_id: str = "organizations",
        authority: str | None = None,
        prompt: Callable[[str], None] | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        cache_state: str | None = None,
        **msal_options: Any,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        super().__init__(scopes, authority, tenant_id, app_scope)
        self.client_id = client_id
        self.prompt = prompt if prompt is not None else _print_prompt
        self.cache_path = None if cache_path is None else os.fspath(cache_path)
        #: More arguments of msal.PublicClientApplication (a store that rebuilds the provider keeps them).
        self.msal_options = self._options = msal_options
        self._cache: Any = None
        # A token cache kept elsewhere (ChannelDirectory's encrypted store), serialized, to start from.
        self._cache_state = cache_state

    @property
    def cache_changed(self) -> bool:
        """Whether the token cache changed since it was last serialized (a new token, a new refresh token)."""
        return self._cache is not None and bool(self._cache.has_state_changed)

    def cache_state(self) -> str | None:
        """The token cache, serialized (for a store that keeps it elsewhere), or None before the first use."""
        return self._cache_state if self._cache is None else str(self._cache.serialize())

    def _acquire(self) -> Mapping[str, Any]:
        if self._app is None:
            msal = _import_msal()
            self._cache = msal.SerializableTokenCache()
            if self._cache_state is not None:
                self._cache.deserialize(self._cache_state)
            elif self.cache_path is not None and os.path.exists(self.cache_path):
                with open(self.cache_path, encoding="utf-8") as file:
                    self._cache.deserialize(file.read())
            self._app = msal.PublicClientApplication(
                self.client_id, authority=self.authority, token_cache=self._cache, **self._options
            )
        try:
            result = self._silent() or self._device_flow()
        finally:
            self._save()
        return result

    def _silent(self) -> Mapping[str, Any] | None:
        accounts = self._app.get_accounts()
        if not accounts:
            return None
        result: Mapping[str, Any] | None = self._app.acquire_token_silent(
            self.scopes, account=accounts[0], force_refresh=self._stale
        )
        if result and "access_token" in result:
            return result
        return None

    def _device_flow(self) -> Mapping[str, Any]:
        flow = self._app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            return dict(flow)
        self.prompt(str(flow.get("message") or f"Enter the code {flow['user_code']} to sign in."))
        result: Mapping[str, Any] = self._app.acquire_token_by_device_flow(flow)
        return result

    def _save(self) -> None:
        if self.cache_path is None or self._cache is None or not self._cache.has_state_changed:
            return
        folder = os.path.dirname(self.cache_path)
        if folder:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        descriptor = os.open(self.cache_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(self._cache.serialize())
        with contextlib.suppress(OSError):
            os.chmod(self.cache_path, 0o600)

    def __repr__(self) -> str:
        return f"<DeviceCodeTokenProvider client_id={self.client_id!r} authority={self.authority!r}>"


def _print_prompt(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
