"""Every ```python block of every docs/*.md page and of README.md runs as written.

A page's blocks run in order in one fresh namespace, so a block may use what an earlier block of the same
page defined (pages read top to bottom). Each page runs in an empty temporary directory, with the
``memory://`` fakes emptied and the URL schemes it registers forgotten afterwards, and with every
connection refused except to 127.0.0.1: code that would reach a real provider belongs in an
``async def main()`` that the page defines and does not call.
"""

from __future__ import annotations

import re
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sendchannel import _registry
from sendchannel.testing import FakeChannel

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?:python|py|\{code-block\}\s+python|\{code\}\s+python)\s*$")
_MODULE_PREFIX = "docs_example_"
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", None, ""}


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's Python blocks: (line number of the first code line, code)."""
    blocks: list[tuple[int, str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index].strip())
        if match is None:
            index += 1
            continue
        fence = match["fence"]
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = lines[start:end]
        while body and body[0].lstrip().startswith(":"):  # MyST directive options such as :caption:
            body, start = body[1:], start + 1
        blocks.append((start + 1, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


def _refuse_remote(host: Any) -> None:
    if host not in _LOCAL_HOSTS and not str(host).startswith("127."):
        raise OSError(
            f"a documentation example tried to reach {host!r} at import time; put code that reaches a "
            "real provider inside an async def main() that the page does not call"
        )


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_channel: FakeChannel) -> Iterator[None]:
    """An empty working directory, an empty memory:// fake, no network, and the URL registry restored."""
    monkeypatch.chdir(tmp_path)
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_remote(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    def address_host(address: Any) -> Any:
        return address[0] if isinstance(address, tuple) else None

    def connect(self: socket.socket, address: Any) -> None:
        if self.family != socket.AF_UNIX:
            _refuse_remote(address_host(address))
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family != socket.AF_UNIX:
            _refuse_remote(address_host(address))
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield
    # Forget the schemes the page registered (built-in ones, registered on import, stay).
    with _registry._lock:
        for scheme, (_, source) in list(_registry._factories.items()):
            if source.startswith(_MODULE_PREFIX):
                _registry._unregister(scheme)


def run_page(page: Path) -> None:
    """Run the page's Python blocks in order in one module namespace; a failure names the page and line."""
    module = types.ModuleType(_MODULE_PREFIX + re.sub(r"\W", "_", page.stem))
    module.__file__ = str(page)
    sys.modules[module.__name__] = module
    try:
        for line, code in python_blocks(page):
            # Pad with blank lines so tracebacks point at the line in the Markdown file.
            compiled = compile("\n" * (line - 1) + code, str(page), "exec")
            exec(compiled, module.__dict__)  # running the documentation is the point
    finally:
        del sys.modules[module.__name__]


@pytest.mark.usefixtures("sandbox")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_python_example_of_the_page_runs(page: Path) -> None:
    run_page(page)


def test_the_harness_finds_the_python_blocks_and_their_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n```console\n$ not python\n```\n\n"
        "````{code-block} python\n:caption: two\ny = x + 1\n````\n",
        encoding="utf-8",
    )
    assert [(4, "x = 1\n"), (13, "y = x + 1\n")] == python_blocks(page)


@pytest.mark.usefixtures("sandbox")
def test_a_failing_example_fails_the_page_and_names_its_line(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("# Broken\n\n```python\nvalue = 1\n```\n\n```python\nassert value == 2\n```\n")
    with pytest.raises(AssertionError) as info:
        run_page(page)
    assert (str(page), 8) == (info.traceback[-1].path.__str__(), info.traceback[-1].lineno + 1)


@pytest.mark.usefixtures("sandbox")
def test_an_example_that_reaches_a_real_host_fails(tmp_path: Path) -> None:
    page = tmp_path / "network.md"
    page.write_text(
        "# Network\n\n```python\nimport socket\nsocket.create_connection(('example.com', 25))\n```\n"
    )
    with pytest.raises(OSError, match=r"tried to reach 'example\.com'"):
        run_page(page)


def test_every_page_has_a_title() -> None:
    untitled = [
        p.name for p in PAGES if not p.read_text(encoding="utf-8").lstrip().startswith(("# ", "```{include}"))
    ]
    assert [] == untitled
