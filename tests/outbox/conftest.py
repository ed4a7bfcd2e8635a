"""Fixtures for the outbox tests: a database URL for each store."""

from __future__ import annotations

from pathlib import Path

import pytest

STORES = ["memory", "sqlite"]


@pytest.fixture(params=STORES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty outbox database: memory://, a SQLite file (and PostgreSQL where it is installed)."""
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'outbox.db'}"
