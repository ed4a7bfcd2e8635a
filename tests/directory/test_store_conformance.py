"""Every directory store (memory://, SQLite, PostgreSQL) passes the conformance kit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sendchannel._directory._store import DirectoryStore, SqlDirectoryStore
from tests.directory import conformance


@pytest.mark.parametrize("check", conformance.CHECKS, ids=lambda check: check.__name__)
async def test_store_conformance(
    database_url: str, check: Callable[[DirectoryStore], Awaitable[None]],
) -> None:
    store = SqlDirectoryStore(database_url)
    try:
        await check(store)
    finally:
        await store.aclose()
