"""smtp://, smtps:// and office365:// URLs."""

from __future__ import annotations

import pytest

from sendchannel import ConfigurationError, Office365Channel, SmtpChannel, channel_from_url, schemes
from tests import sentinels


def test_the_schemes_are_listed() -> None:
    assert {"smtp", "smtps", "office365"} <= set(schemes())


def test_smtp_url_gives_a_starttls_channel_with_a_decoded_password() -> None:
    channel = channel_from_url("smtp://bob%40example.com:p%40ss%3Aw%2Frd@mail.example.com:2525?timeout=5")
    assert isinstance(channel, SmtpChannel)
    assert ("mail.example.com", 2525, "starttls", "bob@example.com", 5.0) == (
        channel.host, channel.port, channel.tls, channel.username, channel.timeout
    )
    assert "p@ss:w/rd" == channel._endpoint.password


def test_smtp_url_defaults() -> None:
    channel = channel_from_url("smtp://mail.example.com")
    plain = channel_from_url("smtp://relay.example.com?tls=none")
    assert isinstance(channel, SmtpChannel)
    assert isinstance(plain, SmtpChannel)
    assert ((587, "starttls"), (25, "none")) == ((channel.port, channel.tls), (plain.port, plain.tls))


def test_smtps_url_uses_implicit_tls_on_465() -> None:
    channel = channel_from_url(f"smtps://bob:{sentinels.PASSWORD}@mail.example.com")
    assert isinstance(channel, SmtpChannel)
    assert (465, "implicit") == (channel.port, channel.tls)
    assert [] == sentinels.leaked(repr(channel) + str(channel))


def test_overrides_win_over_the_url() -> None:
    channel = channel_from_url("smtp://mail.example.com?pool_size=2", pool_size=6, name="relay")
    assert isinstance(channel, SmtpChannel)
    assert (6, "relay") == (channel.pool_size, channel.name)


def test_a_password_over_plaintext_in_a_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError, match="unencrypted") as caught:
        channel_from_url(f"smtp://bob:{sentinels.PASSWORD}@mail.example.com?tls=none")
    assert [] == sentinels.leaked(str(caught.value))
    channel = channel_from_url(
        f"smtp://bob:{sentinels.PASSWORD}@mail.example.com?tls=none&allow_insecure_auth=yes"
    )
    assert isinstance(channel, SmtpChannel)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("smtp://mail.example.com?colour=blue", "unknown option 'colour'"),
        ("smtp://mail.example.com?timeout=soon", "option 'timeout'"),
        ("smtp://:25", "names no host"),
        ("office365://contoso.com", "names no mailbox"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        channel_from_url(url)
    assert fragment in str(caught.value)


def test_office365_url_names_the_mailbox() -> None:
    channel = channel_from_url("office365://alice@contoso.com?send_as=helpdesk@contoso.com,sales@contoso.com")
    assert isinstance(channel, Office365Channel)
    assert ("alice@contoso.com", ("helpdesk@contoso.com", "sales@contoso.com")) == (
        channel.address, channel.send_as
    )
    assert "smtp.office365.com" == channel.host


def test_office365_url_with_a_password_and_a_token_override() -> None:
    with_password = channel_from_url(f"office365://alice:{sentinels.PASSWORD}@contoso.com")

    async def token() -> str:
        return sentinels.TOKEN

    with_token = channel_from_url("office365://alice@contoso.com", token_provider=token)
    assert isinstance(with_password, Office365Channel)
    assert isinstance(with_token, Office365Channel)
    assert ("password", "token") == (with_password._endpoint.credential, with_token._endpoint.credential)
    assert [] == sentinels.leaked(repr(with_password))


def test_office365_url_with_the_address_as_user_and_a_submission_host() -> None:
    channel = channel_from_url("office365://alice%40contoso.com@smtp-eu.example.net:2587")
    assert isinstance(channel, Office365Channel)
    assert ("alice@contoso.com", "smtp-eu.example.net", 2587) == (channel.address, channel.host, channel.port)
