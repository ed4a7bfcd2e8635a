"""The directory with real providers' channels: the local SMTP server (STARTTLS, AUTH), the local
SparkPost API and the local Gmail API; refreshed and rotated Google tokens written back; the raw
database (a SQLite file, PostgreSQL rows) holds no secret, plain or base64-encoded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sendchannel import ChannelDirectory, Message
from sendchannel._database import open_database
from sendchannel.errors import AuthenticationError, SenderNotAllowedError
from tests import sentinels
from tests.directory.stored import stored_overrides
from tests.gmail.conftest import user_credentials
from tests.gmail.server import GmailServer
from tests.smtp.servers import Certificates, SmtpServer
from tests.sparkpost.server import API_KEY, SparkpostServer


@pytest.fixture
def trusted(certificates: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels built from URLs trust the test authority, through SSL_CERT_FILE as users would."""
    monkeypatch.setenv("SSL_CERT_FILE", certificates.write_ca(str(tmp_path / "ca.pem")))


@pytest.fixture
def sparkpost_server() -> Iterator[SparkpostServer]:
    server = SparkpostServer().start()
    yield server
    server.stop()


class RotatingGmailServer(GmailServer):
    """A Gmail token endpoint that hands out a new refresh token with each refresh and revokes the old."""

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, answer = super().token(form)
        if status == 200 and form.get("grant_type") == "refresh_token":
            rotated = f"{sentinels.REFRESH_TOKEN}-{len(self.token_requests)}"
            self.valid_refresh_tokens = {rotated}
            answer["refresh_token"] = rotated
        return status, answer


def mail(sender: str) -> Message:
    return Message(sender=sender, to=["customer@example.net"], subject="Quote", text="Hello")


async def raw_database_text(database: str) -> str:
    """Everything the database holds for the directory, as text: the SQLite file (and its WAL) byte for
    byte, or every PostgreSQL row, binary columns included."""
    if database.startswith("sqlite:///"):
        path = Path(database.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        blobs = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
        return "\n".join(blob.decode("latin-1") for blob in blobs)
    db = open_database(database)
    try:
        rows = await db.execute("SELECT * FROM sendchannel_directory_entries")
    finally:
        await db.aclose()
    return "\n".join(
        bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
        for row in rows
        for value in row
    )


@pytest.mark.usefixtures("trusted")
async def test_smtp_sparkpost_and_gmail_through_one_directory_leave_no_secret_in_the_database(
    file_database: str, secret_key: str, starttls_server: SmtpServer, sparkpost_server: SparkpostServer
) -> None:
    with GmailServer("alice@example.com") as gmail:
        async with ChannelDirectory(file_database, secrets=secret_key) as directory:
            await directory.connect(
                "bob", f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5", password=sentinels.PASSWORD
            )
            await directory.connect(
                "sales",
                f"sparkpost://{API_KEY}@?domains=example.com&base_url={sparkpost_server.url}",
                shared=True,
            )
            await directory.connect(
                "alice",
                f"gmail://alice@example.com?api_endpoint={gmail.url}&timeout=5",
                credentials=user_credentials(gmail),
            )
            smtp = await directory.send(mail("bob@contoso.com"), owner="bob")
            sparkpost = await directory.send(mail("carol@example.com"), owner="carol")
            google = await directory.send(mail("alice@example.com"), owner="alice")
            urls = [entry.url for entry in await directory.entries()]
        assert ["customer@example.net"] * 3 == [smtp.accepted[0], sparkpost.accepted[0], google.accepted[0]]
        assert 1 == len(starttls_server.messages)
        assert 1 == len(gmail.sent)
        assert ["smtp", "sparkpost", "gmail"] == [url.split("://")[0] for url in urls]
        assert "sparkpost://***@?" in urls[1]
    raw = await raw_database_text(file_database)
    assert "carol@example.com" not in raw  # no message data either
    assert "smtp://bob@127.0.0.1" in raw  # the redacted URLs are there, readable
    assert [] == sentinels.leaked(raw)


@pytest.mark.usefixtures("trusted")
async def test_a_changed_smtp_password_marks_the_entry_until_its_owner_reconnects(
    sqlite_url: str, secret_key: str, starttls_server: SmtpServer
) -> None:
    url = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    async with ChannelDirectory(sqlite_url, secrets=secret_key) as directory:
        with pytest.raises(AuthenticationError):
            await directory.connect("bob", url, password="wrong")  # verified first: nothing stored
        assert [] == await directory.entries()
        # Connected unverified with a password that no longer works (bob changed it at the server).
        await directory.connect("carol", url.replace("bob@", "carol@"), password="old", verify=False)
        carols = await directory.channel_for(mail("carol@contoso.com"), owner="carol")
        with pytest.raises(AuthenticationError):
            await carols.verify()  # verifying through the directory records the refusal too
        assert ["needs_reconnect"] == [e.state for e in await directory.entries(owner="carol")]
        await directory.connect("bob", url, password=f"{sentinels.PASSWORD}-old", verify=False)
        with pytest.raises(AuthenticationError):
            await directory.send(mail("bob@contoso.com"), owner="bob")
        (entry,) = await directory.entries(owner="bob")
        assert "needs_reconnect" == entry.state
        assert (entry.reason or "").endswith("bob must reconnect it.")
        await directory.connect("bob", url, password=sentinels.PASSWORD)  # bob reconnects
        sender = await directory.channel_for(mail("bob@contoso.com"), owner="bob")
        await sender.verify()
        await directory.send(mail("bob@contoso.com"), owner="bob")
        assert ["ok"] == [e.state for e in await directory.entries(owner="bob")]


async def test_a_refreshed_and_rotated_google_grant_is_written_back_for_other_processes(
    sqlite_url: str, secret_key: str
) -> None:
    with RotatingGmailServer("alice@example.com") as gmail:
        url = f"gmail://alice@example.com?api_endpoint={gmail.url}&timeout=5"
        async with ChannelDirectory(sqlite_url, secrets=secret_key) as first:
            await first.connect("alice", url, credentials=user_credentials(gmail))  # verify refreshes
            gmail.expire_tokens()
            await first.send(mail("alice@example.com"), owner="alice")  # refreshes again: a new rotation
        assert 2 == len(gmail.token_requests)
        (current,) = gmail.valid_refresh_tokens
        stored = await stored_overrides(sqlite_url, secret_key)
        assert current == stored["credentials"]["$google_authorized_user"]["refresh_token"]
        # A new directory (another process) sends with the stored access token, refreshing nothing.
        async with ChannelDirectory(sqlite_url, secrets=secret_key) as second:
            await second.send(mail("alice@example.com"), owner="alice")
            assert 2 == len(gmail.token_requests)
            gmail.expire_tokens()
            await second.send(mail("alice@example.com"), owner="alice")  # the rotated token still works
        assert 3 == len(gmail.sent)


async def test_a_revoked_google_grant_needs_reconnecting(sqlite_url: str, secret_key: str) -> None:
    with GmailServer("alice@example.com") as gmail:
        async with ChannelDirectory(sqlite_url, secrets=secret_key) as directory:
            await directory.connect(
                "alice", f"gmail://alice@example.com?api_endpoint={gmail.url}&timeout=5",
                credentials=user_credentials(gmail),
            )
            gmail.revoke()
            with pytest.raises(AuthenticationError):
                await directory.send(mail("alice@example.com"), owner="alice")
            (entry,) = await directory.entries()
            assert "needs_reconnect" == entry.state
            with pytest.raises(SenderNotAllowedError):
                await directory.send(mail("alice@example.com"), owner="bob")  # alice's entry is hers
