"""``sendchannel directory DATABASE_URL list|connect|route|disconnect``, run as a user runs it: a subprocess
(and a pseudo-terminal for the password prompt), against the local SMTP server; no output holds a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendchannel import ChannelDirectory, Message
from sendchannel.errors import AuthenticationError
from tests import sentinels
from tests.cli.conftest import cli, in_terminal
from tests.gmail.conftest import user_credentials
from tests.gmail.server import GmailServer
from tests.smtp.servers import Certificates, SmtpServer


@pytest.fixture
def env(secret_key: str, certificates: Certificates, tmp_path: Path) -> dict[str, str]:
    return {
        "SENDCHANNEL_SECRET_KEYS": secret_key,
        "SSL_CERT_FILE": certificates.write_ca(str(tmp_path / "ca.pem")),
    }


async def test_connect_list_route_disconnect_with_the_password_from_the_environment(
    sqlite_url: str, env: dict[str, str], starttls_server: SmtpServer
) -> None:
    url = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    with_password = {**env, "SENDCHANNEL_PASSWORD": sentinels.PASSWORD}
    connected = await cli("directory", sqlite_url, "connect", "bob", url, env=with_password)
    assert 0 == connected.code, connected.output
    assert "Connected: " in connected.stdout
    entry_id = connected.stdout.split()[1]

    listed = await cli("directory", sqlite_url, "list", env=env)
    assert 0 == listed.code
    where = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    shown = f"{entry_id}  bob  {where}  unrestricted  own  ok since"
    assert shown in listed.stdout

    routed = await cli("directory", sqlite_url, "route", "bob@contoso.com", "--owner", "bob", env=env)
    assert 0 == routed.code
    assert "it is an unrestricted entry" in routed.stdout
    nobody = await cli("directory", sqlite_url, "route", "carol@contoso.com", env=env)
    assert 3 == nobody.code
    assert "it is bob's and not shared" in nobody.output

    removed = await cli("directory", sqlite_url, "disconnect", entry_id, env=env)
    assert (0, f"Disconnected {entry_id}.\n") == (removed.code, removed.stdout)
    again = await cli("directory", sqlite_url, "disconnect", entry_id, env=env)
    assert 2 == again.code
    assert "No entries." in (await cli("directory", sqlite_url, "list", env=env)).stdout


async def test_connect_asks_for_the_password_without_echoing_it(
    sqlite_url: str, env: dict[str, str], starttls_server: SmtpServer
) -> None:
    url = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    terminal = await in_terminal("directory", sqlite_url, "connect", "bob", url, env=env)
    await terminal.read_until(b"Password for smtp://bob@127.0.0.1")
    terminal.type(sentinels.PASSWORD.encode() + b"\n")
    assert 0 == await terminal.finish()
    assert b"Connected: " in terminal.seen
    assert sentinels.PASSWORD.encode() not in terminal.seen


async def test_a_refused_password_is_a_permanent_failure_and_nothing_is_stored(
    sqlite_url: str, env: dict[str, str], starttls_server: SmtpServer
) -> None:
    url = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    wrong = {**env, "SENDCHANNEL_PASSWORD": "wrong"}
    refused = await cli("directory", sqlite_url, "connect", "bob", url, env=wrong)
    assert 3 == refused.code
    assert "AuthenticationError" in refused.stderr
    assert "No entries." in (await cli("directory", sqlite_url, "list", env=env)).stdout


async def test_without_a_secret_key_the_command_says_how_to_make_one(sqlite_url: str) -> None:
    run = await cli("directory", sqlite_url, "connect", "ops", "smtp://127.0.0.1:2525?tls=none", env={})
    assert 2 == run.code
    assert "SENDCHANNEL_SECRET_KEYS" in run.stderr


async def test_a_database_url_that_is_no_database_is_a_usage_error() -> None:
    run = await cli("directory", "mysql://root:hunter2@db/mail", "list")
    assert 2 == run.code
    assert "mysql://root:***@db/mail" in run.stderr
    assert "hunter2" not in run.output


async def test_a_gmail_grant_is_read_from_a_file_verified_and_stored(
    sqlite_url: str, secret_key: str, tmp_path: Path
) -> None:
    with GmailServer("alice@example.com") as gmail:
        grant = tmp_path / "grant.json"
        grant.write_text(user_credentials(gmail).to_json())
        url = f"gmail://alice@example.com?api_endpoint={gmail.url}&timeout=5"
        env = {"SENDCHANNEL_SECRET_KEYS": secret_key}
        options = ["--credentials", str(grant)]
        run = await cli("directory", sqlite_url, "connect", "alice", url, *options, env=env)
        assert 0 == run.code, run.output
        assert "per-address: alice@example.com  own  ok" in run.stdout
        assert 1 == len(gmail.token_requests)  # verified: the grant was refreshed once


@pytest.mark.parametrize(
    ("grant", "words"),
    [
        (None, "needs the user's grant: pass --credentials FILE"),
        ("missing.json", "Could not read the Google grant"),
        ("not-json.json", "The Google grant is not JSON"),
        ("robot.json", "must be an authorised-user JSON object"),
    ],
)
async def test_a_gmail_grant_that_cannot_be_used_is_a_usage_error(
    sqlite_url: str, secret_key: str, tmp_path: Path, grant: str | None, words: str
) -> None:
    (tmp_path / "not-json.json").write_text("refresh_token=abc")
    (tmp_path / "robot.json").write_text('{"type": "service_account"}')
    options = [] if grant is None else ["--credentials", str(tmp_path / grant)]
    env = {"SENDCHANNEL_SECRET_KEYS": secret_key}
    url = "gmail://alice@example.com"
    run = await cli("directory", sqlite_url, "connect", "alice", url, *options, env=env)
    assert 2 == run.code
    assert words in run.stderr


async def test_without_a_terminal_or_the_environment_the_password_is_a_usage_error(
    sqlite_url: str, secret_key: str
) -> None:
    env = {"SENDCHANNEL_SECRET_KEYS": secret_key}
    run = await cli("directory", sqlite_url, "connect", "bob", "smtp://bob@127.0.0.1:2525", env=env)
    assert 2 == run.code
    assert "needs a password; set SENDCHANNEL_PASSWORD" in run.stderr


async def test_list_shows_why_an_entry_needs_reconnecting(
    sqlite_url: str,
    secret_key: str,
    env: dict[str, str],
    starttls_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", env["SSL_CERT_FILE"])
    url = f"smtp://bob@127.0.0.1:{starttls_server.port}?timeout=5"
    wrong = {**env, "SENDCHANNEL_PASSWORD": "wrong"}
    assert 0 == (await cli("directory", sqlite_url, "connect", "bob", url, "--no-verify", env=wrong)).code
    async with ChannelDirectory(sqlite_url, secrets=secret_key) as directory:
        message = Message("bob@contoso.com", ["c@example.net"], subject="s", text="t")
        with pytest.raises(AuthenticationError):
            await directory.send(message, owner="bob")
    listed = await cli("directory", sqlite_url, "list", "--owner", "bob", env=env)
    assert "needs_reconnect since" in listed.stdout
    assert "bob must reconnect it." in listed.stdout
