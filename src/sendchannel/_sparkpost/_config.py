"""SparkPost's configuration: the API key, the sending domains, the API root, and ``sparkpost://`` URLs."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from sendchannel._address import configured_domains
from sendchannel._http import check_base_url
from sendchannel._sparkpost import SPARKPOST
from sendchannel._urls import read_options, redact_url
from sendchannel.errors import ConfigurationError

if TYPE_CHECKING:
    from sendchannel._sparkpost._channel import SparkpostChannel

__all__ = ["EU_API", "US_API", "api_root", "check_key", "domains_of", "from_url"]

#: The API root of SparkPost (US).
US_API = "https://api.sparkpost.com/api/v1"
#: The API root of SparkPost EU (a separate service: its accounts and keys do not work in the US).
EU_API = "https://api.eu.sparkpost.com/api/v1"
_REGIONS = {"us": US_API, "eu": EU_API}

def domains_of(value: object) -> tuple[str, ...]:
    """The sending domains of ``domains=`` (see configured_domains); at least one is required."""
    domains = configured_domains(
        value, covers="a SparkPost key covers every address at a verified sending domain"
    )
    if not domains:
        raise ConfigurationError(
            "SparkpostChannel needs domains=: the verified sending domains the key may send from, "
            "e.g. domains=['example.com']"
        )
    return domains


def api_root(region: str, base_url: str | None) -> str:
    if base_url is None:
        if not isinstance(region, str) or region.lower() not in _REGIONS:
            raise ConfigurationError(
                f"Unknown SparkPost region {region!r}; use region='us' (app.sparkpost.com) or region='eu' "
                "(app.eu.sparkpost.com), or give base_url= for an Enterprise endpoint"
            )
        return _REGIONS[region.lower()]
    return check_base_url(base_url, example=f"{US_API} (including /api/v1)", exposes="the API key")



def check_key(api_key: object) -> str:
    if not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a string, got {type(api_key).__name__}")
    key = api_key.strip()
    if not key:
        raise ConfigurationError(
            "api_key is empty; create an API key under Account > API Keys in the SparkPost app"
        )
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigurationError(
            "api_key contains spaces, line breaks or non-ASCII characters that an API key never has; "
            "check how it is read (a stray newline from a file, or two values pasted together)"
        )
    return key



def from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SparkpostChannel:
    """``sparkpost://KEY@eu?domains=a.com,b.com`` (host us or eu; ``base_url=`` in the query for others).

    The key is the URL's user part as ``split_url`` decoded it (once: ``ab%2525cd`` is the key ``ab%25cd``).
    """
    from sendchannel._sparkpost._channel import SparkpostChannel

    shown = redact_url(url)
    kwargs: dict[str, Any] = read_options(url, SPARKPOST.options)
    key = url.username or url.password
    if key:
        kwargs["api_key"] = key
    host = (url.hostname or "").lower()
    if "region" not in kwargs and host:
        if host not in _REGIONS:
            raise ConfigurationError(
                f"{shown}: the host of a sparkpost:// URL is the region, us or eu, not {host!r}; "
                "for an Enterprise endpoint write sparkpost://KEY@?base_url=https://.../api/v1"
            )
        kwargs["region"] = host
    kwargs.update(overrides)
    if "api_key" not in kwargs:
        raise ConfigurationError(
            f"{shown} has no API key; write it in the user part (sparkpost://KEY@us?domains=example.com) "
            "or pass api_key="
        )
    if "domains" not in kwargs:
        raise ConfigurationError(
            f"{shown} declares no domains; add ?domains=example.com (the verified sending domains, "
            "comma-separated) or pass domains="
        )
    try:
        return SparkpostChannel(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None
