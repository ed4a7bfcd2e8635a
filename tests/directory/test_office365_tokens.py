"""An Office 365 device-code channel in the directory: the msal token cache is stored encrypted and written
back after the tokens change, so another process sends without the user signing in again; a stored
channel never prompts (a lost grant means its owner must reconnect). Real parts: the local Entra ID
token endpoints (tests/smtp/entra.py) and the Office 365 SMTP double, both over TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sendchannel import ChannelDirectory, Message, Office365Channel
from tests.directory.stored import sqlite_file_bytes, stored_overrides
from tests.smtp.entra import EntraDouble
from tests.smtp.servers import Certificates, Office365Double

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ALICE = "alice@contoso.com"


@pytest.fixture
def ca_file(certificates: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test authority, trusted by the SMTP channel (SSL_CERT_FILE) and by msal's requests session."""
    path = certificates.write_ca(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return path


@pytest.fixture
def entra(certificates: Certificates) -> Iterator[EntraDouble]:
    double = EntraDouble(certificates, client_id=CLIENT_ID, client_secret="unused", user=ALICE)
    with double.running():
        yield double


@pytest.fixture
async def office(certificates: Certificates) -> AsyncIterator[Office365Double]:
    # Every access token the Entra double will issue is accepted for alice's mailbox.
    tokens = {f"user-token-{n}": ALICE for n in range(1, 40)}
    async with Office365Double(certificates=certificates, tokens=tokens) as double:
        yield double


async def _stored(database: str, key: str) -> dict[str, Any]:
    provider: dict[str, Any] = (await stored_overrides(database, key))["token_provider"]
    return provider["$msal_device_code"]


async def test_the_msal_token_cache_is_stored_and_used_by_another_process(
    sqlite_url: str, secret_key: str, ca_file: str, entra: EntraDouble, office: Office365Double
) -> None:
    prompts: list[str] = []
    provider = Office365Channel.token_from_device_code(
        client_id=CLIENT_ID, tenant_id="contoso.onmicrosoft.com", authority=entra.authority,
        prompt=prompts.append, instance_discovery=False, verify=ca_file,
    )  # fmt: skip
    url = f"office365://{ALICE}?host=127.0.0.1&port={office.port}&timeout=5"
    message = Message(ALICE, ["lead@example.org"], subject="Quote", text="Hello")
    async with ChannelDirectory(sqlite_url, secrets=secret_key) as first:
        await first.connect("alice", url, token_provider=provider)  # verify: alice signs in once
        assert 1 == len(prompts)
        stored = await _stored(sqlite_url, secret_key)
        assert "refresh-" in stored["cache"]
        assert (CLIENT_ID, entra.authority) == (stored["client_id"], stored["authority"])

        provider.invalidate()  # the server refused the access token: the next one comes from the refresh
        await first.send(message, owner="alice")
        assert ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"] == entra.grants
        rewritten = await _stored(sqlite_url, secret_key)
        assert rewritten["cache"] != stored["cache"]  # the new tokens were written back

    # Another process: the cache comes from the database, so neither a prompt nor a device flow.
    async with ChannelDirectory(sqlite_url, secrets=secret_key) as second:
        await second.send(message, owner="alice")
    assert 1 == len(prompts)
    assert "urn:ietf:params:oauth:grant-type:device_code" not in entra.grants[1:]
    assert 2 == len(office.messages)
    raw = sqlite_file_bytes(sqlite_url)
    assert b"refresh-" not in raw
    assert b"user-token-" not in raw
