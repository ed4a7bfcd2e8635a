"""Bad URLs given to channel_from_url: only ConfigurationError comes out, and never a secret.

Arbitrary strings, and near-valid URLs for every scheme (smtp, smtps, office365, gmail, sparkpost,
msgraph, memory, unknown ones) with the sentinel password, API key and OAuth secrets in their
secret slots: the password, the user part of key-only URLs, ``token=``/``password=`` options and
inline Gmail credentials. The result is a channel whose repr holds no secret, or a ConfigurationError
whose text holds none.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sendchannel import channel_from_url
from sendchannel.errors import ConfigurationError
from tests import sentinels
from tests.gmail.server import CLIENT_ID
from tests.reliability._badinput import hostile_text, time_limit

SCHEMES = [
    "smtp",
    "smtps",
    "office365",
    "gmail",
    "sparkpost",
    "msgraph",
    "memory",
    "SMTP",
    "GMail",
    "unknown",
    "x-y.z",
    "",
    "smtp+tls",
    "ftp",
    "http",
]

GRANT = json.dumps(
    {
        "type": "authorized_user",
        "client_id": CLIENT_ID,
        "client_secret": sentinels.CLIENT_SECRET,
        "refresh_token": sentinels.REFRESH_TOKEN,
    }
)
BROKEN_GRANT = GRANT.replace('"refresh_token"', '"refresh"')
SECRETS = sentinels.ALL


def _encoded(text: str) -> str:
    return urllib.parse.quote(text, safe="", errors="surrogatepass")


#: The password slot: the sentinel, alone or with characters that need percent-encoding around it.
passwords = st.one_of(
    st.none(),
    st.just(sentinels.PASSWORD),
    st.builds(lambda a, b: _encoded(a + sentinels.PASSWORD + b), hostile_text, hostile_text),
    st.just(_encoded(sentinels.TOKEN)),
)
users = st.one_of(
    st.sampled_from(["", "bob", "alice@contoso.com", "alice%40contoso.com", "SMTP_Injection"]),
    hostile_text.map(_encoded),
)
# Host and port text keeps no URL delimiter (?, #, /, @): one there moves the query, and a secret option
# after it would become part of another option's value, which no redaction can recognise.
_delimiters = {ord(c): None for c in "?#/@"}
url_text = hostile_text.map(lambda text: text.translate(_delimiters))
hosts = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "smtp.example.com",
            "[::1]",
            "[::1",
            "[zz]",
            "us",
            "eu",
            "EU",
            "contoso.com",
            "example.com",
            "",
            "exa mple.com",
            "例え.jp",
            "xn--",
            "-bad-.com",
            "a" * 300,
        ]
    ),
    url_text,
)
ports = st.one_of(
    st.none(), st.integers(-5, 70_000).map(str), st.sampled_from(["", "abc", "٣", "1e3", "0x19"]), url_text
)
paths = st.sampled_from(["", "/", "/api/v1", "/x/y", "/%0d%0a", "//"])
OPTIONS = [
    "tls",
    "timeout",
    "pool_size",
    "allow_insecure_auth",
    "domains",
    "region",
    "base_url",
    "credentials",
    "workspace",
    "send_as",
    "host",
    "port",
    "api_endpoint",
    "max_concurrency",
    "name",
    "local_hostname",
    "recycle_after",
    "max_idle",
    "client_id",
    "tenant_id",
    "cache_path",
    "authority",
]
VALUES = [
    "none",
    "starttls",
    "implicit",
    "nan",
    "inf",
    "-1",
    "0",
    "1e309",
    "true",
    "maybe",
    "example.com",
    "https://api.example.com/api/v1",
    "http://evil.example/api/v1",
    "http://127.0.0.1:1/api/v1",
    "a@b.com,c@d.com",
    "/nonexistent/grant.json",
    "{",
    "[]",
]
#: Options that hold secrets (the redaction covers them), with a sentinel as their value.
SECRET_OPTIONS = ["password", "token", "key", "api_key", "secret", "client_secret"]
query = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(OPTIONS) | hostile_text, st.sampled_from(VALUES) | hostile_text),
        st.tuples(st.sampled_from(SECRET_OPTIONS), st.sampled_from(SECRETS)),
        st.tuples(st.just("credentials"), st.sampled_from([GRANT, BROKEN_GRANT])),
    ),
    max_size=4,
)


@st.composite
def near_valid_urls(draw: st.DrawFn) -> str:
    scheme, user, password = draw(st.sampled_from(SCHEMES)), draw(users), draw(passwords)
    if scheme == "sparkpost" and draw(st.booleans()):
        # sparkpost://KEY@us: the user part is the secret.
        user = draw(st.sampled_from([sentinels.API_KEY, _encoded(sentinels.API_KEY + "\n")]))
    userinfo = user if password is None else f"{user}:{password}"
    port = draw(ports)
    url = f"{scheme}://{userinfo}{'@' if userinfo else ''}{draw(hosts)}{'' if port is None else ':' + port}"
    url += draw(paths)
    pairs = draw(query)
    if pairs:
        url += "?" + urllib.parse.urlencode(pairs, errors="surrogatepass")
    if draw(st.booleans()):
        url += "#" + draw(hostile_text)
    return url


@pytest.fixture(scope="module", autouse=True)
def _no_gmail_credentials_in_the_environment() -> Iterator[None]:
    saved = os.environ.pop("SENDCHANNEL_GMAIL_CREDENTIALS", None)
    yield
    if saved is not None:
        os.environ["SENDCHANNEL_GMAIL_CREDENTIALS"] = saved


def _secrets_in(text: str) -> list[str]:
    found = sentinels.leaked(text)
    # An API key in a URL may carry its own percent-encoding; look for the decoded and encoded forms.
    return found + [s for s in SECRETS if _encoded(s) in text and s not in found]


def check(url: object) -> None:
    """channel_from_url(url) gives a channel or a ConfigurationError; no secret is shown either way."""
    try:
        with time_limit(5, "channel_from_url"):
            channel = channel_from_url(url)  # type: ignore[arg-type]
    except ConfigurationError as error:
        text = f"{error} {error!r}"
        text.encode("utf-8")
        assert text.strip(), "a ConfigurationError without a message"
        assert [] == _secrets_in(text), f"a secret in the error for {url!r}: {text}"
        event(f"ConfigurationError ({type(url).__name__})")
        return
    shown = f"{channel!r} {channel.name} {channel.scope!r}"
    assert [] == _secrets_in(shown), f"a secret in the channel built from {url!r}: {shown}"
    event(f"built {type(channel).__name__}")
    asyncio.run(channel.aclose())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(near_valid_urls())
def test_near_valid_urls_give_a_channel_or_a_configuration_error_without_secrets(url: str) -> None:
    check(url)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(),
        hostile_text,
        st.builds(lambda s, t: f"{s}://{t}", st.sampled_from(SCHEMES), st.text()),
        st.none(),
        st.integers(),
        st.binary(),
    )
)
def test_arbitrary_values_give_a_configuration_error(url: object) -> None:
    check(url)


@pytest.mark.parametrize("scheme", ["smtp", "smtps", "office365"])
@pytest.mark.parametrize("separator", ["/", "?", "#"])
def test_an_unencoded_reserved_character_in_a_password_is_refused_unseen(scheme: str, separator: str) -> None:
    """A password with an unencoded / ? or # splits the URL in the wrong place; no part of it is shown."""
    head, tail = sentinels.PASSWORD[:9], sentinels.PASSWORD[9:]
    url = f"{scheme}://alice@contoso.com:{head}{separator}{tail}@smtp.example.com:587"
    with pytest.raises(ConfigurationError) as caught:
        channel_from_url(url)
    assert head not in str(caught.value)
    assert tail not in str(caught.value)


VALID_WITH_SECRETS = [
    f"smtp://bob:{sentinels.PASSWORD}@smtp.example.com:587?timeout=5",
    f"smtps://bob:{_encoded(sentinels.PASSWORD + '/?#@')}@smtp.example.com",
    f"office365://alice:{sentinels.PASSWORD}@contoso.com",
    f"sparkpost://{sentinels.API_KEY}@eu?domains=example.com",
    f"gmail://alice@example.com?credentials={_encoded(GRANT)}",
    f"memory://bob:{sentinels.PASSWORD}@outbox",
    f"msgraph://APP:{_encoded(sentinels.CLIENT_SECRET + '/?#@')}@contoso.onmicrosoft.com?domains=contoso.com",
]


@pytest.mark.parametrize("url", VALID_WITH_SECRETS, ids=lambda url: url.split(":", 1)[0])
def test_a_channel_built_from_a_url_with_secrets_shows_none_of_them(url: str) -> None:
    channel = channel_from_url(url)
    shown = f"{channel!r} {channel.name} {channel.scope!r} {channel.limits!r}"
    assert [] == _secrets_in(shown)
    asyncio.run(channel.aclose())


def test_a_url_whose_password_spills_past_the_host_is_refused_with_the_remedy() -> None:
    with pytest.raises(ConfigurationError, match="percent-encode") as caught:
        channel_from_url(f"smtp://bob:{sentinels.PASSWORD[:9]}/{sentinels.PASSWORD[9:]}@smtp.example.com")
    assert "smtp://***@smtp.example.com has an @ after its host" in str(caught.value)
