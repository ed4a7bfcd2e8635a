"""SMTP and Office 365 channels, and their URL schemes.

``smtp://user:password@host:587`` (STARTTLS; ``?tls=none`` for plaintext), ``smtps://user:password@host``
(implicit TLS, port 465 by default) and ``office365://alice@contoso.com`` (or
``office365://alice:password@contoso.com``) are registered when this package is imported. Query
parameters are keyword arguments of the channel: ``timeout``, ``pool_size``, ``local_hostname``,
``recycle_after``, ``max_idle``, ``name``, and for smtp ``tls`` and ``allow_insecure_auth``, for
office365 ``send_as`` (repeated or comma-separated), ``host`` and ``port``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from sendchannel._registry import redact_url, register_channel
from sendchannel._smtp._channel import SmtpChannel
from sendchannel._smtp._office365 import Office365Channel
from sendchannel.errors import ConfigurationError

__all__ = ["Office365Channel", "SmtpChannel"]


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "tls": str,
    "allow_insecure_auth": _boolean,
    "timeout": float,
    "pool_size": int,
    "local_hostname": str,
    "recycle_after": int,
    "max_idle": float,
    "name": str,
    "send_as": _list,
    "host": str,
    "port": int,
}
_SMTP_OPTIONS = ("tls", "allow_insecure_auth", "timeout", "pool_size", "local_hostname", "recycle_after",
                 "max_idle", "name")
_OFFICE365_OPTIONS = ("timeout", "pool_size", "local_hostname", "recycle_after", "max_idle", "name",
                      "send_as", "host", "port")


def _query(url: urllib.parse.SplitResult, allowed: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, values in urllib.parse.parse_qs(url.query, keep_blank_values=True).items():
        if key not in allowed:
            raise ConfigurationError(
                f"{redact_url(url)}: unknown option {key!r}; {url.scheme}:// takes "
                f"{', '.join(sorted(allowed))}"
            )
        try:
            if key == "send_as":
                options[key] = [item for value in values for item in _list(value)]
            else:
                options[key] = _CONVERTERS[key](values[-1])
        except ValueError as exc:
            raise ConfigurationError(f"{redact_url(url)}: option {key!r}: {exc}") from None
    return options


def _port(url: urllib.parse.SplitResult) -> int | None:
    try:
        return url.port
    except ValueError:
        raise ConfigurationError(f"{redact_url(url)}: the port is not a number from 1 to 65535") from None


def _smtp_factory(url: urllib.parse.SplitResult, *, implicit: bool, **overrides: Any) -> SmtpChannel:
    if not url.hostname:
        raise ConfigurationError(
            f"{redact_url(url)} names no host; write {url.scheme}://user:password@smtp.example.com"
        )
    options = _query(url, _SMTP_OPTIONS)
    if implicit:
        options.setdefault("tls", "implicit")
    port = _port(url) or (465 if implicit else 25 if options.get("tls") == "none" else 587)
    if url.username:
        options["username"] = url.username
    if url.password is not None:
        options["password"] = url.password
    options.update(overrides)
    return SmtpChannel(url.hostname, port, **options)


def _smtp_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SmtpChannel:
    """``smtp://user:password@host:port`` (STARTTLS unless ``?tls=none``)."""
    return _smtp_factory(url, implicit=False, **overrides)


def _smtps_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SmtpChannel:
    """``smtps://user:password@host:port`` (implicit TLS, port 465 by default)."""
    return _smtp_factory(url, implicit=True, **overrides)


def _office365_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> Office365Channel:
    """``office365://alice@contoso.com``, ``office365://alice:password@contoso.com``, or with the address
    percent-encoded as the user and the submission host after it."""
    user = url.username or ""
    host = url.hostname or ""
    options = _query(url, _OFFICE365_OPTIONS)
    if "@" in user:
        address = user
        if host:
            options.setdefault("host", host)
        port = _port(url)
        if port is not None:
            options.setdefault("port", port)
    else:
        if not user or not host:
            raise ConfigurationError(
                f"{redact_url(url)} names no mailbox; write office365://alice@contoso.com"
            )
        address = f"{user}@{host}"
    if url.password is not None:
        options["password"] = url.password
    options.update(overrides)
    return Office365Channel(address, **options)


register_channel("smtp", _smtp_from_url)
register_channel("smtps", _smtps_from_url)
register_channel("office365", _office365_from_url)
