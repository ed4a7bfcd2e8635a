"""Fixtures for the outbox tests: a database URL for each store."""

from __future__ import annotations

from pathlib import Path

import pytest

STORES = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=STORES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty outbox database: memory://, a SQLite file, a fresh database on the private PostgreSQL."""
    if request.param == "memory":
        return "memory://"
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgresql_url")
        return url
    return f"sqlite:///{tmp_path / 'outbox.db'}"
