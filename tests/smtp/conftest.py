"""Fixtures for the SMTP tests: a certificate authority, servers, channels and messages."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sendchannel import Message
from tests.smtp.servers import Certificates, SmtpServer


@pytest.fixture(scope="session")
def certificates() -> Certificates:
    """A trustme certificate authority and a certificate for 127.0.0.1."""
    return Certificates()


@pytest.fixture
def client_tls(certificates: Certificates) -> ssl.SSLContext:
    """A client SSL context that trusts the test authority."""
    return certificates.client_context()


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """Build a Message from app@example.com to bob@example.net, with fields overridden."""

    def build(**changes: Any) -> Message:
        fields: dict[str, Any] = {
            "sender": "App <app@example.com>",
            "to": ["bob@example.net"],
            "subject": "Your order has shipped",
            "text": "Hello Bob,\n\nyour order is on its way.\n",
        }
        fields.update(changes)
        return Message(**fields)

    return build


@pytest.fixture
async def plain_server() -> AsyncIterator[SmtpServer]:
    """An aiosmtpd server without TLS or AUTH."""
    async with SmtpServer() as server:
        yield server


@pytest.fixture
async def starttls_server(certificates: Certificates) -> AsyncIterator[SmtpServer]:
    """An aiosmtpd server that requires STARTTLS and AUTH PLAIN/LOGIN (bob / the sentinel password)."""
    from tests import sentinels

    async with SmtpServer(
        tls="starttls", certificates=certificates, credentials={"bob": sentinels.PASSWORD}
    ) as server:
        yield server
