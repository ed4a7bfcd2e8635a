"""The API reference (docs/api.md) documents every public name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import sendchannel

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_DIRECTIVE = re.compile(
    r"^\.\. auto(?P<kind>class|function|data|exception|module):: (?P<target>[\w.]+)", re.M
)


def documented() -> set[str]:
    """Every dotted name api.md documents: each autodoc target, and the __all__ of each automodule."""
    text = API_PAGE.read_text(encoding="utf-8")
    names: set[str] = set()
    for match in _DIRECTIVE.finditer(text):
        target = match["target"]
        names.add(target)
        if match["kind"] == "module":
            options = text[match.end() : text.index("```", match.end())]
            if ":no-members:" not in options:
                module = importlib.import_module(target)
                names.update(f"{target}.{name}" for name in getattr(module, "__all__", ()))
    return names


def test_every_top_level_name_is_documented() -> None:
    """Each name of sendchannel.__all__ is documented at the top level or in sendchannel.errors."""
    names = documented()
    missing = [
        name
        for name in sendchannel.__all__
        if f"sendchannel.{name}" not in names
        and f"sendchannel.errors.{name}" not in names
        and not (name == "errors" and "sendchannel.errors" in names)
    ]
    assert [] == missing


@pytest.mark.parametrize(
    "module_name", ["sendchannel.testing", "sendchannel.sync", "sendchannel.contrib.django"]
)
def test_every_name_of_the_public_submodules_is_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert [] == [name for name in module.__all__ if f"{module_name}.{name}" not in documented()]
