"""The keyword overrides of a connected channel, stored so that another process can rebuild it.

``channel_from_url(url, **overrides)`` must give the same channel in every process, so the overrides are
kept (encrypted, with the URL) in a JSON form: text, numbers, booleans, None, and lists, tuples and dicts of
them as they are; a ``CredentialScope``; a google-auth authorised-user ``Credentials`` object as its
``to_json()`` (rebuilt as a ``Credentials`` object, whose refreshed tokens are then written back); an
Office 365 device-code token provider as its app, options and msal token cache (rebuilt never to prompt:
a sign-in needed again means its owner must reconnect).
Anything else (an ``SSLContext``, a function, a token provider) cannot be rebuilt elsewhere and is refused
with a ConfigurationError saying what to pass instead.

Values whose secrets change as they are used (a refreshed access token, a rotated refresh token) are
*refreshable*: :func:`fingerprint` reads the fields that change, cheaply, so the directory can notice a
change after each send and store the new state.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel.errors import AuthenticationError, ConfigurationError

__all__ = ["decode", "encode", "fingerprint"]

_GOOGLE_USER = "$google_authorized_user"
_TUPLE = "$tuple"
_DICT = "$dict"
_SCOPE = "$scope"
_MSAL_DEVICE_CODE = "$msal_device_code"


def _is_google_user_credentials(value: object) -> bool:
    cls = type(value)
    return cls.__module__ == "google.oauth2.credentials" and cls.__name__ == "Credentials"


def _is_device_code_provider(value: object) -> bool:
    return type(value).__name__ == "DeviceCodeTokenProvider" and callable(getattr(value, "cache_state", None))


def _encode_value(name: str, value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode_value(name, item) for item in value]}
    if isinstance(value, list):
        return [_encode_value(name, item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {_DICT: {key: _encode_value(name, item) for key, item in value.items()}}
    if isinstance(value, CredentialScope) and type(value) is CredentialScope:
        scope = {"kind": value.kind.value, "identities": list(value.identities), "provider": value.provider}
        return {_SCOPE: scope}
    if _is_device_code_provider(value):
        provider: Any = value
        return {
            _MSAL_DEVICE_CODE: {
                "client_id": provider.client_id,
                "authority": provider.authority,
                "scopes": list(provider.scopes),
                "app_scope": getattr(provider, "app_scope", None),
                "options": _encode_value(name, dict(provider.msal_options)),
                "cache": provider.cache_state(),
            }
        }
    if _is_google_user_credentials(value):
        return {_GOOGLE_USER: json.loads(value.to_json())}  # type: ignore[attr-defined]
    raise ConfigurationError(
        f"The override {name}= is a {type(value).__module__}.{type(value).__qualname__}, which the directory "
        "cannot store: another process must rebuild the channel from the URL and its overrides. Pass it "
        "as text instead (a string, number or list), such as credentials= the grant's JSON "
        "(credentials.to_json()) or a file path; for TLS, trust your authority through the system store or "
        "SSL_CERT_FILE rather than tls_context=."
    )


def encode(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides in a JSON-serialisable form.

    Raises:
        ConfigurationError: An override that cannot be rebuilt in another process.
    """
    return {name: _encode_value(name, value) for name, value in overrides.items()}


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    if isinstance(value, dict):
        if _TUPLE in value:
            return tuple(_decode_value(item) for item in value[_TUPLE])
        if _DICT in value:
            return {key: _decode_value(item) for key, item in value[_DICT].items()}
        if _SCOPE in value:
            scope = value[_SCOPE]
            kind = ScopeKind(scope["kind"])
            if kind is ScopeKind.UNRESTRICTED:
                return CredentialScope.unrestricted(provider=scope["provider"])
            return CredentialScope(kind, tuple(scope["identities"]), provider=scope["provider"])
        if _GOOGLE_USER in value:
            return _google_credentials(value[_GOOGLE_USER])
        if _MSAL_DEVICE_CODE in value:
            return _device_code_provider(value[_MSAL_DEVICE_CODE])
    return value


def _google_credentials(info: dict[str, Any]) -> Any:
    """The grant rebuilt with the constructor: ``from_authorized_user_info`` would reset its token endpoint
    to Google's (a guard against untrusted files; this JSON is our own, encrypted)."""
    import google.oauth2.credentials

    expiry = None
    if info.get("expiry"):
        expiry = datetime.datetime.strptime(info["expiry"].rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S")
    fields = {name: info.get(name) for name in ("refresh_token", "client_id", "client_secret", "scopes")}
    if info.get("token_uri"):
        fields["token_uri"] = info["token_uri"]
    if info.get("universe_domain"):
        fields["universe_domain"] = info["universe_domain"]
    return google.oauth2.credentials.Credentials(info.get("token"), expiry=expiry, **fields)  # type: ignore[no-untyped-call]


def _cannot_prompt(instruction: str) -> None:
    raise AuthenticationError(
        "Microsoft needs the user to sign in again (the stored refresh token expired or was revoked), and "
        "a stored channel cannot ask them; its owner must reconnect it."
    )


def _device_code_provider(state: dict[str, Any]) -> Any:
    """The device-code token provider rebuilt with its stored token cache; it never prompts."""
    from sendchannel._smtp._office365 import DeviceCodeTokenProvider

    options = dict(_decode_value(state["options"]))
    if state.get("app_scope") is not None:  # the providers shared with Graph name their app-only scope
        options["app_scope"] = state["app_scope"]
    return DeviceCodeTokenProvider(
        client_id=state["client_id"],
        authority=state["authority"],
        scopes=tuple(state["scopes"]),
        prompt=_cannot_prompt,
        cache_state=state["cache"],
        **options,
    )


def decode(data: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides rebuilt from :func:`encode`'s form (new objects)."""
    return {name: _decode_value(value) for name, value in data.items()}


def fingerprint(overrides: Mapping[str, Any]) -> tuple[object, ...] | None:
    """What changes when a refreshable override is used (tokens, expiry), or None when nothing can change."""
    marks: list[object] = []
    for name, value in overrides.items():
        if _is_google_user_credentials(value):
            marks.append((name, value.token, value.refresh_token, value.expiry))
        elif _is_device_code_provider(value):
            marks.append((name, value.cache_changed))
    return tuple(marks) if marks else None
