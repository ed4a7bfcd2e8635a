"""Channels by URL: ``channel_from_url("smtp://user:pass@host:587")``, plus plugins by entry point.

A scheme maps to a factory ``factory(url, **overrides) -> Channel`` where ``url`` is the parsed URL (a
:class:`urllib.parse.SplitResult` whose password is percent-decoded). Built-in schemes register when
their module is imported; plugins declare an entry point in the ``sendchannel.channels`` group, whose
name is the scheme, loaded only when that scheme is used.
"""

from __future__ import annotations

import importlib.metadata
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from sendchannel._channel import Channel
from sendchannel.errors import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "channel_from_url",
    "redact_url",
    "register_channel",
    "schemes",
    "split_url",
]

ENTRY_POINT_GROUP = "sendchannel.channels"

ChannelFactory = Callable[..., Channel]

#: Built-in schemes, by the module that registers them when imported.
_BUILTIN: dict[str, str] = {
    "memory": "sendchannel.testing._fake",
    "smtp": "sendchannel._smtp",
    "smtps": "sendchannel._smtp",
    "office365": "sendchannel._smtp",
    "gmail": "sendchannel._gmail",
    "sparkpost": "sendchannel._sparkpost",
}

_lock = threading.RLock()
_factories: dict[str, tuple[ChannelFactory, str]] = {}


def _source_of(factory: object) -> str:
    module = getattr(factory, "__module__", None) or "?"
    qualname = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}.{qualname}"


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"
    return f"{entry_point.value} (entry point of {dist})"


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        scheme = entry_point.name.lower()
        if scheme in found and found[scheme].value != entry_point.value:
            raise ConfigurationError(
                f"The URL scheme {scheme!r} is declared by two installed plugins: "
                f"{_describe(found[scheme])} and {_describe(entry_point)}; uninstall one of them."
            )
        found[scheme] = entry_point
    return found


def register_channel(scheme: str, factory: ChannelFactory) -> None:
    """Make ``channel_from_url`` build channels for ``scheme://...`` URLs with ``factory``.

    Args:
        scheme: The URL scheme, such as ``"mailgun"`` (case-insensitive).
        factory: Called as ``factory(url, **overrides)`` with the parsed URL; returns a Channel.

    Raises:
        ConfigurationError: The scheme is already registered or declared by an installed plugin; the
            message names both sources.
    """
    key = scheme.lower()
    if not key or not key.isascii() or not (key[0].isalpha() and all(c.isalnum() or c in "+-." for c in key)):
        raise ConfigurationError(f"{scheme!r} is not a valid URL scheme")
    with _lock:
        if key in _factories:
            raise ConfigurationError(
                f"The URL scheme {key!r} is already registered by {_factories[key][1]}; "
                f"{_source_of(factory)} cannot register it again. Pick another scheme name."
            )
        plugin = _entry_points().get(key)
        if plugin is not None and not _source_of(factory).startswith(plugin.module):
            raise ConfigurationError(
                f"The URL scheme {key!r} is declared by the installed plugin {_describe(plugin)}; "
                f"{_source_of(factory)} cannot register it too. Pick another scheme name."
            )
        _factories[key] = (factory, _source_of(factory))


def _unregister(scheme: str) -> None:
    """Forget a scheme (for tests)."""
    with _lock:
        _factories.pop(scheme.lower(), None)


def _load(scheme: str) -> ChannelFactory | None:
    with _lock:
        if scheme in _factories:
            return _factories[scheme][0]
    module = _BUILTIN.get(scheme)
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"The {scheme}:// scheme needs an optional dependency that is not installed ({exc.name}); "
                f'install it with: pip install "sendchannel[{_EXTRAS.get(scheme, "all")}]"'
            ) from exc
        with _lock:
            if scheme in _factories:
                return _factories[scheme][0]
    entry_point = _entry_points().get(scheme)
    if entry_point is None:
        return None
    factory = entry_point.load()
    with _lock:
        _factories.setdefault(scheme, (factory, _describe(entry_point)))
        return _factories[scheme][0]


_EXTRAS = {"gmail": "gmail", "sparkpost": "sparkpost"}


def schemes() -> list[str]:
    """The URL schemes that can be used: built-in, registered and installed as plugins, sorted."""
    with _lock:
        names = set(_factories)
    names.update(_BUILTIN)
    names.update(_entry_points())
    return sorted(names)


def split_url(url: str) -> urllib.parse.SplitResult:
    """Parse ``url`` for a factory: a SplitResult whose password is percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return parts
    user = urllib.parse.unquote(parts.username or "")
    password = parts.password
    hostport = parts.netloc.rpartition("@")[2]
    netloc = user if password is None else f"{user}:{urllib.parse.unquote(password)}"
    return parts._replace(netloc=f"{netloc}@{hostport}")


def redact_url(url: str | urllib.parse.SplitResult) -> str:
    """``url`` with its password (or a bare key in the user part of key-only URLs) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else url
        if isinstance(url, str) and _misplaced_at(parts):
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
        userinfo = "***" if parts.scheme in _KEY_IN_USER else (f"{user}:***" if colon else user)
        netloc = f"{userinfo}@{hostport}"
    if (netloc, query) == (parts.netloc, parts.query):
        return url if isinstance(url, str) else parts.geturl()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _misplaced_at(parts: urllib.parse.SplitResult) -> bool:
    """Whether an @ sits where no channel URL has one (the path, a query option's name, the fragment).

    It means the userinfo held an unencoded ``/``, ``?`` or ``#`` (a password such as ``pa/ss``), so the
    URL was split in the wrong place and part of the password now looks like a path, option or fragment.
    """
    if "@" in parts.path or "@" in parts.fragment:
        return True
    return any("@" in name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))


_KEY_IN_USER = frozenset({"sparkpost"})
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


def channel_from_url(url: str, **overrides: Any) -> Channel:
    """Build a channel from a URL.

    ``smtp://user:pass@host:587``, ``smtps://user:pass@host`` (implicit TLS),
    ``office365://alice@contoso.com``, ``gmail://alice@example.com?credentials=path``,
    ``sparkpost://KEY@eu?domains=contoso.com``, ``memory://``, or any scheme a plugin adds.

    Args:
        url: The URL; percent-encode reserved characters in the password.
        overrides: Keyword arguments of the scheme's channel, taking precedence over the URL.

    Raises:
        ConfigurationError: An unknown scheme (the message lists the installed ones), a missing optional
            dependency, or options the channel rejects.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{redact_url(str(url))!r} is not a channel URL; write it like smtp://user:password@host:587 "
            f"(known schemes: {', '.join(schemes())})"
        )
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "The channel URL contains a lone surrogate, which is not text (it usually comes from bytes "
            "decoded with errors='surrogateescape'); decode it properly."
        ) from None
    scheme = url.split("://", 1)[0].lower()
    factory = _load(scheme)
    if factory is None:
        raise ConfigurationError(
            f"Unknown channel URL scheme {scheme!r} in {redact_url(url)}; installed schemes: "
            f"{', '.join(schemes())}. A plugin can add one through the {ENTRY_POINT_GROUP!r} entry point."
        )
    try:
        parts = split_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"{redact_url(url)} is not a valid URL: {exc}") from None
    if scheme in _BUILTIN and _misplaced_at(parts):
        raise ConfigurationError(
            f"{redact_url(url)} has an @ after its host, so it was not read as meant: if the password (or "
            "API key) contains /, ? or #, percent-encode them (%2F, %3F, %23), as every reserved character "
            "of a password in a URL."
        )
    return factory(parts, **overrides)
