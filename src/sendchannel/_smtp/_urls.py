"""The factories of smtp://, smtps:// and office365:// URLs (described in ``sendchannel._smtp``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from sendchannel._smtp import OFFICE365, SMTP
from sendchannel._smtp._channel import SmtpChannel
from sendchannel._smtp._office365 import Office365Channel
from sendchannel._urls import read_options, redact_url
from sendchannel.errors import ConfigurationError

__all__ = ["office365_from_url", "smtp_from_url", "smtps_from_url"]


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
    options = read_options(url, SMTP.options)
    if implicit:
        options.setdefault("tls", "implicit")
    port = _port(url) or (465 if implicit else 25 if options.get("tls") == "none" else 587)
    if url.username:
        options["username"] = url.username
    if url.password is not None:
        options["password"] = url.password
    options.update(overrides)
    return SmtpChannel(url.hostname, port, **options)


def smtp_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SmtpChannel:
    """``smtp://user:password@host:port`` (STARTTLS unless ``?tls=none``)."""
    return _smtp_factory(url, implicit=False, **overrides)


def smtps_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SmtpChannel:
    """``smtps://user:password@host:port`` (implicit TLS, port 465 by default)."""
    return _smtp_factory(url, implicit=True, **overrides)


def office365_from_url(url: urllib.parse.SplitResult, **overrides: Any) -> Office365Channel:
    """``office365://alice@contoso.com``, ``office365://alice:password@contoso.com``, or with the address
    percent-encoded as the user and the submission host after it."""
    user = url.username or ""
    host = url.hostname or ""
    options = read_options(url, OFFICE365.options)
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
