"""Office365Channel against the Office 365 double: logins, Send As, the quota, the connection cap."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from sendchannel import (
    AuthenticationError,
    ConfigurationError,
    Limits,
    Message,
    Office365Channel,
    QuotaExceededError,
    Rate,
    ScopeKind,
    SenderNotAllowedError,
    SmtpChannel,
    ThrottledError,
)
from sendchannel.testing import FakeChannel
from tests import sentinels
from tests.smtp.servers import Certificates, Office365Double

ALICE = "alice@contoso.com"


@pytest.fixture
async def double(certificates: Certificates) -> AsyncIterator[Office365Double]:
    """Alice's mailbox (password and token), with Send As for the help desk, a quota of 5 recipients."""
    async with Office365Double(
        certificates=certificates,
        mailboxes={ALICE: sentinels.PASSWORD},
        tokens={sentinels.TOKEN: ALICE},
        send_as={ALICE: ["helpdesk@contoso.com"]},
        recipient_quota=5,
    ) as server:
        yield server


def _channel(double: Office365Double, client_tls: ssl.SSLContext, **options: object) -> Office365Channel:
    arguments: dict[str, object] = {"password": sentinels.PASSWORD}
    arguments.update(options)
    return Office365Channel(
        ALICE, host="127.0.0.1", port=double.port, tls_context=client_tls, **arguments  # type: ignore[arg-type]
    )


def _old_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


def _message(sender: str = ALICE, recipients: int = 1) -> Message:
    return Message(sender, [f"r{i}@fabrikam.com" for i in range(recipients)], subject="Invoice", text="Hi\n")


def test_office365_declares_its_documented_limits_and_scope() -> None:
    channel = Office365Channel(ALICE, password=sentinels.PASSWORD, send_as=["helpdesk@contoso.com"])
    assert Limits(
        rates=(Rate(30, 60.0), Rate(10_000, 86_400.0, "recipients")),
        max_recipients_per_message=500,
        max_message_bytes=35 * 1024 * 1024,
        max_connections=3,
    ) == channel.limits
    assert ("office365", ScopeKind.PER_ADDRESS, "Office 365") == (
        channel.name, channel.scope.kind, channel.provider_name
    )
    assert (ALICE, "helpdesk@contoso.com") == channel.scope.identities
    assert not channel.scope.shareable
    assert 3 == channel.pool_size
    assert ("smtp.office365.com", 587, "starttls") == (channel.host, channel.port, channel.tls)
    assert [] == sentinels.leaked(repr(channel) + str(channel))


def test_the_default_tls_context_refuses_anything_older_than_tls_1_2() -> None:
    channel = Office365Channel(ALICE, password=sentinels.PASSWORD)
    context = channel._endpoint.tls_context
    assert context is not None
    assert ssl.TLSVersion.TLSv1_2 <= context.minimum_version
    assert ssl.CERT_REQUIRED == context.verify_mode


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"password": "x", "token_provider": lambda: None}, "not both"),
        ({"tls_context": _old_tls_context()}, "TLS 1.2 or later"),
        ({"pool_size": 4}, "more than the 3 concurrent"),
        ({"send_as": ["not an address"]}, "send_as must be an e-mail address"),
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Office365Channel(ALICE, **options)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def test_limits_are_overridable_for_a_tenant() -> None:
    limits = Office365Channel.default_limits.evolve(max_recipients_per_message=1000)
    channel = Office365Channel(ALICE, password="x", limits=limits)
    assert 1000 == channel.limits.max_recipients_per_message


def test_a_fake_like_office365_has_its_scope_kind_and_limits() -> None:
    fake = FakeChannel.like(Office365Channel, ALICE)
    assert (ScopeKind.PER_ADDRESS, Office365Channel.default_limits, "fake-office365") == (
        fake.scope.kind, fake.limits, fake.name
    )


async def test_sends_with_a_password_over_starttls_and_auth_login(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls) as channel:
        result = await channel.send(_message())
    assert [("LOGIN", ALICE, True)] == [(a.mechanism, a.login, a.success) for a in double.auth_attempts]
    assert ALICE == double.messages[0].login
    assert ("r0@fabrikam.com",) == result.accepted
    assert "office365" == result.channel


async def test_sends_with_an_oauth_token(double: Office365Double, client_tls: ssl.SSLContext) -> None:
    async def token() -> str:
        return sentinels.TOKEN

    async with _channel(double, client_tls, password=None, token_provider=token) as channel:
        await channel.send(_message())
    assert [("XOAUTH2", True)] == [(a.mechanism, a.success) for a in double.auth_attempts]


async def test_a_changed_password_names_the_likely_cause(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls, password="old-" + sentinels.PASSWORD) as channel:
        with pytest.raises(AuthenticationError) as caught:
            await channel.verify()
    assert str(caught.value).startswith("Office 365 rejected the password for alice@contoso.com (535 5.7.3")
    assert "use token_provider" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))


async def test_basic_auth_disabled_advises_token_provider(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    double.basic_auth = "disabled"
    async with _channel(double, client_tls) as channel:
        with pytest.raises(AuthenticationError, match="sign in with OAuth through token_provider") as caught:
            await channel.send(_message())
    assert "5.7.139" == caught.value.enhanced_code
    assert 1 == len(double.auth_attempts)


async def test_basic_auth_retired_advises_token_provider(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    double.basic_auth = "retired"
    async with _channel(double, client_tls) as channel:
        with pytest.raises(AuthenticationError, match="no longer accepts Basic auth") as caught:
            await channel.send(_message())
    assert (550, "5.7.30") == (caught.value.code, caught.value.enhanced_code)


async def test_a_declared_send_as_address_the_mailbox_may_use_is_sent(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls, send_as=["helpdesk@contoso.com"]) as channel:
        await channel.send(_message("Help Desk <helpdesk@contoso.com>"))
    assert "helpdesk@contoso.com" == double.messages[0].mail_from


async def test_send_as_refused_by_office365_is_sender_not_allowed(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls, send_as=["ceo@contoso.com"]) as channel:
        with pytest.raises(SenderNotAllowedError) as caught:
            await channel.send(_message("ceo@contoso.com"))
    assert (550, "5.7.60") == (caught.value.code, caught.value.enhanced_code)
    assert "Office 365 does not let alice@contoso.com send as ceo@contoso.com" in str(caught.value)
    assert [] == double.messages


async def test_an_undeclared_sender_is_refused_before_connecting(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls) as channel:
        with pytest.raises(SenderNotAllowedError, match="belong to one mailbox"):
            await channel.send(_message("bob@contoso.com"))
    assert 0 == double.connections


async def test_the_recipient_quota_is_a_quota_error(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls) as channel:
        await channel.send(_message(recipients=4))
        with pytest.raises(QuotaExceededError) as caught:
            await channel.send(_message(recipients=2))
    assert (554, "5.2.0") == (caught.value.code, caught.value.enhanced_code)
    assert "10,000 recipients in the last 24 hours" in str(caught.value)
    assert not caught.value.transient
    assert 1 == len(double.messages)


async def test_three_pooled_connections_stay_under_the_cap(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    double.recipient_quota = 1000
    async with _channel(double, client_tls) as channel:
        await asyncio.gather(*(channel.send(_message()) for _ in range(12)))
    assert (12, 3) == (len(double.messages), double.peak_sessions[ALICE])


async def test_a_fourth_connection_for_the_mailbox_is_throttled(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    """Another process holding three connections to the mailbox makes this one get 432 4.3.2."""
    others = [
        SmtpChannel(
            "127.0.0.1", double.port, username=ALICE, password=sentinels.PASSWORD, tls_context=client_tls
        )
        for _ in range(3)
    ]
    for other in others:
        await other.send(_message())
    async with _channel(double, client_tls) as channel:
        with pytest.raises(ThrottledError) as caught:
            await channel.send(_message())
    for other in others:
        await other.aclose()
    assert (432, "4.3.2") == (caught.value.code, caught.value.enhanced_code)
    assert "3 concurrent connections" in str(caught.value)


async def test_without_credentials_nothing_is_sent_and_the_error_says_what_to_pass(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with _channel(double, client_tls, password=None) as channel:
        with pytest.raises(AuthenticationError, match="neither a password nor a token_provider"):
            await channel.send(_message())
    assert 0 == double.connections


async def test_a_generic_smtp_channel_without_login_gets_office365s_answer(
    double: Office365Double, client_tls: ssl.SSLContext
) -> None:
    async with SmtpChannel("127.0.0.1", double.port, tls_context=client_tls) as channel:
        with pytest.raises(AuthenticationError, match="requires authentication") as caught:
            await channel.send(_message())
    assert "5.7.57" == caught.value.enhanced_code
