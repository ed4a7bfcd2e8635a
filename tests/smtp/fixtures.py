"""pytest fixtures for real SMTP servers, for any test directory of the project.

Use them from another directory's ``conftest.py`` by importing them::

    from tests.smtp.fixtures import certificates, client_tls, smtp_servers  # noqa: F401
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests import sentinels
from tests.smtp.servers import Certificates, Office365Double, SmtpServer

__all__ = [
    "certificates",
    "client_tls",
    "office365_double",
    "plain_server",
    "smtp_servers",
    "starttls_server",
]


@pytest.fixture(scope="session")
def certificates() -> Certificates:
    """A trustme certificate authority and a certificate for 127.0.0.1 and localhost."""
    return Certificates()


@pytest.fixture
def client_tls(certificates: Certificates) -> ssl.SSLContext:
    """A client SSL context that trusts the test authority."""
    return certificates.client_context()


@pytest.fixture
async def smtp_servers() -> AsyncIterator[Callable[..., Awaitable[SmtpServer]]]:
    """Start SmtpServers on the test's loop: ``server = await smtp_servers(tls="starttls", ...)``.

    Every server started is stopped after the test.
    """
    started: list[SmtpServer] = []

    async def start(**options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def plain_server() -> AsyncIterator[SmtpServer]:
    """An aiosmtpd server without TLS or AUTH."""
    async with SmtpServer() as server:
        yield server


@pytest.fixture
async def starttls_server(certificates: Certificates) -> AsyncIterator[SmtpServer]:
    """An aiosmtpd server that requires STARTTLS and AUTH PLAIN/LOGIN (``bob`` / the sentinel password)."""
    async with SmtpServer(
        tls="starttls", certificates=certificates, credentials={"bob": sentinels.PASSWORD}
    ) as server:
        yield server


@pytest.fixture
async def office365_double(certificates: Certificates) -> AsyncIterator[Office365Double]:
    """The Office 365 double with alice@contoso.com (the sentinel password, and the sentinel token)."""
    async with Office365Double(
        certificates=certificates,
        mailboxes={"alice@contoso.com": sentinels.PASSWORD},
        tokens={sentinels.TOKEN: "alice@contoso.com"},
    ) as double:
        yield double
