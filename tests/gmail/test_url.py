"""gmail:// URLs: credentials from a file named in the URL or from SENDCHANNEL_GMAIL_CREDENTIALS."""

from __future__ import annotations

import json
from pathlib import Path

import google.oauth2.credentials
import pytest

from sendchannel import GmailOAuthChannel, Message, Rate, channel_from_url, schemes
from sendchannel._gmail._config import CREDENTIALS_ENV
from sendchannel.errors import ConfigurationError
from tests import sentinels
from tests.gmail.conftest import ADDRESS
from tests.gmail.server import CLIENT_ID, CLIENT_SECRET, GMAIL_SEND, REFRESH_TOKEN, GmailServer


def grant_json(server: GmailServer) -> str:
    """An authorised-user grant as google-auth's Credentials.to_json() writes it."""
    return json.dumps(
        {
            "type": "authorized_user",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": server.token_uri,
            "scopes": [GMAIL_SEND],
        }
    )


@pytest.fixture(autouse=True)
def google_token_endpoint(gmail_server: GmailServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth ignores token_uri in authorised-user files and always uses Google's: point that here."""
    monkeypatch.setattr(google.oauth2.credentials, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", gmail_server.token_uri)


@pytest.fixture
def grant_file(tmp_path: Path, gmail_server: GmailServer) -> Path:
    path = tmp_path / "alice.json"
    path.write_text(grant_json(gmail_server))
    return path


def test_the_gmail_scheme_is_registered() -> None:
    assert "gmail" in schemes()


async def test_a_url_with_a_credentials_file_sends(gmail_server: GmailServer, grant_file: Path) -> None:
    url = f"gmail://{ADDRESS}?credentials={grant_file}&api_endpoint={gmail_server.url}"
    channel = channel_from_url(url)
    assert isinstance(channel, GmailOAuthChannel)
    async with channel:
        await channel.send(Message(ADDRESS, ["bob@example.net"], text="hi"))
    assert 1 == len(gmail_server.sent)
    assert REFRESH_TOKEN == gmail_server.token_requests[0]["refresh_token"]


async def test_the_environment_variable_may_hold_the_path(
    gmail_server: GmailServer, grant_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIALS_ENV, str(grant_file))
    async with channel_from_url(f"gmail://{ADDRESS}", api_endpoint=gmail_server.url) as channel:
        await channel.send(Message(ADDRESS, ["bob@example.net"], text="hi"))
    assert 1 == len(gmail_server.sent)


async def test_the_environment_variable_may_hold_the_json(
    gmail_server: GmailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIALS_ENV, grant_json(gmail_server))
    async with channel_from_url(f"gmail://{ADDRESS}?api_endpoint={gmail_server.url}") as channel:
        await channel.verify()
    assert ["/token", "/gmail/v1/users/me/profile"] == [r.path for r in gmail_server.requests]


def test_url_options_set_workspace_send_as_and_timeout(grant_file: Path) -> None:
    channel = channel_from_url(
        f"gmail://{ADDRESS}?credentials={grant_file}&workspace=false&send_as=sales@example.com&timeout=5"
    )
    assert isinstance(channel, GmailOAuthChannel)
    rates, allowed = channel.limits.rates, channel.scope.allows("sales@example.com")
    assert ((Rate(500, 86400), Rate(60, 60)), True) == (rates, allowed)


def test_credentials_given_as_an_override_win(gmail_server: GmailServer) -> None:
    from tests.gmail.conftest import user_credentials

    credentials = user_credentials(gmail_server)
    channel = channel_from_url(f"gmail://{ADDRESS}?credentials=/nonexistent.json", credentials=credentials)
    assert isinstance(channel, GmailOAuthChannel)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("gmail://", "does not name the Gmail account"),
        (f"gmail://{ADDRESS}", "names no credentials"),
        (f"gmail://{ADDRESS}?credentials=/no/such/file.json", "Could not read the Gmail credentials"),
        (f"gmail://{ADDRESS}?credentials=x&colour=blue", "unknown option .colour.; gmail:// takes"),
        (f"gmail://{ADDRESS}?credentials=x&workspace=perhaps", "must be true or false"),
        (f"gmail://{ADDRESS}?credentials=x&timeout=soon", "timeout must be a number"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, complaint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CREDENTIALS_ENV, raising=False)
    with pytest.raises(ConfigurationError, match=complaint):
        channel_from_url(url)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "are not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (
            json.dumps(
                {"type": "authorized_user", "client_id": "x", "client_secret": sentinels.CLIENT_SECRET}
            ),
            "are incomplete",
        ),
        (json.dumps({"type": "external_account"}), "of type 'external_account'"),
    ],
)
def test_unusable_credential_files_are_explained_without_their_secrets(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "grant.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=complaint) as caught:
        channel_from_url(f"gmail://{ADDRESS}?credentials={path}")
    assert sentinels.CLIENT_SECRET not in str(caught.value)
    assert str(path) in str(caught.value)


def test_secrets_in_the_environment_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        CREDENTIALS_ENV, json.dumps({"type": "authorized_user", "client_secret": sentinels.CLIENT_SECRET})
    )
    with pytest.raises(ConfigurationError, match=f"\\${CREDENTIALS_ENV}") as caught:
        channel_from_url(f"gmail://{ADDRESS}")
    assert sentinels.CLIENT_SECRET not in str(caught.value)


async def test_a_service_account_key_file_acts_for_the_address_in_the_url(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    from tests.gmail.test_channel import _service_account_info

    path = tmp_path / "robot.json"
    path.write_text(json.dumps(_service_account_info(gmail_server)))
    async with channel_from_url(
        f"gmail://{ADDRESS}?credentials={path}", api_endpoint=gmail_server.url
    ) as channel:
        await channel.send(Message(ADDRESS, ["bob@example.net"], text="from a robot"))
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" == gmail_server.token_requests[0]["grant_type"]
    assert 1 == len(gmail_server.sent)


def test_a_credentials_override_may_be_a_path(grant_file: Path) -> None:
    channel = channel_from_url(f"gmail://{ADDRESS}", credentials=str(grant_file))
    assert isinstance(channel, GmailOAuthChannel)
