"""An HTTP answer, read safely: JSON that is not JSON, an HTML error page, a Retry-After in any form."""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["HttpAnswer", "parse_retry_after"]

_TAG = re.compile(r"<[^>]*>")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, in seconds or as an HTTP date; None if absent or
    unreadable (NaN, infinity, 400 digits, a date that is not one). A date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - now)


@attrs.frozen
class HttpAnswer:
    """What the server answered: status, reason phrase, headers (looked up case-insensitively: give
    lower-case names when building one) and the body.

    The body stays out of the repr: it can echo what was sent.
    """

    status: int
    reason: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    url: str = attrs.field(repr=False, default="")

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or nested too deep to read)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None

    @property
    def is_page(self) -> bool:
        """Whether the body is markup (a proxy's or a load balancer's error page) rather than data."""
        start = self.body.lstrip()[:1]
        return start not in (b"{", b"[") and b"<" in self.body

    def page_words(self) -> str:
        """The words of an HTML page, without its markup, on one line."""
        return " ".join(_TAG.sub(" ", self.text).split())

    def retry_after(self, now: float) -> float | None:
        """The Retry-After header in seconds (see :func:`parse_retry_after`)."""
        return parse_retry_after(self.headers.get("retry-after"), now)
