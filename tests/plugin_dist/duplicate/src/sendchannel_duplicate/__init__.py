"""A second plugin that claims the same scheme as sendchannel_example."""

from typing import Any


def from_url(url: Any, **overrides: Any) -> Any:  # pragma: no cover - never loaded
    raise AssertionError("a duplicate scheme must be refused before loading")
