"""Keeping secrets and odd characters out of what a provider's answer puts in errors and logs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["Redactor", "one_line"]

#: How much of a provider's words an error message quotes.
REPLY_LIMIT = 300


def one_line(text: str) -> str:
    """``text`` on one line (a line break could forge a log line), blanks collapsed, and encodable (JSON
    can carry a lone surrogate such as ``"\\ud800"``, which no log or terminal can write)."""
    return " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")


class Redactor:
    """Removes a channel's secrets from text that may echo them (a provider's answer, an exception).

    Args:
        secrets: The secrets (an API key, a token); empty ones are ignored. A callable is asked each time,
            for secrets that change (a refreshed access token).
    """

    def __init__(self, secrets: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
        self._source = secrets if callable(secrets) else None
        self._secrets: tuple[str, ...] = () if callable(secrets) else tuple(s for s in secrets if s)

    def add(self, *secrets: str | None) -> None:
        """Remove these too from now on (a token obtained later)."""
        self._secrets += tuple(s for s in secrets if s and s not in self._secrets)

    def _current(self) -> tuple[str, ...]:
        if self._source is None:
            return self._secrets
        return self._secrets + tuple(s for s in self._source() if s)

    def __call__(self, text: str, *, limit: int | None = REPLY_LIMIT) -> str:
        """``text`` without the secrets, on one line, shortened to ``limit`` characters (None: whole)."""
        for secret in sorted(self._current(), key=len, reverse=True):
            text = text.replace(secret, "***")
        text = one_line(text)
        if limit is not None and len(text) > limit:
            text = text[: limit - 3] + "..."
        return text

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._secrets)} secret(s){' and a source' if self._source else ''}>"
