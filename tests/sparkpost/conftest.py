"""Fixtures for the SparkPost channel tests: a local SparkPost server and a channel pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sendchannel import SparkpostChannel
from tests.sparkpost.server import API_KEY, SparkpostServer


@pytest.fixture
def server() -> Iterator[SparkpostServer]:
    """A SparkPost API on 127.0.0.1 whose account has example.com as a verified sending domain."""
    server = SparkpostServer().start()
    yield server
    server.stop()


@pytest.fixture
async def channel(server: SparkpostServer) -> AsyncIterator[SparkpostChannel]:
    """A channel for example.com that sends to ``server``."""
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, timeout=5.0)
    async with channel:
        yield channel
