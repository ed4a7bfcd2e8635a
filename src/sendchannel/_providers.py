"""One description of each provider, read by the registry, the lazy imports and the command line.

A provider package (``_smtp/``, ``_sparkpost/``, ``_gmail/``, a plugin's package) describes itself once
with :class:`Provider` objects in a module that imports nothing heavy (the package's ``__init__``): the
URL scheme, the channel factory and the public classes (as ``"module:name"`` references, imported only
when used), the extra that installs its dependencies, the keyword that takes its secret and where a URL
carries it, its URL options with their converters, and hints for ``sendchannel verify``.

Built-in providers are found the way plugins are: through the ``sendchannel.channels`` entry-point group
(declared in sendchannel's own ``pyproject.toml``), whose value is either a :class:`Provider` or, for
plugins written before descriptions existed, a bare factory ``factory(url, **overrides) -> Channel``.
Adding a provider therefore touches its own package and one entry-point line.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sendchannel.errors import ConfigurationError, SendError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Hint",
    "Provider",
    "builtin_providers",
    "lazy_exports",
    "load_reference",
    "missing_extra",
]

ENTRY_POINT_GROUP = "sendchannel.channels"
#: The distribution whose entry points are the built-in providers.
_OWN_DISTRIBUTION = "sendchannel"


@attrs.frozen
class Hint:
    """What to do when ``verify`` fails with ``error`` (and, if given, its text contains one of ``words``).

    Args:
        error: The error class the hint is for (subclasses included).
        advice: One or two sentences, in the command line's terms.
        words: Lower-case fragments, one of which the error's message or reply must contain (empty: any).
    """

    error: type[SendError]
    advice: str
    words: tuple[str, ...] = ()

    def applies(self, error: SendError) -> bool:
        """Whether the hint fits ``error``."""
        if not isinstance(error, self.error):
            return False
        said = f"{error} {error.reply or ''}".lower()
        return not self.words or any(word in said for word in self.words)


@attrs.frozen
class Provider:
    """The description of one URL scheme of a provider.

    Args:
        scheme: The URL scheme (``"sparkpost"``).
        factory: ``"module:function"`` of ``factory(url, **overrides) -> Channel``, imported on first use.
        title: The provider's name as users know it (``"SparkPost"``).
        extra: The ``pip install "sendchannel[extra]"`` that brings its dependencies (None: none needed).
        exports: Public names (re-exported by ``sendchannel``) and their ``"module:name"`` references.
        credential_keyword: The channel keyword that takes the secret (``"password"``, ``"api_key"``),
            or None.
        key_in_user: Whether a URL carries the secret as its user part (``sparkpost://KEY@us``, redacted
            whole) rather than as the password (``user:SECRET@host``).
        credential_required: Whether a URL without the secret still needs one (the command line then
            asks), rather than only when it names a user.
        options: The URL's query options and the converter of each (a ValueError says what is wrong).
        hints: Advice for ``sendchannel verify``, the first that applies wins.
        needs_credential: For a scheme where only some URLs need the secret (``msgraph://``: the
            application form), decides it from the parsed URL instead of ``credential_required``.
    """

    scheme: str
    factory: str
    title: str
    extra: str | None = None
    exports: Mapping[str, str] = attrs.field(factory=dict)
    credential_keyword: str | None = None
    key_in_user: bool = False
    credential_required: bool = False
    options: Mapping[str, Callable[[str], Any]] = attrs.field(factory=dict, repr=False)
    hints: tuple[Hint, ...] = attrs.field(default=(), repr=False)
    needs_credential: Callable[[Any], bool] | None = attrs.field(default=None, repr=False)

    def load_factory(self) -> Callable[..., Any]:
        """Import the factory and the classes it builds; a missing optional dependency is a
        ConfigurationError naming the extra."""
        for reference in self.exports.values():
            load_reference(reference, scheme=self.scheme, extra=self.extra)
        factory: Callable[..., Any] = load_reference(self.factory, scheme=self.scheme, extra=self.extra)
        return factory

    def hint(self, error: SendError) -> str | None:
        """The first of this provider's hints that applies to ``error``."""
        return next((h.advice for h in self.hints if h.applies(error)), None)


def missing_extra(what: str, exc: ImportError, extra: str | None) -> str:
    """The sentence for an optional dependency that is not installed."""
    missing = (exc.name or "a module").partition(".")[0]
    return (
        f"{what} needs the optional dependency {missing!r}, which is not installed; install it with: "
        f'pip install "sendchannel[{extra or "all"}]"'
    )


def load_reference(reference: str, *, scheme: str, extra: str | None) -> Any:
    """The object a ``"module:name"`` reference names, imported now."""
    module_name, _, name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").startswith("sendchannel"):
            raise
        raise ConfigurationError(missing_extra(f"The {scheme}:// scheme", exc, extra)) from exc
    value = module
    for part in name.split("."):
        value = getattr(value, part)
    return value


def lazy_exports(module_name: str, *providers: Provider) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a provider package that imports its classes on first use.

    Example: ``__getattr__ = lazy_exports(__name__, SPARKPOST)`` in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        for provider in providers:
            if name in provider.exports:
                value = load_reference(provider.exports[name], scheme=provider.scheme, extra=provider.extra)
                setattr(sys.modules[module_name], name, value)
                return value
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def builtin_providers() -> dict[str, Provider]:
    """The providers sendchannel itself declares, by scheme (from its own entry points)."""
    return dict(_builtin_providers())


@functools.cache
def _builtin_providers() -> dict[str, Provider]:
    found: dict[str, Provider] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist.name if entry_point.dist is not None else None
        if dist is None or dist.lower() != _OWN_DISTRIBUTION:
            continue
        value = entry_point.load()
        if isinstance(value, Provider):
            found[value.scheme] = value
    return found
