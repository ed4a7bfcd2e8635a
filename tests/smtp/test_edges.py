"""Edges of the Office 365 channel and its Microsoft token providers: options, a missing msal, an authority
msal cannot use, and a device-code request Entra ID refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sendchannel import AuthenticationError, ConfigurationError, Office365Channel
from tests import sentinels
from tests.smtp.entra import EntraDouble
from tests.smtp.test_tokens import ALICE, CLIENT_ID, ca_file, entra

__all__ = ["ca_file", "entra"]


def test_a_single_send_as_address_may_be_given_as_a_string() -> None:
    channel = Office365Channel(ALICE, password=sentinels.PASSWORD, send_as="shared@contoso.com")
    assert (True, True, False) == (
        channel.scope.allows(ALICE),
        channel.scope.allows("Shared <shared@contoso.com>"),
        channel.scope.allows("bob@contoso.com"),
    )


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: Office365Channel.token_from_client_credentials(
            tenant_id="", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET), "tenant_id"),
        (lambda: Office365Channel.token_from_client_credentials(
            tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=""), "client_secret"),
        (lambda: Office365Channel.token_from_device_code(client_id=""), "client_id"),
    ],
    ids=["no-tenant", "no-secret", "device-code-no-client"],
)
def test_token_provider_options_are_checked_when_built(build: object, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{named} must be a non-empty string"):
        build()  # type: ignore[operator]


def test_one_scope_may_be_given_as_a_string() -> None:
    provider = Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
        scopes="https://outlook.office365.com/.default",
    )
    assert ["https://outlook.office365.com/.default"] == provider.scopes
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com" == provider.authority


def test_without_msal_a_token_provider_names_the_extra_to_install() -> None:
    code = (
        "import asyncio, sys; sys.modules['msal'] = None\n"  # as on a machine without the package
        "from sendchannel import Office365Channel\n"
        "provider = Office365Channel.token_from_device_code(client_id='app')\n"
        "try:\n    asyncio.run(provider())\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    expected = 'ConfigurationError The Microsoft token providers need msal; install it with: pip install'
    assert out.stdout.startswith(expected), out.stdout


async def test_an_authority_msal_cannot_use_is_an_authentication_error_naming_it() -> None:
    provider = Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
        authority="http://127.0.0.1:9/not-https",
    )
    named = r"sign-in authority http://127\.0\.0\.1:9/not-https"
    with pytest.raises(AuthenticationError, match=named) as caught:
        await provider()
    assert "check tenant_id and authority" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))


async def test_a_device_code_request_for_an_unknown_app_says_what_entra_said(
    entra: EntraDouble, ca_file: str, tmp_path: Path
) -> None:
    prompts: list[str] = []
    provider = Office365Channel.token_from_device_code(
        client_id="99999999-0000-0000-0000-000000000000", tenant_id="contoso.onmicrosoft.com",
        authority=entra.authority, prompt=prompts.append, cache_path=tmp_path / "cache.json",
        instance_discovery=False, verify=ca_file,
    )
    with pytest.raises(AuthenticationError, match="unauthorized_client: AADSTS700016") as caught:
        await provider()
    assert "registered in this tenant" in str(caught.value)
    assert [] == prompts
