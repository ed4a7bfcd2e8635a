"""Channels by URL: ``channel_from_url("smtp://user:pass@host:587")``, plus plugins by entry point.

A scheme maps to a factory ``factory(url, **overrides) -> Channel`` where ``url`` is the parsed URL (a
:class:`urllib.parse.SplitResult` whose password is percent-decoded). Every scheme, built-in or plugin,
is declared in the ``sendchannel.channels`` entry-point group: built-in ones (and plugins that describe
themselves) by a :class:`~sendchannel._providers.Provider`, older plugins by the factory itself. Nothing
is imported until its scheme is used. ``register_channel`` adds a scheme at run time; a scheme that is
declared already (built-in ones from the start, before their module is loaded) cannot be registered again.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from typing import Any

from sendchannel._channel import Channel
from sendchannel._providers import ENTRY_POINT_GROUP, Provider
from sendchannel._urls import misplaced_at, redact_url, split_url
from sendchannel.errors import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "channel_from_url",
    "described",
    "redact_url",  # lives in _urls; re-exported for the modules that import it from here
    "register_channel",
    "schemes",
    "split_url",
]

ChannelFactory = Callable[..., Channel]

_lock = threading.RLock()
_factories: dict[str, tuple[ChannelFactory, str]] = {}


def _source_of(factory: object) -> str:
    module = getattr(factory, "__module__", None) or "?"
    qualname = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}.{qualname}"


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"
    if dist.lower() == "sendchannel":
        return f"{entry_point.value} (built into sendchannel)"
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
        ConfigurationError: The scheme is already registered, built in, or declared by an installed plugin;
            the message names both sources.
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
        declared = _entry_points().get(key)
        if declared is not None and not _source_of(factory).startswith(declared.module):
            raise ConfigurationError(
                f"The URL scheme {key!r} is declared by {_describe(declared)}; {_source_of(factory)} cannot "
                "register it too. Pick another scheme name."
            )
        _factories[key] = (factory, _source_of(factory))


def _unregister(scheme: str) -> None:
    """Forget a scheme registered at run time (for tests)."""
    with _lock:
        _factories.pop(scheme.lower(), None)


def described(scheme: str) -> Provider | None:
    """The description of ``scheme``, if it is declared by one (built-in providers and described plugins).

    Loads the entry point's light description module, not the channel's module.
    """
    entry_point = _entry_points().get(scheme.lower())
    if entry_point is None:
        return None
    value = entry_point.load()
    return value if isinstance(value, Provider) else None


def _load(scheme: str) -> tuple[ChannelFactory, Provider | None] | None:
    with _lock:
        if scheme in _factories:
            return _factories[scheme][0], None
    entry_point = _entry_points().get(scheme)
    if entry_point is None:
        return None
    value = entry_point.load()
    if isinstance(value, Provider):
        return value.load_factory(), value
    with _lock:
        _factories.setdefault(scheme, (value, _describe(entry_point)))
        return _factories[scheme][0], None


def schemes() -> list[str]:
    """The URL schemes that can be used: built-in, registered and installed as plugins, sorted."""
    with _lock:
        names = set(_factories)
    names.update(_entry_points())
    return sorted(names)


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
    loaded = _load(scheme)
    if loaded is None:
        raise ConfigurationError(
            f"Unknown channel URL scheme {scheme!r} in {redact_url(url)}; installed schemes: "
            f"{', '.join(schemes())}. A plugin can add one through the {ENTRY_POINT_GROUP!r} entry point."
        )
    try:
        parts = split_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"{redact_url(url)} is not a valid URL: {exc}") from None
    factory, provider = loaded
    if provider is not None and misplaced_at(parts):
        raise ConfigurationError(
            f"{redact_url(url)} has an @ after its host, so it was not read as meant: if the password (or "
            "API key) contains /, ? or #, percent-encode them (%2F, %3F, %23), as every reserved character "
            "of a password in a URL."
        )
    return factory(parts, **overrides)
