"""Fixtures for the Gmail channel: the local Gmail API server, google-auth credentials, the channel."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any

import google.oauth2.credentials
import pytest

from sendchannel import GmailOAuthChannel
from tests import sentinels
from tests.gmail.server import CLIENT_ID, CLIENT_SECRET, GMAIL_SEND, REFRESH_TOKEN, GmailServer

ADDRESS = "alice@example.com"


def user_credentials(server: GmailServer, **changes: Any) -> google.oauth2.credentials.Credentials:
    """An authorised-user grant whose token endpoint is the local server (no access token yet)."""
    fields: dict[str, Any] = {
        "token": None,
        "refresh_token": REFRESH_TOKEN,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_uri": server.token_uri,
        "scopes": [GMAIL_SEND],
    }
    fields.update(changes)
    token = fields.pop("token")
    return google.oauth2.credentials.Credentials(token, **fields)


def expired_credentials(
    server: GmailServer, token: str = f"{sentinels.TOKEN}-expired"
) -> google.oauth2.credentials.Credentials:
    """A grant holding an access token that expired an hour ago."""
    credentials = user_credentials(server, token=token)
    credentials.expiry = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        hours=1
    )
    return credentials


@pytest.fixture
def gmail_server() -> Iterator[GmailServer]:
    with GmailServer(ADDRESS) as server:
        yield server


@pytest.fixture
def credentials(gmail_server: GmailServer) -> google.oauth2.credentials.Credentials:
    return user_credentials(gmail_server)


@pytest.fixture
async def channel(
    gmail_server: GmailServer, credentials: google.oauth2.credentials.Credentials
) -> AsyncIterator[GmailOAuthChannel]:
    channel = GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url, timeout=5)
    yield channel
    await channel.aclose()
