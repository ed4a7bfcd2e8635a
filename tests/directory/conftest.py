"""Fixtures for the directory tests: a secret key, a database of each kind, directories closed after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from sendchannel import ChannelDirectory
from tests.directory import scheme

MakeDirectory = Callable[..., Awaitable[ChannelDirectory]]


@pytest.fixture(autouse=True)
def _dirtest_scheme() -> Iterator[None]:
    """``dirtest://`` is registered, and its fake channels start empty."""
    scheme.register()
    scheme.reset()
    yield
    scheme.reset()


@pytest.fixture
def secret_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind: memory://, a SQLite file, a database on the private PostgreSQL."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'directory.db'}"
    url: str = request.getfixturevalue("postgresql_url")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def file_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database that several processes can open: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgresql_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file's URL."""
    return f"sqlite:///{tmp_path / 'directory.db'}"


async def _opened(database: str, secret_key: str) -> AsyncIterator[MakeDirectory]:
    opened: list[ChannelDirectory] = []

    async def make(**options: Any) -> ChannelDirectory:
        options.setdefault("secrets", secret_key)
        directory = ChannelDirectory(options.pop("database", database), **options)
        await directory.__aenter__()
        opened.append(directory)
        return directory

    yield make
    for directory in opened:
        await directory.aclose()


@pytest.fixture
async def make_directory(database_url: str, secret_key: str) -> AsyncIterator[MakeDirectory]:
    """``await make_directory(**options)``: an open ChannelDirectory on ``database_url`` (closed after)."""
    async for make in _opened(database_url, secret_key):
        yield make


@pytest.fixture
async def make_shared_directory(file_database: str, secret_key: str) -> AsyncIterator[MakeDirectory]:
    """The same on ``file_database``: every directory it makes shares the database, as processes do."""
    async for make in _opened(file_database, secret_key):
        yield make

from tests.smtp.fixtures import certificates, starttls_server  # noqa: E402, F401 - fixtures by name
