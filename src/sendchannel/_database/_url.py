"""Database URLs: ``sqlite:///path``, ``postgresql://...`` and ``memory://``, parsed once, shown redacted."""

from __future__ import annotations

import math
import os
import urllib.parse
from typing import Literal

import attrs

from sendchannel.errors import ConfigurationError

__all__ = ["DatabaseURL", "parse_database_url"]

Kind = Literal["sqlite", "postgresql", "memory"]

_FORMS = (
    "sqlite:///relative/path.db or sqlite:////absolute/path.db (one host), "
    "postgresql://user:password@host:5432/dbname (a fleet; psycopg 3), or memory:// (one process, for tests)"
)


@attrs.frozen(repr=False)
class DatabaseURL:
    """A parsed database URL.

    Attributes:
        kind: ``"sqlite"``, ``"postgresql"`` or ``"memory"``.
        path: The SQLite file (``":memory:"`` for a private in-memory database), else None.
        dsn: The PostgreSQL connection string as given (it may hold the password: never show it), else None.
        display: The URL with its password replaced by ``***``, for messages and reprs.
        timeout: The longest a call waits for the database (a lock held by another process, a connection),
            in seconds: the URL's ``timeout`` option, 30 by default.
    """

    kind: Kind
    display: str
    path: str | None = None
    dsn: str | None = attrs.field(default=None, repr=False)
    timeout: float = 30.0

    def __repr__(self) -> str:
        return f"DatabaseURL({self.display!r})"

    def __str__(self) -> str:
        return self.display


def _redact(url: str) -> str:
    """``url`` with the password (and any ``password=`` option) replaced by ``***``; never raises."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _secret = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if colon else f"{user}@{hostport}"
        query = urllib.parse.urlencode(
            [
                (name, "***" if name.lower() in {"password", "passfile", "sslpassword"} else value)
                for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*/",
        )
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<a malformed database URL>"


def _timeout(options: dict[str, list[str]], display: str) -> float:
    values = options.pop("timeout", None)
    if not values:
        return 30.0
    try:
        timeout = float(values[-1])
    except ValueError:
        timeout = math.nan
    if not 0 < timeout < math.inf:
        raise ConfigurationError(
            f"The timeout option of {display} must be a positive number of seconds, got {values[-1]!r}"
        )
    return timeout


def parse_database_url(url: str) -> DatabaseURL:
    """Parse a database URL, the way the directory and the outbox take it.

    ``sqlite:///relative.db`` and ``sqlite:////var/lib/app/mail.db`` (as SQLAlchemy writes them: the path
    follows the third slash; ``sqlite:///:memory:`` is a private in-memory database),
    ``postgresql://user:password@host:5432/dbname?sslmode=require`` (``postgres://`` too; every option
    but ``timeout`` goes to libpq), ``memory://``. ``?timeout=SECONDS`` sets how long a call waits for the
    database (default 30).

    Raises:
        ConfigurationError: Anything else; the message shows the URL without its password and the
            forms that work.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"The database must be a URL string ({_FORMS}), got {type(url).__name__}")
    display = _redact(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"{display!r} is not a database URL; write {_FORMS}")
    if scheme == "memory":
        if rest.strip("/"):
            raise ConfigurationError(f"{display!r}: a memory:// database takes no host or path; write memory://")
        return DatabaseURL(kind="memory", display="memory://")
    if scheme == "sqlite":
        location, _, query = rest.partition("?")
        options = urllib.parse.parse_qs(query, keep_blank_values=True)
        timeout = _timeout(options, display)
        if options:
            raise ConfigurationError(
                f"{display!r}: unknown option(s) {', '.join(sorted(options))}; "
                "a sqlite URL takes only timeout"
            )
        if not location.startswith("/") or location == "/":
            raise ConfigurationError(
                f"{display!r} names no file: write sqlite:///relative/path.db or sqlite:////absolute/path.db "
                "(three slashes, then the path)"
            )
        path = urllib.parse.unquote(location[1:])
        if path != ":memory:" and (path.endswith("/") or os.path.isdir(path)):
            raise ConfigurationError(f"{display!r} names a directory; name the database file in it")
        return DatabaseURL(kind="sqlite", display=display, path=path, timeout=timeout)
    if scheme in {"postgresql", "postgres"}:
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigurationError(f"{display!r} is not a valid PostgreSQL URL: {exc}") from None
        options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        timeout = _timeout(options, display)
        query = urllib.parse.urlencode([(k, v) for k, vs in options.items() for v in vs])
        dsn = urllib.parse.urlunsplit(parts._replace(scheme="postgresql", query=query))
        return DatabaseURL(kind="postgresql", display=display, dsn=dsn, timeout=timeout)
    raise ConfigurationError(f"Unknown database URL scheme {scheme!r} in {display!r}; write {_FORMS}")
