"""The store goes away between taking a permit and what follows the send: the provider's answer still wins.

When the provider throttles, the Throttler pauses the key in the store; when a send never reached the
provider, it gives the permit back. If Redis is gone by then, the caller must still see the provider's own
error (not "cannot reach Redis"), and the store's failure is logged as a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from sendchannel import Limits, Message, Rate, RedisStore, SendResult, Throttler
from sendchannel.errors import ConnectionLostError, QuotaExceededError, SendError, ThrottledError
from sendchannel.testing import FakeChannel
from tests.reliability._load import RestartableRedis
from tests.throttle.helpers import message


class RedisGoesAwayChannel(FakeChannel):
    """Stops Redis while the send is at the provider, then answers with the scripted ``error``."""

    def __init__(self, server: RestartableRedis, error: SendError) -> None:
        super().__init__(limits=Limits(rates=(Rate(10, 60.0),)))
        self.server = server
        self.error = error

    async def _send(self, message: Message) -> SendResult:
        await asyncio.to_thread(self.server.stop)
        raise self.error


@pytest.fixture
def redis_server(tmp_path: Path) -> RestartableRedis:
    server = RestartableRedis(tmp_path, persistent=False)
    server.start()
    return server


@pytest.mark.parametrize(
    ("error", "step"),
    [
        (ThrottledError("the provider asked to slow down", retry_after=30.0), "pause"),
        (QuotaExceededError("the daily quota is spent", resets_at=time.time() + 3600), "pause"),
        (QuotaExceededError("the daily quota is spent", retry_after=600.0), "pause"),
        (ConnectionLostError("the connection was lost before MAIL FROM"), "give back a permit"),
    ],
    ids=["throttled", "quota-resets-at", "quota-retry-after", "not-sent"],
)
async def test_the_providers_error_reaches_the_caller_when_the_store_is_gone_afterwards(
    redis_server: RestartableRedis, error: SendError, step: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_server.url, timeout=1.0)
    throttler = Throttler(RedisGoesAwayChannel(redis_server, error), store=store)
    try:
        with pytest.raises(type(error)) as caught:
            await throttler.send(message())
    finally:
        await store.aclose()
        redis_server.stop()
    assert error is caught.value
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"throttle: could not {step} " in text and "Redis" in text for text in warnings), warnings


async def test_a_store_error_names_the_throttled_channel(redis_server: RestartableRedis) -> None:
    """With Redis gone before the send, the store's error says which channel could not be throttled."""
    store = RedisStore(redis_server.url, timeout=1.0)
    channel = FakeChannel(name="office-mailbox", limits=Limits(rates=(Rate(10, 60.0),)))
    throttler = Throttler(channel, store=store)
    redis_server.stop()
    try:
        with pytest.raises(ConnectionLostError, match="Redis") as caught:
            await throttler.send(message())
    finally:
        await store.aclose()
    assert "office-mailbox" == caught.value.channel
    assert [] == channel.attempts
