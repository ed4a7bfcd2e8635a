"""Building a SparkpostChannel: regions, base_url, domains, sparkpost:// URLs; secrets kept out of sight."""

from __future__ import annotations

import logging

import pytest

import sendchannel
from sendchannel import (
    ConfigurationError,
    CredentialScope,
    Limits,
    Message,
    Rate,
    ScopeKind,
    SparkpostChannel,
    channel_from_url,
    schemes,
)
from sendchannel.testing import FakeChannel
from tests import sentinels
from tests.sparkpost.server import API_KEY, SparkpostServer

KEY = API_KEY


def test_the_class_declares_the_provider_facts() -> None:
    assert ("sparkpost", ScopeKind.PER_DOMAIN, "SparkPost", Limits()) == (
        SparkpostChannel.name,
        SparkpostChannel.scope_kind,
        SparkpostChannel.provider_name,
        SparkpostChannel.default_limits,
    )


def test_the_scope_covers_the_domains_and_may_be_shared() -> None:
    channel = SparkpostChannel(KEY, domains=["Example.com", "*.example.org"])

    assert CredentialScope.per_domain("example.com", "*.example.org") == channel.scope
    assert channel.scope.shareable
    assert channel.scope.allows("anyone@example.com")
    assert channel.scope.allows("news@mail.example.org")
    assert not channel.scope.allows("anyone@example.net")


def test_a_fake_like_sparkpost_has_its_scope_kind_and_limits() -> None:
    fake = FakeChannel.like(SparkpostChannel, "example.com")

    assert (ScopeKind.PER_DOMAIN, Limits(), "fake-sparkpost") == (fake.scope.kind, fake.limits, fake.name)


@pytest.mark.parametrize(
    ("region", "root"),
    [
        ("us", "https://api.sparkpost.com/api/v1"),
        ("eu", "https://api.eu.sparkpost.com/api/v1"),
        ("EU", "https://api.eu.sparkpost.com/api/v1"),
    ],
)
def test_the_region_picks_the_api_root(region: str, root: str) -> None:
    assert root == SparkpostChannel(KEY, domains=["example.com"], region=region).base_url


def test_an_unknown_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"region='us'.*region='eu'"):
        SparkpostChannel(KEY, domains=["example.com"], region="asia")


def test_base_url_overrides_the_region_and_loses_its_trailing_slash() -> None:
    channel = SparkpostChannel(
        KEY, domains=["example.com"], region="eu", base_url="https://demo.api.e.sparkpost.com/api/v1/"
    )

    assert "https://demo.api.e.sparkpost.com/api/v1" == channel.base_url


@pytest.mark.parametrize(
    ("base_url", "match"),
    [
        ("http://api.example.com/api/v1", "unencrypted"),
        ("https://api.sparkpost.com", "including /api/v1"),
        ("ftp://api.sparkpost.com/api/v1", "not an http"),
        ("api.sparkpost.com/api/v1", "not an http"),
    ],
)
def test_a_base_url_that_is_not_an_https_api_root_is_refused(base_url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SparkpostChannel(KEY, domains=["example.com"], base_url=base_url)


@pytest.mark.parametrize(
    ("domains", "match"),
    [
        ([], "needs domains="),
        ("", "needs domains="),
        (["alice@example.com"], "is an address; give its domain \\('example.com'\\)"),
        (["not a domain"], "is not a domain name"),
        ([42], "must be strings"),
        (42, "must be a sequence of domain names"),
    ],
)
def test_bad_domains_are_configuration_errors(domains: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SparkpostChannel(KEY, domains=domains)  # type: ignore[arg-type]


def test_domains_may_be_one_comma_separated_string() -> None:
    assert ("a.example", "b.example") == SparkpostChannel(KEY, domains="a.example, b.example").domains  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (KEY + "\n" + KEY, "line breaks"),
        ("kéy", "non-ASCII"),
        (None, "string"),
    ],
)
def test_a_malformed_key_is_refused_without_showing_it(key: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        SparkpostChannel(key, domains=["example.com"])  # type: ignore[arg-type]

    assert [] == sentinels.leaked(str(caught.value))


async def test_a_key_read_with_a_trailing_newline_is_sent_trimmed(server: SparkpostServer) -> None:
    async with SparkpostChannel(KEY + "\n", domains=["example.com"], base_url=server.url) as channel:
        await channel.verify()

    assert KEY == server.received[0].headers["authorization"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"options": ["open_tracking"]}, "options must be a mapping"),
        ({"base_url": 8080}, "base_url must be a string"),
        ({"options": {"start_time": object()}}, "options must be JSON data"),
        ({"limits": {"max_connections": 2}}, "limits must be a Limits"),
    ],
    ids=["zero-timeout", "bool-timeout", "options", "base-url", "options-json", "limits"],
)
def test_inconsistent_options_are_configuration_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SparkpostChannel(KEY, domains=["example.com"], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [float("inf"), float("nan")])
def test_an_endless_timeout_is_refused_as_smtp_refuses_it(timeout: float) -> None:
    """timeout=inf was accepted by SparkPost and refused by SMTP; every channel now refuses it."""
    with pytest.raises(ConfigurationError, match="positive, finite"):
        SparkpostChannel(KEY, domains=["example.com"], timeout=timeout)


def test_tls_context_must_be_an_ssl_context() -> None:
    with pytest.raises(ConfigurationError, match=r"ssl\.SSLContext"):
        SparkpostChannel(KEY, domains=["example.com"], tls_context="/etc/ssl/ca.pem")  # type: ignore[arg-type]


def test_the_limits_given_are_the_channels_limits() -> None:
    limits = Limits(rates=(Rate.per_hour(10_000), Rate.per_day(100_000)), max_message_bytes=20_000_000)

    assert limits == SparkpostChannel(KEY, domains=["example.com"], limits=limits).limits


def test_repr_and_str_show_region_and_scope_but_never_the_key() -> None:
    channel = SparkpostChannel(KEY, domains=["example.com"], region="eu")

    assert "<SparkpostChannel eu scope=per-domain: example.com>" == repr(channel)
    assert [] == sentinels.leaked(repr(channel) + str(channel) + str(vars(channel).get("domains")))


async def test_nothing_the_channel_logs_shows_the_key(
    server: SparkpostServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.keys = {}
    channel = SparkpostChannel(KEY, domains=["example.com"], base_url=server.url)
    with caplog.at_level(logging.DEBUG):
        async with channel:
            with pytest.raises(sendchannel.AuthenticationError) as caught:
                await channel.send(Message("app@example.com", ["bob@example.net"], text="x"))

    assert any("send failed" in record.getMessage() for record in caplog.records)
    text = caplog.text + str(caught.value) + repr(caught.value)
    assert [] == sentinels.leaked(text)


# -- the package and the registry -------------------------------------------------------------------


def test_the_channel_is_a_lazy_public_name_and_sparkpost_a_scheme() -> None:
    assert SparkpostChannel is sendchannel.SparkpostChannel
    assert "sparkpost" in schemes()


def test_a_sparkpost_url_gives_key_region_and_domains() -> None:
    channel = channel_from_url(f"sparkpost://{KEY}@eu?domains=a.example,b.example&timeout=12")

    assert isinstance(channel, SparkpostChannel)
    assert ("https://api.eu.sparkpost.com/api/v1", ("a.example", "b.example"), 12.0) == (
        channel.base_url,
        channel.domains,
        channel.timeout,
    )
    assert KEY == channel._api_key


def test_a_sparkpost_url_may_repeat_domains_and_leave_out_the_region() -> None:
    channel = channel_from_url(f"sparkpost://{KEY}@?domains=a.example&domains=b.example")

    assert isinstance(channel, SparkpostChannel)
    assert ("https://api.sparkpost.com/api/v1", ("a.example", "b.example")) == (
        channel.base_url,
        channel.domains,
    )


def test_a_sparkpost_url_takes_a_percent_encoded_key_and_a_base_url() -> None:
    channel = channel_from_url(
        "sparkpost://k%2Fey%3D@?domains=a.example&base_url=https://demo.api.e.sparkpost.com/api/v1"
    )

    assert isinstance(channel, SparkpostChannel)
    assert ("k/ey=", "https://demo.api.e.sparkpost.com/api/v1") == (channel._api_key, channel.base_url)


def test_overrides_take_precedence_over_the_url() -> None:
    channel = channel_from_url(f"sparkpost://{KEY}@us?domains=a.example", domains=["b.example"], region="eu")

    assert isinstance(channel, SparkpostChannel)
    assert (("b.example",), "https://api.eu.sparkpost.com/api/v1") == (channel.domains, channel.base_url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (f"sparkpost://{KEY}@asia?domains=a.example", "the region, us or eu"),
        (f"sparkpost://{KEY}@us", "declares no domains"),
        ("sparkpost://us?domains=a.example", "no API key"),
        (f"sparkpost://{KEY}@us?domains=a.example&sandbox=1", "unknown option"),
        (f"sparkpost://{KEY}@us?domains=a.example&timeout=soon", "timeout must be a number"),
        (f"sparkpost://{KEY}@us?domains=a.example&region=mars", "Unknown SparkPost region"),
    ],
)
def test_a_bad_sparkpost_url_is_a_configuration_error_that_hides_the_key(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        channel_from_url(url)

    assert [] == sentinels.leaked(str(caught.value))


def test_an_unknown_override_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'colour'"):
        channel_from_url(f"sparkpost://{KEY}@us?domains=a.example", colour="blue")


def test_the_key_in_a_sparkpost_url_is_percent_decoded_once() -> None:
    """sparkpost://ab%2525cd@us is the key ab%25cd: the user part was once decoded twice (ab%cd)."""
    channel = channel_from_url("sparkpost://ab%2525cd@us?domains=example.com")
    assert "ab%25cd" == channel._api_key  # type: ignore[attr-defined]
