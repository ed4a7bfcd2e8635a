"""The directory's edges: bad options, a closed directory, a credential that names itself, an on_change
that fails, a database locked while a state must be recorded, the layers' attributes, the overrides'
stored forms, the secret keys' errors."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import pytest
from cryptography.fernet import Fernet

from sendchannel import ChannelDirectory, CredentialScope, Limits, MemoryStore, Message
from sendchannel._directory import _overrides
from sendchannel._directory._secrets import SecretBox
from sendchannel.errors import AuthenticationError, ConfigurationError, SenderNotAllowedError
from tests.directory.conftest import MakeDirectory
from tests.directory.scheme import channel
from tests.pg import PostgresServer

ALICE = "dirtest://alice?address=alice@contoso.com"


def message(sender: str = "alice@contoso.com") -> Message:
    return Message(sender, ["c@example.net"], subject="s", text="t")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"retry": 3}, "retry must be a RetryPolicy or None"),
        ({"max_wait": -1}, "max_wait must be a number of seconds"),
        ({"refresh_interval": 0}, "refresh_interval must be a positive number"),
        ({"on_change": "tell"}, "on_change must be callable"),
    ],
)
def test_bad_options_are_refused_when_the_directory_is_made(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ChannelDirectory("memory://", **options)


async def test_an_owner_must_be_a_non_empty_string(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    with pytest.raises(ConfigurationError, match="owner must be a non-empty string"):
        await directory.connect(" ", ALICE)


async def test_a_closed_directory_refuses_to_be_used(secret_key: str) -> None:
    directory = ChannelDirectory("memory://", secrets=secret_key, throttle_store=MemoryStore())
    async with directory:
        await directory.connect("alice", ALICE)
    await directory.aclose()
    with pytest.raises(RuntimeError, match="is closed"):
        await directory.entries()


async def test_a_channel_that_names_its_credential_is_identified_by_it(make_directory: MakeDirectory) -> None:
    """Two URLs for one credential (its channel says so with credential_id): the second replaces the first."""
    directory = await make_directory()
    await directory.connect("ops", "dirtest://relay-a", credential_id="relay-account-7")
    second = await directory.connect("ops", "dirtest://relay-b", credential_id="relay-account-7")
    assert [second] == await directory.entries()
    sender = await directory.channel_for(message(), owner="ops")
    assert "dirtest:relay-account-7" == sender.credential_id  # type: ignore[attr-defined]


async def test_an_on_change_that_raises_is_logged_and_the_send_error_still_raised(
    make_directory: MakeDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(entry: object, previous: object) -> None:
        raise RuntimeError("the notifier is down")

    directory = await make_directory(on_change=broken)
    await directory.connect("alice", ALICE)
    channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
    with pytest.raises(AuthenticationError, match="535"):
        await directory.send(message(), owner="alice")
    assert "on_change raised for entry" in caplog.text
    assert "needs_reconnect" == directory.route("alice@contoso.com", owner="alice").state


async def test_explain_says_when_the_chosen_entry_is_not_ok_and_when_nothing_fits(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory()
    await directory.connect("alice", ALICE)
    channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
    with pytest.raises(AuthenticationError):
        await directory.send(message(), owner="alice")
    explained = directory.explain("alice@contoso.com", owner="alice")
    assert "It is needs_reconnect: Office 365 refused" in explained
    assert directory.explain("x@nowhere.org").startswith("Nothing in the directory may send as x@nowhere.org")
    with pytest.raises(SenderNotAllowedError, match="'not an address' is not an e-mail address"):
        directory.route("not an address")


async def test_a_state_that_cannot_be_stored_is_kept_in_this_process_and_logged(
    tmp_path: Path, secret_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "directory.db"
    # The budgets are kept elsewhere: the send reaches the provider while the database is held.
    url = f"sqlite:///{path}?timeout=0.3"
    async with ChannelDirectory(url, secrets=secret_key, throttle_store=MemoryStore()) as directory:
        await directory.connect("alice", ALICE)
        await directory.send(message(), owner="alice")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the database
        try:
            channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
            with pytest.raises(AuthenticationError, match="535"):
                await directory.send(message(), owner="alice")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert "could not record entry" in caplog.text
        with pytest.raises(AuthenticationError, match="needs reconnecting"):
            await directory.send(message(), owner="alice")


async def test_a_database_that_cannot_be_reached_is_logged_by_the_watcher(
    postgresql_server: PostgresServer, postgresql_url: str, secret_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with ChannelDirectory(postgresql_url, secrets=secret_key, refresh_interval=0.05) as directory:
        await directory.connect("alice", ALICE)
        name = postgresql_url.rsplit("/", 1)[1]
        postgresql_server.sql(f"DROP DATABASE {name} WITH (FORCE)")  # the database is gone
        with caplog.at_level(logging.WARNING, logger="sendchannel.directory"):
            for _ in range(500):
                if "could not check" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert "directory: could not check postgresql://postgres:***@127.0.0.1" in caplog.text
        # What this process knew still routes; sends report the database when they need it.
        assert "alice" == directory.route("alice@contoso.com", owner="alice").owner


async def test_the_layers_pass_their_attributes_through(make_directory: MakeDirectory) -> None:
    directory = await make_directory(failover=True)
    await directory.connect("alice", ALICE)
    await directory.connect("sales", "dirtest://team?domains=contoso.com", shared=True)
    both = await directory.channel_for(message(), owner="alice")
    assert "per-address: alice@contoso.com + per-domain: contoso.com" == str(both.scope)
    assert Limits() == both.limits
    await both.verify()
    await both.aclose()  # the directory owns the channels: nothing is closed
    assert not channel("alice").closed
    assert "<directory failover [" in repr(both)
    one = await directory.channel_for(message("bob@contoso.com"), owner="bob")
    one.limits = Limits(max_recipients_per_message=5)
    one.scope = CredentialScope.per_domain("contoso.com", "contoso.eu")
    assert (5, True) == (one.limits.max_recipients_per_message, one.scope.allows("x@contoso.eu"))
    await one.verify()
    assert "<directory channel entry=" in repr(one)


def test_overrides_are_stored_as_json_and_rebuilt() -> None:
    grant = google.oauth2.credentials.Credentials(
        None, refresh_token="r", client_id="c", client_secret="s", token_uri="http://127.0.0.1:9/token"
    )
    given = {
        "send_as": ("a@x.com", "b@x.com"),
        "hosts": ["a", "b"],
        "options": {"depth": 2},
        "scope": CredentialScope.unrestricted(),
        "credentials": grant,
        "timeout": 5.0,
    }
    stored = json.loads(json.dumps(_overrides.encode(given)))
    rebuilt = _overrides.decode(stored)
    assert given["send_as"] == rebuilt["send_as"]
    assert ["a", "b"] == rebuilt["hosts"]
    assert {"depth": 2} == rebuilt["options"]
    assert CredentialScope.unrestricted() == rebuilt["scope"]
    assert ("r", "http://127.0.0.1:9/token", None) == (
        rebuilt["credentials"].refresh_token, rebuilt["credentials"].token_uri, rebuilt["credentials"].token
    )
    assert _overrides.fingerprint({"timeout": 5.0}) is None
    with pytest.raises(ConfigurationError, match=r"The override hook= is a builtins\.function"):
        _overrides.encode({"hook": lambda: None})


def test_secret_key_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="Secret key 1 in secrets= is a int"):
        SecretBox([7])  # type: ignore[list-item]
    box = SecretBox(Fernet.generate_key())
    with pytest.raises(ConfigurationError, match="None of the secret keys decrypts"):
        box.rotate(Fernet(Fernet.generate_key()).encrypt(b"x"))
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ConfigurationError, match=r'pip install "sendchannel\[directory\]"'):
        SecretBox(Fernet.generate_key())
