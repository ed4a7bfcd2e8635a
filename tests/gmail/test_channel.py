"""GmailOAuthChannel's scope, send-as discovery, verify, limits, service accounts and configuration."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

import google.oauth2.credentials
import google.oauth2.service_account
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sendchannel import (
    Channel,
    CredentialScope,
    GmailOAuthChannel,
    Limits,
    Message,
    Rate,
    ScopeKind,
)
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidMessageError,
    SenderNotAllowedError,
)
from sendchannel.testing import FakeChannel
from sendchannel.testing.conformance import ChannelContract
from tests import sentinels
from tests.gmail.conftest import ADDRESS, user_credentials
from tests.gmail.server import (
    CLIENT_SECRET,
    GMAIL_READONLY,
    GMAIL_SEND,
    GMAIL_SETTINGS_BASIC,
    REFRESH_TOKEN,
    GmailServer,
)

# -- declared scope and limits --------------------------------------------------------------------


def test_the_class_declares_name_scope_kind_provider_and_documented_limits() -> None:
    assert ("gmail", ScopeKind.PER_ADDRESS, "Gmail") == (
        GmailOAuthChannel.name,
        GmailOAuthChannel.scope_kind,
        GmailOAuthChannel.provider_name,
    )
    assert (
        Limits(
            rates=(Rate(2000, 86400), Rate(10_000, 86400, "recipients"), Rate(60, 60)),
            max_recipients_per_message=100,
            max_message_bytes=35 * 1024 * 1024,
        )
        == GmailOAuthChannel.default_limits
    )


def test_consumer_accounts_get_about_500_messages_a_day(gmail_server: GmailServer) -> None:
    channel = GmailOAuthChannel(user_credentials(gmail_server), address=ADDRESS, workspace=False)
    assert (Rate(500, 86400), Rate(60, 60)) == channel.limits.rates
    assert 100 == channel.limits.max_recipients_per_message


def test_limits_can_be_overridden(gmail_server: GmailServer) -> None:
    mine = Limits(rates=(Rate.per_day(100),), max_recipients_per_message=10)
    assert mine == GmailOAuthChannel(user_credentials(gmail_server), address=ADDRESS, limits=mine).limits


def test_the_scope_is_the_account_and_its_declared_aliases_and_not_shareable(
    gmail_server: GmailServer,
) -> None:
    channel = GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, send_as=["sales@example.com"]
    )
    assert CredentialScope.per_address(ADDRESS, "sales@example.com") == channel.scope
    assert (False, "Gmail") == (channel.scope.shareable, channel.scope.provider)


def test_a_single_send_as_address_may_be_a_string(gmail_server: GmailServer) -> None:
    channel = GmailOAuthChannel(user_credentials(gmail_server), address=ADDRESS, send_as="sales@example.com")
    assert (ADDRESS, "sales@example.com") == channel.scope.identities


def test_a_fake_like_the_gmail_channel_has_its_scope_kind_and_limits() -> None:
    fake = FakeChannel.like(GmailOAuthChannel, identity=ADDRESS)
    assert (ScopeKind.PER_ADDRESS, GmailOAuthChannel.default_limits) == (fake.scope.kind, fake.limits)


async def test_a_sender_outside_the_scope_is_refused_before_any_request(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    with pytest.raises(SenderNotAllowedError, match="Gmail credentials belong to one mailbox"):
        await channel.send(Message("bob@example.com", ["carol@example.net"], text="hi"))
    assert [] == gmail_server.requests


async def test_more_than_100_recipients_are_refused_before_any_request(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    with pytest.raises(InvalidMessageError, match="at most 100"):
        await channel.send(Message(ADDRESS, [f"r{i}@example.net" for i in range(101)], text="hi"))
    assert [] == gmail_server.requests


async def test_a_message_too_large_with_its_bcc_header_is_refused_before_any_request(
    gmail_server: GmailServer,
) -> None:
    plain = Message(ADDRESS, ["bob@example.net"], text="x" * 500)
    message = plain.evolve(bcc=[f"hidden{i}@example.org" for i in range(20)])
    limit = len(message.as_bytes()) + 10  # the copy without Bcc fits; the one Gmail needs does not
    channel = GmailOAuthChannel(
        user_credentials(gmail_server),
        address=ADDRESS,
        api_endpoint=gmail_server.url,
        limits=Limits(max_message_bytes=limit),
    )
    async with channel:
        with pytest.raises(InvalidMessageError, match="with its Bcc header"):
            await channel.send(message)
    assert [] == gmail_server.requests


# -- send-as aliases -----------------------------------------------------------------------------


async def test_discover_send_as_adds_the_verified_aliases_only(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.granted_scopes = [GMAIL_SEND, GMAIL_SETTINGS_BASIC]
    gmail_server.send_as.extend(
        [
            {"sendAsEmail": "sales@example.com", "isPrimary": False, "verificationStatus": "accepted"},
            {"sendAsEmail": "pending@example.org", "isPrimary": False, "verificationStatus": "pending"},
            {"isPrimary": False, "verificationStatus": "accepted"},  # no address: ignored
        ]
    )
    found = await channel.discover_send_as()
    assert (ADDRESS, "sales@example.com") == found
    assert (True, False) == (
        channel.scope.allows("Sales <sales@example.com>"),
        channel.scope.allows("pending@example.org"),
    )
    assert ["/gmail/v1/users/me/settings/sendAs"] == [r.path for r in gmail_server.api_requests()]
    await channel.send(Message("sales@example.com", ["bob@example.net"], text="from the alias"))
    assert ["sales@example.com"] == [a.addr_spec for a in gmail_server.sent[0].message["From"].addresses]


async def test_discover_send_as_with_only_the_send_scope_names_the_scope_it_needs(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    with pytest.raises(AuthenticationError, match=r"gmail\.settings\.basic") as caught:
        await channel.discover_send_as()
    assert (403, "insufficientPermissions") == (caught.value.code, caught.value.enhanced_code)
    assert CredentialScope.per_address(ADDRESS) == channel.scope


# -- verify --------------------------------------------------------------------------------------


async def test_verify_refreshes_the_token_and_reads_the_profile(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.granted_scopes = [GMAIL_SEND, GMAIL_READONLY]
    await channel.verify()
    await channel.verify()
    assert ["/token", "/gmail/v1/users/me/profile", "/token", "/gmail/v1/users/me/profile"] == [
        r.path for r in gmail_server.requests
    ]
    assert [] == gmail_server.sent


async def test_verify_accepts_a_grant_limited_to_sending(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """users.getProfile needs more than gmail.send; Google's 403 for that still proves the token works."""
    await channel.verify()
    assert ["/token", "/gmail/v1/users/me/profile"] == [r.path for r in gmail_server.requests]


async def test_verify_fails_for_a_revoked_grant(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    await channel.send(Message(ADDRESS, ["bob@example.net"], text="hi"))
    gmail_server.revoke()
    with pytest.raises(AuthenticationError, match="must connect their Gmail account again"):
        await channel.verify()


async def test_verify_fails_when_the_grant_does_not_include_sending(gmail_server: GmailServer) -> None:
    gmail_server.granted_scopes = [GMAIL_READONLY]  # the user unticked "send" on the consent screen
    async with GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, api_endpoint=gmail_server.url
    ) as channel:
        with pytest.raises(
            AuthenticationError, match=re.escape("grant https://www.googleapis.com/auth/gmail.send")
        ):
            await channel.verify()


# -- service accounts (domain-wide delegation) --------------------------------------------------


def _service_account_info(server: GmailServer) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "mailer@test-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": server.token_uri,
    }


@pytest.fixture(scope="module")
def service_account_key() -> dict[str, Any]:
    with GmailServer() as server:  # only for the shape of the info; token_uri is replaced per test
        return _service_account_info(server)


async def test_a_service_account_acts_for_the_address_with_the_send_scope(
    gmail_server: GmailServer, service_account_key: dict[str, Any]
) -> None:
    info = {**service_account_key, "token_uri": gmail_server.token_uri}
    credentials = google.oauth2.service_account.Credentials.from_service_account_info(info)
    async with GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url) as channel:
        await channel.send(Message(ADDRESS, ["bob@example.net"], text="from a robot"))
    [token_request] = gmail_server.token_requests
    payload = token_request["assertion"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (ADDRESS, GMAIL_SEND) == (claims["sub"], claims["scope"])
    assert 1 == len(gmail_server.sent)


async def test_a_service_account_without_delegation_gets_the_admins_remedy(
    gmail_server: GmailServer, service_account_key: dict[str, Any]
) -> None:
    gmail_server.delegated_subjects = set()
    info = {**service_account_key, "token_uri": gmail_server.token_uri}
    credentials = google.oauth2.service_account.Credentials.from_service_account_info(info)
    async with GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url) as channel:
        with pytest.raises(AuthenticationError, match="domain-wide delegation") as caught:
            await channel.send(Message(ADDRESS, ["bob@example.net"], text="from a robot"))
    assert "unauthorized_client" == caught.value.enhanced_code
    assert service_account_key["private_key"] not in str(caught.value)


def test_a_service_account_acting_for_someone_else_is_a_configuration_error(
    gmail_server: GmailServer, service_account_key: dict[str, Any]
) -> None:
    credentials = google.oauth2.service_account.Credentials.from_service_account_info(
        service_account_key, subject="bob@example.com"
    )
    with pytest.raises(ConfigurationError, match=re.escape("subject='alice@example.com'")):
        GmailOAuthChannel(credentials, address=ADDRESS)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"credentials": "token-string"}, "must be google-auth Credentials"),
        ({"address": "not an address"}, "address"),
        ({"api_endpoint": "ftp://example.com/"}, "api_endpoint must be an http"),
        ({"timeout": 0}, "timeout must be a positive, finite number"),
        ({"timeout": float("inf")}, "timeout must be a positive, finite number"),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number"),
        ({"limits": {"max_recipients_per_message": 5}}, "limits must be a Limits object"),
    ],
)
def test_bad_options_are_configuration_errors(
    gmail_server: GmailServer, arguments: dict[str, Any], complaint: str
) -> None:
    options: dict[str, Any] = {"credentials": user_credentials(gmail_server), "address": ADDRESS, **arguments}
    credentials = options.pop("credentials")
    with pytest.raises(ConfigurationError, match=complaint):
        GmailOAuthChannel(credentials, **options)


def test_credentials_granted_without_any_sending_scope_are_refused_at_once(gmail_server: GmailServer) -> None:
    credentials = user_credentials(gmail_server, scopes=[GMAIL_READONLY])
    with pytest.raises(ConfigurationError, match="none of which allows sending"):
        GmailOAuthChannel(credentials, address=ADDRESS)


def test_the_repr_names_the_account_and_hides_the_credentials(gmail_server: GmailServer) -> None:
    credentials = user_credentials(gmail_server, token=sentinels.TOKEN)
    channel = GmailOAuthChannel(credentials, address=ADDRESS)
    text = repr(channel) + str(channel)
    assert ADDRESS in text
    for secret in (sentinels.TOKEN, REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in text


async def test_a_closed_channel_cannot_send(channel: GmailOAuthChannel, gmail_server: GmailServer) -> None:
    await channel.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(Message(ADDRESS, ["bob@example.net"], text="hi"))
    assert [] == gmail_server.requests


# -- the conformance kit --------------------------------------------------------------------------


class TestGmailChannelConforms(ChannelContract):
    sender = ADDRESS
    recipient = "bob@example.net"
    outside_sender = "mallory@example.org"

    @pytest.fixture(autouse=True)
    def _server(self, gmail_server: GmailServer) -> None:
        self.server = gmail_server

    def make_channel(self) -> Channel:
        credentials = google.oauth2.credentials.Credentials(
            None,
            refresh_token=REFRESH_TOKEN,
            client_id="1234-test.apps.googleusercontent.com",
            client_secret=CLIENT_SECRET,
            token_uri=self.server.token_uri,
            scopes=[GMAIL_SEND],
        )
        return GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=self.server.url)

    def delivered(self, channel: Channel) -> Sequence[Any]:
        return self.server.sent

    def secrets(self) -> Sequence[str]:
        return (REFRESH_TOKEN, CLIENT_SECRET)
