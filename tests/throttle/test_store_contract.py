"""Every store passes the StoreContract, as a plugin author's store would."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendchannel import MemoryStore, RedisStore, SqliteStore
from sendchannel._throttle import ThrottleStore
from sendchannel.testing.conformance import StoreContract
from tests.throttle.conftest import RedisServer


class TestMemoryStoreConforms(StoreContract):
    processes = 0  # one process by design

    def make_store(self) -> ThrottleStore:
        # One backend per test, shared by every store object the test makes (as a file or a server is).
        return _MemoryBackend.store


class _MemoryBackend:
    store = MemoryStore()


class TestSqliteStoreConforms(StoreContract):
    path: str

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "contract.db")

    def make_store(self) -> ThrottleStore:
        return SqliteStore(self.path)


class TestRedisStoreConforms(StoreContract):
    keeps_own_time = True
    window = 0.3
    tolerance = 0.03
    url: str

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    def make_store(self) -> ThrottleStore:
        return RedisStore(self.url)
