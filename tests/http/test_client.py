"""The shared HTTP base: one session per channel, the written/not-written boundary, TLS, timeouts,
safe answers, Retry-After, redaction and the use-after-close guard, against a local aiohttp server."""

from __future__ import annotations

import asyncio
import math
import socket
import ssl

import pytest
import trustme
from aiohttp import web

from sendchannel._http import (
    HttpAnswer,
    HttpClient,
    Redactor,
    check_timeout,
    parse_retry_after,
    tls_failure,
)
from sendchannel.errors import (
    ConfigurationError,
    ConnectionLostError,
    DeliveryUnknownError,
    PermanentError,
)
from tests import sentinels
from tests.http.conftest import Handler, LocalServer


def client(timeout: float = 5.0, **kwargs: object) -> HttpClient:
    return HttpClient(provider="Example", owner="ExampleChannel", timeout=timeout, **kwargs)  # type: ignore[arg-type]


def dropping(server: LocalServer) -> Handler:
    """A handler that reads the request, then closes the connection without answering."""

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await server.release.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    return drop


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_requests_of_one_client_share_one_session_and_connection(server: LocalServer) -> None:
    http = client()
    for _ in range(3):
        answer = await http.request("POST", server.url + "/send", body=b"{}", delivers=True)
        assert 200 == answer.status
    await http.aclose()
    assert 3 == len(server.requests)
    assert 1 == len(server.connections)


async def test_a_refused_connection_is_connection_lost_whatever_the_request() -> None:
    http = client()
    with pytest.raises(ConnectionLostError, match="nothing was sent"):
        await http.request("POST", f"http://127.0.0.1:{closed_port()}/send", body=b"x", delivers=True)
    await http.aclose()


async def test_a_connection_dropped_after_the_request_leaves_a_delivery_unknown(
    server: LocalServer,
) -> None:
    server.handler = dropping(server)
    http = client()
    with pytest.raises(DeliveryUnknownError, match="may or may not have accepted it <m1>") as caught:
        await http.request("POST", server.url + "/send", body=b"{}", delivers=True, reference=" <m1>")
    assert 1 == len(server.requests)
    assert caught.value.__cause__ is not None
    await http.aclose()


async def test_the_same_drop_for_a_read_is_a_lost_connection(server: LocalServer) -> None:
    server.handler = dropping(server)
    http = client()
    with pytest.raises(ConnectionLostError, match="nothing was changed"):
        await http.request("GET", server.url + "/domains")
    await http.aclose()


async def test_no_answer_within_the_timeout_after_the_request_is_an_unknown_outcome(
    server: LocalServer,
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response()

    server.handler = hang
    http = client(timeout=0.3)
    with pytest.raises(DeliveryUnknownError, match=r"did not answer within 0\.3 seconds"):
        await http.request("POST", server.url + "/send", body=b"{}", delivers=True)
    await http.aclose()


async def test_an_untrusted_certificate_is_permanent_and_names_the_remedy(tls_server: LocalServer) -> None:
    http = client()
    with pytest.raises(PermanentError) as caught:
        await http.request("POST", tls_server.url + "/send", body=b"{}", delivers=True)
    text = str(caught.value)
    assert "could not be verified" in text
    assert "tls_context=" in text
    assert not isinstance(caught.value, (ConnectionLostError, DeliveryUnknownError))
    assert [] == tls_server.requests
    await http.aclose()


async def test_tls_context_trusts_a_private_authority(tls_server: LocalServer, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    http = client(tls_context=context)
    answer = await http.request("GET", tls_server.url + "/domains")
    assert 200 == answer.status
    await http.aclose()


def test_tls_errors_that_only_close_the_connection_are_not_certificate_problems() -> None:
    """SSLWantRead/Write, EOF and zero-return mean the network failed; every HTTP provider reads them so."""
    closing = (ssl.SSLWantReadError(), ssl.SSLWantWriteError(), ssl.SSLEOFError(), ssl.SSLZeroReturnError())
    for closed in closing:
        wrapper = OSError("connect failed")
        wrapper.__cause__ = closed
        assert tls_failure(wrapper) is None
    refused = ssl.SSLCertVerificationError("certificate verify failed")
    assert refused is tls_failure(refused)


async def test_a_closed_client_refuses_requests(server: LocalServer) -> None:
    http = client()
    await http.request("GET", server.url + "/")
    await http.aclose()
    with pytest.raises(RuntimeError, match="this ExampleChannel is closed"):
        await http.request("GET", server.url + "/")


async def test_secrets_are_removed_from_failures(server: LocalServer) -> None:
    http = client(redact=Redactor([sentinels.API_KEY]))
    with pytest.raises(ConnectionLostError) as caught:
        await http.request("GET", f"http://127.0.0.1:{closed_port()}/{sentinels.API_KEY}")
    assert sentinels.API_KEY not in str(caught.value)
    await http.aclose()


def test_redactor_keeps_one_shortened_line_without_the_secrets() -> None:
    redact = Redactor([sentinels.API_KEY, ""])
    assert "bad key *** here" == redact(f"bad key {sentinels.API_KEY}\r\nhere")
    assert 300 == len(redact("x" * 1000))
    assert "a ? b" == redact("a \ud800 b")


@pytest.mark.parametrize("timeout", [math.inf, math.nan, 0, -1, True, "5"])
def test_timeouts_must_be_positive_finite_numbers(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        check_timeout(timeout)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Thu, 01 Jan 1970 00:02:00 GMT", 60.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("inf", None),
        ("nan", None),
        ("1" * 400, None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_seconds_or_as_an_http_date(value: str | None, expected: float | None) -> None:
    assert expected == parse_retry_after(value, now=60.0)


def test_answers_are_read_safely() -> None:
    def answer(body: bytes) -> HttpAnswer:
        return HttpAnswer(status=502, reason="Bad Gateway", headers={"retry-after": "7"}, body=body)

    assert {"a": 1} == answer(b'{"a": 1}').json()
    assert answer(b"{not json").json() is None
    assert answer(b"[" * 100_000).json() is None
    assert answer(b"").json() is None
    page = answer(b"<html><body><h1>502</h1><p>Bad gateway</p></body></html>")
    assert page.is_page
    assert "502 Bad gateway" == page.page_words()
    assert not answer(b'{"message": "<b>"}').is_page
    assert 7.0 == page.retry_after(now=0.0)
    assert "body" not in repr(page)


async def test_session_is_made_in_the_running_loop_and_closed_with_the_client(server: LocalServer) -> None:
    http = client()
    await asyncio.gather(*(http.request("GET", server.url + "/") for _ in range(4)))
    await http.aclose()
    await http.aclose()  # closing twice is harmless
    assert http.closed


async def test_an_unreadable_answer_chains_nothing_that_shows_the_request_headers() -> None:
    """aiohttp's ClientResponseError holds the request's headers (Authorization included) in its repr."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    http = client(redact=Redactor([sentinels.API_KEY]))
    try:
        with pytest.raises(DeliveryUnknownError) as caught:
            await http.request(
                "POST", f"http://127.0.0.1:{port}/send", body=b"{}", delivers=True,
                headers={"Authorization": sentinels.API_KEY},
            )
    finally:
        await http.aclose()
        listener.close()
        await listener.wait_closed()
    assert caught.value.__cause__ is None
    assert sentinels.API_KEY not in repr(caught.value) + str(caught.value)
