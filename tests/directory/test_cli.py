"""``sendchannel directory DATABASE_URL list|connect|route|disconnect``, run as a user runs it: a subprocess
(and a pseudo-terminal for the password prompt), against the local SMTP server; no output holds a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import sentinels
from tests.cli.conftest import cli, in_terminal
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
