"""Connection failures: before the request was written nothing was sent; after it, the outcome is unknown."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import aiohttp
import pytest

from sendchannel import (
    ConnectionLostError,
    DeliveryUnknownError,
    Message,
    SendError,
    SparkpostChannel,
)
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer

KEY_CONN = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)


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

    assert isinstance(caught.value.__cause__, aiohttp.ConnectionTimeoutError)


async def test_a_connection_dropped_after_the_post_leaves_the_outcome_unknown(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(action="drop"))
    sent = message()

    with pytest.raises(DeliveryUnknownError) as caught:
        await channel.send(sent)

    assert 1 == len(server.received)
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)
    assert sent.message_id in str(caught.value)


async def test_no_answer_within_the_timeout_after_the_post_leaves_the_outcome_unknown(
    server: SparkpostServer,
) -> None:
    server.script(Answer(action="hang"))
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, timeout=0.3)
    async with channel:
        with pytest.raises(DeliveryUnknownError, match=r"did not answer within 0\.3 seconds") as caught:
            await channel.send(message())

    assert isinstance(caught.value.__cause__, aiohttp.SocketTimeoutError)


async def test_verify_over_a_dropped_connection_is_connection_lost(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """A read sends nothing, so a failure while reading is never an unknown delivery (aiohttp repeats a
    GET once on a dropped connection, so both attempts are dropped)."""
    server.script(Answer(action="drop"), times=2)

    with pytest.raises(ConnectionLostError):
        await channel.verify()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (aiohttp.ClientConnectorError(KEY_CONN, OSError(111, "refused")), ConnectionLostError),
        (aiohttp.ConnectionTimeoutError("slow"), ConnectionLostError),
        (aiohttp.ClientOSError(32, "Can not write request body for http://x"), ConnectionLostError),
        (
            aiohttp.ClientConnectionError("Failed to send bytes into the underlying connection"),
            ConnectionLostError,
        ),
        (aiohttp.ClientConnectionResetError("reset"), DeliveryUnknownError),
        (aiohttp.SocketTimeoutError("slow"), DeliveryUnknownError),
        (aiohttp.ServerDisconnectedError(), DeliveryUnknownError),
        (aiohttp.ClientPayloadError("truncated"), DeliveryUnknownError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_each_aiohttp_failure_of_a_transmission_is_classified_by_whether_it_was_written(
    failure: Exception, expected: type[SendError]
) -> None:
    """The boundary of the shared base (HttpClient) reads aiohttp's failures for a delivering request."""
    channel = SparkpostChannel(API_KEY, domains=["example.com"])
    error = channel._http._failure(failure, channel.base_url, delivers=True, reference="", advice="")
    assert expected is type(error)
