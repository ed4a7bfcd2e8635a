"""Graph's msal token providers, against the local Entra double: scopes, caching, refresh, the cache file,
and what verify() reads from the tokens they return."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sendchannel import AuthenticationError, Office365GraphChannel
from sendchannel._graph._tokens import read_grant
from tests import sentinels
from tests.graph.conftest import ALICE, CLIENT_ID
from tests.graph.entra import GraphEntraDouble, number_of


def _app_provider(entra: GraphEntraDouble, ca_file: str, secret: str = sentinels.CLIENT_SECRET):  # type: ignore[no-untyped-def]
    return Office365GraphChannel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=secret,
        authority=entra.authority, instance_discovery=False, verify=ca_file,
    )


def _device_provider(entra: GraphEntraDouble, ca_file: str, prompts: list[str], cache: Path | None = None):  # type: ignore[no-untyped-def]
    return Office365GraphChannel.token_from_device_code(
        client_id=CLIENT_ID, tenant_id="contoso.onmicrosoft.com", cache_path=cache, authority=entra.authority,
        prompt=prompts.append, instance_discovery=False, verify=ca_file,
    )


def test_client_credentials_ask_for_graphs_default_scope() -> None:
    provider = Office365GraphChannel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET
    )
    assert ["https://graph.microsoft.com/.default"] == provider.scopes
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com" == provider.authority
    assert [] == sentinels.leaked(repr(provider))


def test_device_code_asks_for_mail_send_in_the_organizations_tenant_by_default() -> None:
    """msal adds offline_access (and refuses it in the list), so Mail.Send is the one scope named."""
    provider = Office365GraphChannel.token_from_device_code(client_id=CLIENT_ID)
    assert ["https://graph.microsoft.com/Mail.Send"] == provider.scopes
    assert "https://login.microsoftonline.com/organizations" == provider.authority
    assert provider.cache_path is None


async def test_client_credentials_token_is_an_application_grant_cached_until_invalidated(
    entra: GraphEntraDouble, ca_file: str
) -> None:
    provider = _app_provider(entra, ca_file)
    first = await provider()
    again = await provider()
    provider.invalidate()
    fresh = await provider()
    assert ["app-token-1", "app-token-1", "app-token-2"] == [number_of(t) for t in (first, again, fresh)]
    assert ["client_credentials", "client_credentials"] == entra.grants
    grant = read_grant(fresh)
    assert ("application", frozenset({"Mail.Send"})) == (grant.kind, grant.permissions)


async def test_a_wrong_client_secret_names_the_remedy_and_not_the_secret(
    entra: GraphEntraDouble, ca_file: str
) -> None:
    provider = _app_provider(entra, ca_file, secret="wrong-" + sentinels.CLIENT_SECRET)
    with pytest.raises(AuthenticationError, match="invalid_client") as caught:
        await provider()
    assert "client secret (it may have expired)" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))


async def test_device_code_prompts_once_then_uses_the_token_cache_file(
    entra: GraphEntraDouble, ca_file: str, tmp_path: Path
) -> None:
    prompts: list[str] = []
    cache = tmp_path / "graph-cache.json"
    provider = _device_provider(entra, ca_file, prompts, cache)
    first = await provider()
    cached = await provider()
    provider.invalidate()
    refreshed = await provider()
    numbers = [number_of(t) for t in (first, cached, refreshed)]
    assert ["user-token-1", "user-token-1", "user-token-3"] == numbers
    assert ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"] == entra.grants
    assert 1 == len(prompts)
    assert 0o600 == stat.S_IMODE(os.stat(cache).st_mode)
    grant = read_grant(refreshed)
    assert ("delegated", frozenset({"Mail.Send"}), ALICE) == (grant.kind, grant.permissions, grant.who)

    later = _device_provider(entra, ca_file, prompts, cache)
    assert refreshed == await later()
    assert 1 == len(prompts)


def test_a_token_that_is_not_a_jwt_has_an_unknown_grant() -> None:
    assert "unknown" == read_grant(sentinels.TOKEN).kind
    assert "unknown" == read_grant("a.b.c").kind


def test_a_jwt_with_neither_roles_nor_scp_has_an_unknown_grant() -> None:
    from tests.graph.server import jwt

    assert "unknown" == read_grant(jwt({"aud": "https://graph.microsoft.com"})).kind
