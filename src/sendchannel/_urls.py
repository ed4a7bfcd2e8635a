"""Channel URLs: parsing for factories, redaction for messages, and the converters of URL options.

``split_url`` gives a factory the parsed URL with its user and password percent-decoded once;
``redact_url`` shows a URL without its secrets; ``read_options`` turns the query into keyword arguments
with the converters a provider's description declares (see :mod:`sendchannel._providers`).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from sendchannel.errors import ConfigurationError

__all__ = [
    "boolean",
    "comma_list",
    "integer",
    "misplaced_at",
    "read_options",
    "redact_url",
    "seconds",
    "split_url",
    "text",
]


# -- converters of URL options ------------------------------------------------------------------


def boolean(value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def comma_list(value: str) -> list[str]:
    """Items separated by commas (the option may also be repeated), blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def seconds(value: str) -> float:
    """A positive, finite number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"must be a positive, finite number of seconds, got {value!r}")
    return number


def integer(value: str) -> int:
    """A whole number."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def text(value: str) -> str:
    """The value as written."""
    return value


def read_options(
    url: urllib.parse.SplitResult, options: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    """The URL's query as keyword arguments, each value through its converter.

    A repeated option takes its last value, except a :func:`comma_list` one, which takes them all.

    Raises:
        ConfigurationError: An option the scheme does not take, or a value its converter refuses.
    """
    result: dict[str, Any] = {}
    for key, values in urllib.parse.parse_qs(url.query, keep_blank_values=True).items():
        convert = options.get(key)
        if convert is None:
            raise ConfigurationError(
                f"{redact_url(url)}: unknown option {key!r}; {url.scheme}:// takes "
                f"{', '.join(sorted(options))}"
            )
        try:
            result[key] = convert(",".join(values) if convert is comma_list else values[-1])
        except ValueError as exc:
            raise ConfigurationError(f"{redact_url(url)}: option {key!r}: {key} {exc}") from None
    return result


# -- parsing and redaction ----------------------------------------------------------------------


def split_url(url: str) -> urllib.parse.SplitResult:
    """Parse ``url`` for a factory: a SplitResult whose user and password are percent-decoded (once).

    Factories read ``url.username`` and ``url.password`` as they are: decoding them again would turn an
    encoded ``%25`` back into a ``%`` escape (``ab%2525cd`` must give ``ab%25cd``).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return parts
    user = urllib.parse.unquote(parts.username or "")
    password = parts.password
    hostport = parts.netloc.rpartition("@")[2]
    netloc = user if password is None else f"{user}:{urllib.parse.unquote(password)}"
    return parts._replace(netloc=f"{netloc}@{hostport}")


def _key_in_user(scheme: str) -> bool:
    from sendchannel._providers import builtin_providers

    provider = builtin_providers().get(scheme.lower())
    return provider is not None and provider.key_in_user


def redact_url(url: str | urllib.parse.SplitResult) -> str:
    """``url`` with its password (or a bare key in the user part of key-only URLs) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else url
        if isinstance(url, str) and misplaced_at(parts):
            # The userinfo held an unencoded / ? or #, so part of the password sits after the host: show
            # nothing before the last @ that belongs to it.
            start = url.index("://") + 3 if "://" in url else 0
            equals = url.find("=", start)
            end = url.rfind("@", start, len(url) if equals < 0 else equals)
            url = f"{url[:start]}***{url[end:]}" if end >= 0 else f"{url[:start]}***"
            parts = urllib.parse.urlsplit(url)
        netloc, query = parts.netloc, _redact_query(parts.query)
    except ValueError:  # includes text that cannot be encoded (lone surrogates)
        return "<a malformed URL>"
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        # In key-only URLs (sparkpost://KEY@us) the user part is the key, whatever follows it.
        userinfo = "***" if _key_in_user(parts.scheme) else (f"{user}:***" if colon else user)
        netloc = f"{userinfo}@{hostport}"
    if (netloc, query) == (parts.netloc, parts.query):
        return url if isinstance(url, str) else parts.geturl()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def misplaced_at(parts: urllib.parse.SplitResult) -> bool:
    """Whether an @ sits where no channel URL has one (the path, a query option's name, the fragment).

    It means the userinfo held an unencoded ``/``, ``?`` or ``#`` (a password such as ``pa/ss``), so the
    URL was split in the wrong place and part of the password now looks like a path, option or fragment.
    """
    if "@" in parts.path or "@" in parts.fragment:
        return True
    return any("@" in name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))


_SECRET_PARAMS = frozenset({"password", "token", "key", "api_key", "secret", "client_secret"})


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return urllib.parse.urlencode(
        [(k, "***" if _secret_param(k, v) else v) for k, v in pairs], safe="*/"
    )


def _secret_param(name: str, value: str) -> bool:
    # gmail://...?credentials= takes a file path or the grant itself as JSON, with its refresh token.
    return name.lower() in _SECRET_PARAMS or (name.lower() == "credentials" and value.lstrip()[:1] == "{")
