"""Building Office365GraphChannel: its options, scopes and limits, FakeChannel.like, and msgraph:// URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendchannel import (
    ConfigurationError,
    Limits,
    Office365GraphChannel,
    Rate,
    ScopeKind,
    channel_from_url,
)
from sendchannel._entra import ClientCredentialsTokenProvider, DeviceCodeTokenProvider
from sendchannel._urls import redact_url
from sendchannel.testing import FakeChannel
from tests import sentinels
from tests.graph.conftest import ALICE, Tokens


def test_default_limits_are_exchanges_and_graphs() -> None:
    expected = Limits(
        rates=(Rate(30, 60), Rate(10_000, 86_400, "recipients")),
        max_recipients_per_message=500,
        max_message_bytes=35 * 1024 * 1024,
        max_connections=4,
    )
    assert expected == Office365GraphChannel.default_limits
    assert expected == Office365GraphChannel(ALICE, token_provider=Tokens()).limits


def test_a_delegated_channel_is_per_address_and_not_shareable() -> None:
    channel = Office365GraphChannel(ALICE, token_provider=Tokens(), send_as="sales@contoso.com")
    assert (ScopeKind.PER_ADDRESS, ("alice@contoso.com", "sales@contoso.com")) == (
        channel.scope.kind, channel.scope.identities)
    assert not channel.scope.shareable
    assert channel.delegated
    assert "Office 365 credentials belong to one mailbox" in channel.scope.explain("bob@contoso.com")


def test_an_application_channel_is_per_domain_and_shareable() -> None:
    channel = Office365GraphChannel(domains="contoso.com, fabrikam.com", token_provider=Tokens())
    scope = channel.scope
    assert (ScopeKind.PER_DOMAIN, ("contoso.com", "fabrikam.com")) == (scope.kind, scope.identities)
    assert channel.scope.shareable
    assert not channel.delegated
    assert channel.scope.allows("anyone@fabrikam.com")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "exactly one of address="),
        ({"address": ALICE, "domains": ["contoso.com"]}, "not both"),
        ({"domains": ["contoso.com"], "send_as": ["x@contoso.com"]}, "send_as= is for a delegated channel"),
        ({"address": "not an address"}, "address must be an e-mail address"),
        ({"domains": ["alice@contoso.com"]}, "is an address; give its domain"),
        ({"domains": ["not a domain!"]}, "is not a domain name"),
        ({"address": ALICE, "token_provider": "a token"}, "token_provider must be an async callable"),
        ({"address": ALICE, "base_url": "http://graph.example.com/v1.0"}, "plain http"),
        ({"address": ALICE, "base_url": "ftp://graph.example.com"}, "not an http"),
        ({"address": ALICE, "base_url": "https://graph.microsoft.com/"}, "has no path.*v1.0"),
        ({"address": ALICE, "timeout": 0}, "timeout must be a positive"),
    ],
    ids=["neither", "both", "send-as-with-domains", "bad-address", "address-as-domain", "bad-domain",
         "token-not-callable", "plain-http", "not-http", "no-path", "zero-timeout"],
)
def test_bad_options_are_configuration_errors_that_say_what_to_do(
    kwargs: dict[str, object], says: str
) -> None:
    kwargs.setdefault("token_provider", Tokens())
    with pytest.raises(ConfigurationError, match=says):
        Office365GraphChannel(**kwargs)  # type: ignore[arg-type]


def test_fake_like_takes_the_kind_from_the_identity_mailbox_or_domain() -> None:
    mailbox = FakeChannel.like(Office365GraphChannel, ALICE)
    domain = FakeChannel.like(Office365GraphChannel, "contoso.com")
    default = FakeChannel.like(Office365GraphChannel)
    assert (ScopeKind.PER_ADDRESS, ScopeKind.PER_DOMAIN, ScopeKind.PER_ADDRESS) == (
        mailbox.scope.kind, domain.scope.kind, default.scope.kind)
    assert (False, True) == (mailbox.scope.shareable, domain.scope.shareable)
    assert Office365GraphChannel.default_limits == mailbox.limits == domain.limits
    assert "fake-msgraph" == mailbox.name


def test_repr_shows_the_mode_and_never_the_token() -> None:
    channel = Office365GraphChannel(ALICE, token_provider=Tokens())
    assert repr(channel).startswith("<Office365GraphChannel 'msgraph' delegated alice@contoso.com via https://graph")
    assert [] == sentinels.leaked(repr(channel) + str(channel))


# -- msgraph:// -------------------------------------------------------------------------------------------


def test_a_delegated_url_signs_in_with_a_device_code_and_a_token_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    channel = channel_from_url("msgraph://alice@contoso.com?client_id=APP&tenant_id=contoso.onmicrosoft.com")
    assert isinstance(channel, Office365GraphChannel)
    assert (ALICE, True) == (channel.address, channel.delegated)
    provider = channel._token_provider
    assert isinstance(provider, DeviceCodeTokenProvider)
    assert ("APP", ["https://graph.microsoft.com/Mail.Send"]) == (provider.client_id, provider.scopes)
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com" == provider.authority
    assert str(tmp_path / "sendchannel" / "msgraph-alice@contoso.com-APP.json") == provider.cache_path
    assert not (tmp_path / "sendchannel").exists()  # made when the cache is first written


def test_a_delegated_url_takes_send_as_a_cache_path_and_the_organizations_tenant(tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    channel = channel_from_url(f"msgraph://alice@contoso.com?client_id=APP&send_as=sales@contoso.com&cache_path={cache}")
    assert isinstance(channel, Office365GraphChannel)
    provider = channel._token_provider
    assert isinstance(provider, DeviceCodeTokenProvider)
    organizations = "https://login.microsoftonline.com/organizations"
    assert (str(cache), organizations) == (provider.cache_path, provider.authority)
    assert ("alice@contoso.com", "sales@contoso.com") == channel.scope.identities


def test_an_application_url_uses_client_credentials_for_graph() -> None:
    url = f"msgraph://APP:{sentinels.CLIENT_SECRET}@contoso.onmicrosoft.com?domains=contoso.com,fabrikam.com"
    channel = channel_from_url(url)
    assert isinstance(channel, Office365GraphChannel)
    assert ("contoso.com", "fabrikam.com") == channel.domains
    provider = channel._token_provider
    assert isinstance(provider, ClientCredentialsTokenProvider)
    assert ("APP", ["https://graph.microsoft.com/.default"]) == (provider.client_id, provider.scopes)
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com" == provider.authority
    assert "msgraph://APP:***@contoso.onmicrosoft.com?domains=contoso.com%2Cfabrikam.com" == redact_url(url)
    assert [] == sentinels.leaked(repr(channel) + repr(provider))


def test_an_application_url_takes_the_secret_as_an_override_and_an_authority() -> None:
    channel = channel_from_url(
        "msgraph://APP@tenant?domains=contoso.com&authority=https://login.microsoftonline.us/tenant",
        client_secret=sentinels.CLIENT_SECRET,
    )
    assert isinstance(channel, Office365GraphChannel)
    provider = channel._token_provider
    assert isinstance(provider, ClientCredentialsTokenProvider)
    assert "https://login.microsoftonline.us/tenant" == provider.authority


def test_a_token_provider_override_replaces_the_msal_flows() -> None:
    tokens = Tokens()
    channel = channel_from_url("msgraph://alice@contoso.com", token_provider=tokens)
    assert isinstance(channel, Office365GraphChannel)
    assert tokens is channel._token_provider


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("msgraph://alice@contoso.com", "has no client_id"),
        ("msgraph://APP:secret@tenant", "declares no domains"),
        ("msgraph://APP@tenant?domains=contoso.com", "write the app's client id, secret and tenant"),
        ("msgraph://APP:s@tenant?domains=contoso.com&client_id=x", "belong to a delegated URL"),
        ("msgraph://contoso.com?client_id=APP", "write the mailbox as msgraph://alice@contoso.com"),
        ("msgraph://alice@contoso.com?client_id=APP&colour=blue", "unknown option 'colour'"),
        ("msgraph://alice@contoso.com?client_id=APP&timeout=soon", "must be a number of seconds"),
    ],
    ids=["no-client-id", "secret-without-domains", "no-secret", "mixed-forms", "no-mailbox", "unknown-option",
         "bad-timeout"],
)
def test_bad_urls_say_how_to_write_them(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        channel_from_url(url)
    assert "secret@" not in str(caught.value)


def test_a_client_secret_with_a_delegated_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="a client secret is for an application URL") as caught:
        channel_from_url("msgraph://alice@contoso.com?client_id=APP", client_secret=sentinels.CLIENT_SECRET)
    assert [] == sentinels.leaked(str(caught.value))


def test_an_override_the_channel_does_not_take_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'colour'"):
        channel_from_url("msgraph://alice@contoso.com", token_provider=Tokens(), colour="blue")


def test_an_application_url_with_a_token_provider_needs_no_secret() -> None:
    channel = channel_from_url("msgraph://APP@tenant?domains=contoso.com", token_provider=Tokens())
    assert isinstance(channel, Office365GraphChannel)
    assert ("contoso.com",) == channel.domains


def test_domains_given_as_an_override_make_an_application_url() -> None:
    channel = channel_from_url(
        "msgraph://APP@tenant", domains=["contoso.com"], client_secret=sentinels.CLIENT_SECRET
    )
    assert isinstance(channel, Office365GraphChannel)
    assert (False, ("contoso.com",)) == (channel.delegated, channel.domains)
