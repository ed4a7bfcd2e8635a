"""Connection failures: before the request was written nothing was sent; after it, the outcome is unknown."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from sendchannel import (
    ConnectionLostError,
    DeliveryUnknownError,
    Message,
    SendError,
    SparkpostChannel,
)
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer


def message() -> Message:
    return Message("app@example.com", ["bob@example.net"], subject="Hi", text="Hello.\n")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full and never accepted from, so new connections hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    yield listener.getsockname()[1]
    for filler in fillers:
        filler.close()
    listener.close()


async def test_a_refused_connection_is_connection_lost(closed_port: int) -> None:
    channel = SparkpostChannel(
        API_KEY, domains=["example.com"], base_url=f"http://127.0.0.1:{closed_port}/api/v1"
    )
    async with channel:
        with pytest.raises(ConnectionLostError, match="nothing was sent"):
            await channel.send(message())


async def test_a_connect_timeout_is_connection_lost(full_backlog: int) -> None:
    channel = SparkpostChannel(
        API_KEY, domains=["example.com"], base_url=f"http://127.0.0.1:{full_backlog}/api/v1", timeout=0.3
    )
    async with channel:
        with pytest.raises(ConnectionLostError) as caught:
            await channel.send(message())

    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)


async def test_a_connection_dropped_after_the_post_leaves_the_outcome_unknown(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(action="drop"))
    sent = message()

    with pytest.raises(DeliveryUnknownError) as caught:
        await channel.send(sent)

    assert 1 == len(server.received)
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    assert sent.message_id in str(caught.value)


async def test_no_answer_within_the_timeout_after_the_post_leaves_the_outcome_unknown(
    server: SparkpostServer,
) -> None:
    server.script(Answer(action="hang"))
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, timeout=0.3)
    async with channel:
        with pytest.raises(DeliveryUnknownError, match=r"did not answer within 0\.3 seconds") as caught:
            await channel.send(message())

    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_verify_over_a_dropped_connection_is_connection_lost(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """A read sends nothing, so a failure while reading is never an unknown delivery."""
    server.script(Answer(action="drop"))

    with pytest.raises(ConnectionLostError):
        await channel.verify()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectError("refused"), ConnectionLostError),
        (httpx.ConnectTimeout("slow"), ConnectionLostError),
        (httpx.PoolTimeout("busy"), ConnectionLostError),
        (httpx.WriteError("broken pipe"), ConnectionLostError),
        (httpx.WriteTimeout("slow"), ConnectionLostError),
        (httpx.ProxyError("proxy"), ConnectionLostError),
        (httpx.LocalProtocolError("bad"), ConnectionLostError),
        (httpx.ReadError("reset"), DeliveryUnknownError),
        (httpx.ReadTimeout("slow"), DeliveryUnknownError),
        (httpx.RemoteProtocolError("gone"), DeliveryUnknownError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
async def test_each_httpx_failure_is_classified_by_whether_the_request_was_written(
    failure: httpx.HTTPError, expected: type[SendError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    channel = SparkpostChannel(API_KEY, domains=["example.com"], transport=httpx.MockTransport(handler))
    async with channel:
        with pytest.raises(expected) as caught:
            await channel.send(message())

    assert expected is type(caught.value)
    assert caught.value.__cause__ is failure
    assert "sparkpost" == caught.value.channel
