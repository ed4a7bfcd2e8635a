"""Fixtures for the Graph tests: the local Graph double, the Entra double, tokens and channels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sendchannel import Office365GraphChannel
from tests import sentinels
from tests.graph.entra import GraphEntraDouble
from tests.graph.server import GraphDouble
from tests.smtp.fixtures import certificates, client_tls  # noqa: F401 - fixtures are found by name
from tests.smtp.servers import Certificates

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ALICE = "alice@contoso.com"
#: The application's token in tests (opaque; the double knows it as the app's).
APP_TOKEN = sentinels.TOKEN + "-app"


@pytest.fixture
def graph() -> Iterator[GraphDouble]:
    """Graph on 127.0.0.1 for the tenant contoso.com; the sentinel token is Alice's, with Mail.Send."""
    with GraphDouble() as double:
        double.grant(sentinels.TOKEN, mailbox=ALICE)
        yield double


@pytest.fixture
def entra(certificates: Certificates) -> Iterator[GraphEntraDouble]:  # noqa: F811
    """Entra ID on 127.0.0.1, issuing Graph-shaped tokens for CLIENT_ID and the sentinel client secret."""
    with GraphEntraDouble(certificates, client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
                          user=ALICE).running() as double:
        yield double


@pytest.fixture
def ca_file(certificates: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """The test authority as a PEM file, trusted by msal's requests session (see tests/smtp/test_tokens)."""
    path = certificates.write_ca(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return path


class Tokens:
    """A token provider for tests: returns its tokens in turn (the last one again), counts invalidations."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens or (sentinels.TOKEN,))
        self.calls = 0
        self.invalidated = 0
        self._index = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.tokens[min(self._index, len(self.tokens) - 1)]

    def invalidate(self) -> None:
        self.invalidated += 1
        self._index += 1

    def __repr__(self) -> str:
        return f"<Tokens {len(self.tokens)}>"


@pytest.fixture
async def alice(graph: GraphDouble) -> AsyncIterator[Office365GraphChannel]:
    """A delegated channel for Alice's mailbox, sending to ``graph`` with the sentinel token."""
    channel = Office365GraphChannel(ALICE, token_provider=Tokens(), base_url=graph.url, timeout=5.0)
    async with channel:
        yield channel


@pytest.fixture
async def app(graph: GraphDouble) -> AsyncIterator[Office365GraphChannel]:
    """An application channel for contoso.com (the sentinel token granted as the app's, with Mail.Send)."""
    graph.grant(APP_TOKEN, permissions=("Mail.Send",))
    channel = Office365GraphChannel(
        domains=["contoso.com"], token_provider=Tokens(APP_TOKEN), base_url=graph.url, timeout=5.0
    )
    async with channel:
        yield channel
