"""Microsoft token providers over msal, against a local server answering as Entra ID does."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sendchannel import AuthenticationError, Message, Office365Channel, TransientError
from tests import sentinels
from tests.smtp.entra import EntraDouble
from tests.smtp.servers import Certificates, Office365Double

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ALICE = "alice@contoso.com"


@pytest.fixture
def entra(certificates: Certificates) -> Iterator[EntraDouble]:
    with EntraDouble(certificates, client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
                     user=ALICE).running() as double:
        yield double


@pytest.fixture
def ca_file(certificates: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test authority as a PEM file, trusted by msal's requests session.

    requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE win over a session's ``verify``, so they are
    pointed at the file too.
    """
    path = certificates.write_ca(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return path


def _app_provider(entra: EntraDouble, ca_file: str, secret: str = sentinels.CLIENT_SECRET):  # type: ignore[no-untyped-def]
    return Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com",
        client_id=CLIENT_ID,
        client_secret=secret,
        authority=entra.authority,
        instance_discovery=False,
        verify=ca_file,
    )


async def test_client_credentials_token_is_cached_until_invalidated(entra: EntraDouble, ca_file: str) -> None:
    provider = _app_provider(entra, ca_file)
    first = await provider()
    again = await provider()
    provider.invalidate()
    fresh = await provider()
    assert ("app-token-1", "app-token-1", "app-token-2") == (first, again, fresh)
    assert ["client_credentials", "client_credentials"] == entra.grants
    assert [] == sentinels.leaked(repr(provider))


async def test_a_wrong_client_secret_is_an_authentication_error_with_the_remedy(
    entra: EntraDouble, ca_file: str
) -> None:
    provider = _app_provider(entra, ca_file, secret="wrong-" + sentinels.CLIENT_SECRET)
    with pytest.raises(AuthenticationError, match="invalid_client: AADSTS7000215") as caught:
        await provider()
    assert "client secret (it may have expired)" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))


async def test_an_unreachable_authority_is_transient(certificates: Certificates, ca_file: str) -> None:
    with EntraDouble(certificates, client_id=CLIENT_ID, client_secret="x", user=ALICE).running() as gone:
        authority = gone.authority
    provider = Office365Channel.token_from_client_credentials(
        tenant_id="t", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET, authority=authority,
        instance_discovery=False, verify=ca_file,
    )
    with pytest.raises(TransientError, match="try again"):
        await provider()


async def test_office365_channel_refreshes_an_app_token_the_server_refused(
    entra: EntraDouble, ca_file: str, certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    """The double accepts only the second token msal issues: the channel must invalidate and retry."""
    provider = _app_provider(entra, ca_file)
    async with Office365Double(certificates=certificates, tokens={"app-token-2": ALICE}) as double:
        channel = Office365Channel(ALICE, token_provider=provider, host="127.0.0.1", port=double.port,
                                   tls_context=client_tls)
        async with channel:
            await channel.send(Message(ALICE, ["bob@fabrikam.com"], text="hi\n"))
    assert [False, True] == [a.success for a in double.auth_attempts]
    assert ["client_credentials", "client_credentials"] == entra.grants


async def test_device_code_prompts_once_then_uses_the_cache_and_refresh_token(
    entra: EntraDouble, ca_file: str, tmp_path: Path
) -> None:
    prompts: list[str] = []
    cache = tmp_path / "msal-cache.json"
    provider = Office365Channel.token_from_device_code(
        client_id=CLIENT_ID, tenant_id="contoso.onmicrosoft.com", authority=entra.authority,
        prompt=prompts.append, cache_path=cache, instance_discovery=False, verify=ca_file,
    )
    first = await provider()
    cached = await provider()
    provider.invalidate()
    refreshed = await provider()
    assert (first, first) == (cached, "user-token-1")
    assert "user-token-3" == refreshed
    assert ["To sign in, open https://microsoft.com/devicelogin and enter ABCD-EFGH."] == prompts
    assert ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"] == entra.grants
    assert 0o600 == stat.S_IMODE(os.stat(cache).st_mode)

    later = Office365Channel.token_from_device_code(
        client_id=CLIENT_ID, tenant_id="contoso.onmicrosoft.com", authority=entra.authority,
        prompt=prompts.append, cache_path=cache, instance_discovery=False, verify=ca_file,
    )
    assert refreshed == await later()
    assert 1 == len(prompts)


async def test_concurrent_calls_run_one_device_flow(entra: EntraDouble, ca_file: str) -> None:
    prompts: list[str] = []
    provider = Office365Channel.token_from_device_code(
        client_id=CLIENT_ID, tenant_id="contoso.onmicrosoft.com", authority=entra.authority,
        prompt=prompts.append, instance_discovery=False, verify=ca_file,
    )
    tokens = await asyncio.gather(provider(), provider(), provider())
    assert 1 == len(set(tokens))
    assert 1 == len(prompts)
