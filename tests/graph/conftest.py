"""Fixtures for the Graph tests: the local Graph double, the Entra double, tokens and channels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sentinels
from tests.graph.entra import GraphEntraDouble
from tests.graph.server import GraphDouble
from tests.smtp.fixtures import certificates, client_tls  # noqa: F401 - fixtures are found by name
from tests.smtp.servers import Certificates

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ALICE = "alice@contoso.com"


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
