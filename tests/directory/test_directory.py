"""ChannelDirectory's rules, on memory://, a SQLite file and PostgreSQL: connecting, routing, health,
secrets, channel_for. The channels are ``dirtest://`` FakeChannels (tests/directory/scheme.py); the real
providers are in test_providers.py."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from typing import Any

import pytest
from cryptography.fernet import Fernet

from sendchannel import ChannelDirectory, DirectoryEntry, Message, RetryPolicy
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    QuotaExceededError,
    SenderNotAllowedError,
    TransientError,
)
from sendchannel.testing import VirtualClock
from tests import sentinels
from tests.directory.conftest import MakeDirectory
from tests.directory.scheme import channel

ALICE = "dirtest://alice?address=alice@contoso.com"
BOB = "dirtest://bob?address=bob@contoso.com"
TEAM = "dirtest://team?domains=contoso.com"
RELAY = "dirtest://relay"


def message(sender: str = "alice@contoso.com", **fields: Any) -> Message:
    fields.setdefault("to", ["customer@example.net"])
    return Message(sender=sender, subject="Quote", text="Hello", **fields)


# -- connecting ---------------------------------------------------------------------------------------------


async def test_connect_stores_an_entry_with_a_redacted_url(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    entry = await directory.connect("alice", f"dirtest://alice:{sentinels.PASSWORD}@alice?address=alice@contoso.com")
    assert isinstance(entry, DirectoryEntry)
    assert ("alice", "dirtest", False, "ok", None) == (
        entry.owner, entry.scheme, entry.shared, entry.state, entry.reason
    )
    assert "dirtest://alice:***@alice?address=alice%40contoso.com" == entry.url
    assert sentinels.PASSWORD not in entry.url
    assert entry.since.tzinfo is datetime.UTC
    assert [entry] == await directory.entries()


async def test_a_per_address_credential_cannot_be_shared(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    with pytest.raises(ConfigurationError, match=r"shared=True.*alice@contoso.com is the mailbox.*not share"):
        await directory.connect("sales", ALICE, shared=True, password=sentinels.PASSWORD)
    assert [] == await directory.entries()


async def test_a_mailbox_connected_by_another_owner_is_refused(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    first = await directory.connect("alice", ALICE)
    with pytest.raises(ConfigurationError, match=f"already connected by alice \\(entry {first.id}\\)"):
        await directory.connect("mallory", "dirtest://other?address=ALICE@contoso.com")
    assert [first] == await directory.entries()


async def test_reconnecting_the_same_credential_replaces_it_and_clears_needs_reconnect(
    make_directory: MakeDirectory,
) -> None:
    changes: list[tuple[str, str]] = []
    directory = await make_directory(
        on_change=lambda entry, previous: changes.append((previous.state, entry.state))
    )
    old = await directory.connect("alice", ALICE, password="old")
    channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
    with pytest.raises(AuthenticationError):
        await directory.send(message(), owner="alice")
    new = await directory.connect("alice", ALICE, password="new")
    assert new.id != old.id
    assert [new] == await directory.entries()
    assert "ok" == new.state
    assert [("ok", "needs_reconnect"), ("needs_reconnect", "ok")] == changes
    await directory.send(message(), owner="alice")


async def test_an_override_that_cannot_be_rebuilt_elsewhere_is_refused_before_anything(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory()
    with pytest.raises(ConfigurationError, match=r"tls_context=.*SSLContext.*cannot store.*SSL_CERT_FILE"):
        await directory.connect("alice", ALICE, tls_context=ssl.create_default_context())
    assert [] == await directory.entries()


async def test_no_secret_key_is_a_configuration_error_saying_how_to_make_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SENDCHANNEL_SECRET_KEYS", raising=False)
    async with ChannelDirectory(database_url) as directory:
        with pytest.raises(ConfigurationError, match=r"SENDCHANNEL_SECRET_KEYS.*generate_key"):
            await directory.connect("alice", ALICE)


def test_a_key_that_is_not_a_fernet_key_is_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match="Secret key 2 in secrets= is not a Fernet key"):
        ChannelDirectory("memory://", secrets=[Fernet.generate_key(), "not-a-key"])


# -- routing ------------------------------------------------------------------------------------------------


async def test_routing_prefers_per_address_then_per_domain_then_unrestricted(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory()
    relay = await directory.connect("ops", RELAY, shared=True)
    team = await directory.connect("sales", TEAM, shared=True)
    alice = await directory.connect("alice", ALICE)
    assert alice.id == directory.route("alice@contoso.com", owner="alice").id
    assert team.id == directory.route("alice@contoso.com").id  # not alice's message: her mailbox is hers
    assert team.id == directory.route("bob@contoso.com", owner="bob").id
    assert relay.id == directory.route("someone@elsewhere.org").id


async def test_among_equals_the_oldest_connected_wins(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    first = await directory.connect("sales", TEAM, shared=True)
    await directory.connect("support", "dirtest://team2?domains=contoso.com", shared=True)
    assert first.id == directory.route("bob@contoso.com").id


async def test_an_entry_that_is_not_shared_serves_its_owner_only(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    await directory.connect("sales", TEAM)
    with pytest.raises(SenderNotAllowedError, match="it is sales's and not shared"):
        directory.route("bob@contoso.com", owner="bob")
    assert "sales" == directory.route("bob@contoso.com", owner="sales").owner


async def test_no_fitting_entry_lists_what_is_connected_for_the_domain_and_why(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory()
    await directory.connect("alice", ALICE)
    await directory.connect("sales", "dirtest://eu?domains=contoso.eu", shared=True)
    with pytest.raises(SenderNotAllowedError) as caught:
        directory.route("carol@contoso.com", owner="carol")
    text = str(caught.value)
    assert "Nothing in the directory may send as carol@contoso.com for owner 'carol'" in text
    assert "belong to one mailbox (alice@contoso.com), so they cannot send as carol@contoso.com" in text
    assert "contoso.eu" not in text  # connected, but not for this domain
    with pytest.raises(SenderNotAllowedError, match=r"no channel is connected for nowhere\.org"):
        directory.route("x@nowhere.org")


async def test_explain_names_the_entry_and_the_rule(make_directory: MakeDirectory) -> None:
    directory = await make_directory(failover=True)
    await directory.connect("alice", ALICE)
    await directory.connect("sales", TEAM, shared=True)
    text = directory.explain("alice@contoso.com", owner="alice")
    assert text.startswith("dirtest://alice?address=alice%40contoso.com") or "a per-address entry" in text
    assert "Also fitting, in order (tried on failure): dirtest://team" in text


def test_route_before_the_directory_is_opened_says_how_to_open_it() -> None:
    directory = ChannelDirectory("memory://", secrets=Fernet.generate_key())
    with pytest.raises(ConfigurationError, match="async with ChannelDirectory"):
        directory.route("a@example.com")


# -- sending and health -------------------------------------------------------------------------------------


async def test_send_goes_through_the_routed_entry_and_reuses_its_channel(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory()
    await directory.connect("alice", ALICE)
    await directory.connect("sales", TEAM, shared=True)
    first = await directory.channel_for(message(), owner="alice")
    result = await directory.send(message(), owner="alice")
    await directory.send(message("bob@contoso.com"), owner="bob")
    assert first is await directory.channel_for(message(), owner="alice")
    assert "dirtest:alice" == result.channel
    assert 1 == len(channel("alice").outbox)
    assert ["bob@contoso.com"] == [m.sender for m in channel("team").outbox]


async def test_refused_credentials_mark_the_entry_and_later_sends_fail_without_the_provider(
    make_directory: MakeDirectory,
) -> None:
    seen: list[tuple[DirectoryEntry, DirectoryEntry]] = []

    async def on_change(entry: DirectoryEntry, previous: DirectoryEntry) -> None:
        seen.append((entry, previous))

    directory = await make_directory(on_change=on_change)
    await directory.connect("alice", ALICE)
    channel("alice").fail_next(
        AuthenticationError("Office 365 refused the password (535 5.7.3): it was probably changed.")
    )
    with pytest.raises(AuthenticationError, match="probably changed"):
        await directory.send(message(), owner="alice")
    (entry,) = await directory.entries()
    assert "needs_reconnect" == entry.state
    assert (
        "Office 365 refused the password (535 5.7.3): it was probably changed. alice must reconnect it."
        == entry.reason
    )
    attempts = len(channel("alice").attempts)
    with pytest.raises(AuthenticationError, match=r"needs reconnecting since .*alice must reconnect it"):
        await directory.send(message(), owner="alice")
    assert attempts == len(channel("alice").attempts)  # the provider was not contacted
    assert [("needs_reconnect", "ok")] == [(e.state, p.state) for e, p in seen]


async def test_with_failover_a_refused_entry_hands_over_to_the_next_fitting_one(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory(failover=True)
    await directory.connect("alice", ALICE)
    await directory.connect("sales", TEAM, shared=True)
    channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
    first = await directory.send(message(), owner="alice")
    second = await directory.send(message(), owner="alice")
    assert ("dirtest:team", "dirtest:team") == (first.channel, second.channel)
    assert 1 == len(channel("alice").attempts)  # the second send skipped alice's entry at once
    assert "needs_reconnect" == directory.route("alice@contoso.com", owner="alice").state


async def test_with_failover_the_last_entry_refusing_raises_its_authentication_error(
    make_directory: MakeDirectory,
) -> None:
    directory = await make_directory(failover=True)
    await directory.connect("alice", ALICE)
    channel("alice").fail_next(AuthenticationError("Office 365 refused the password (535 5.7.3)."))
    with pytest.raises(AuthenticationError, match="535"):
        await directory.send(message(), owner="alice")


async def test_a_provider_quota_pauses_the_entry_until_it_resets(make_directory: MakeDirectory) -> None:
    clock = VirtualClock(start=1_800_000_000.0)
    directory = await make_directory(clock=clock)
    await directory.connect("sales", TEAM, shared=True)
    channel("team").fail_next(
        QuotaExceededError("SparkPost: the monthly quota is spent (2105).", resets_at=clock.now() + 3600)
    )
    with pytest.raises(QuotaExceededError):
        await directory.send(message("bob@contoso.com"))
    entry = directory.route("bob@contoso.com")
    assert ("paused", datetime.datetime.fromtimestamp(1_800_003_600, datetime.UTC)) == (
        entry.state,
        entry.paused_until,
    )
    attempts = len(channel("team").attempts)
    with pytest.raises(QuotaExceededError, match="is paused until") as caught:
        await directory.send(message("bob@contoso.com"))
    assert 1_800_003_600 == caught.value.resets_at
    assert attempts == len(channel("team").attempts)
    clock.advance(3600)
    await directory.send(message("bob@contoso.com"))
    assert "ok" == directory.route("bob@contoso.com").state


async def test_a_transient_failure_is_retried_by_the_directory_policy(make_directory: MakeDirectory) -> None:
    policy = RetryPolicy(attempts=3, initial=0.0, jitter=False)
    directory = await make_directory(retry=policy, clock=VirtualClock())
    await directory.connect("sales", TEAM, shared=True)
    channel("team").fail_next(TransientError("421 try later"), times=2)
    result = await directory.send(message("bob@contoso.com"))
    assert 3 == result.attempts
    assert "ok" == directory.route("bob@contoso.com").state


async def test_disconnect_removes_the_entry_and_closes_its_channel(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    entry = await directory.connect("alice", ALICE)
    await directory.send(message(), owner="alice")
    assert await directory.disconnect(entry.id)
    assert channel("alice").closed
    assert not await directory.disconnect(entry.id)
    with pytest.raises(SenderNotAllowedError):
        await directory.send(message(), owner="alice")


# -- channel_for (the outbox's entry point) -----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["60", True, -1, float("nan")])
async def test_channel_for_refuses_a_max_wait_the_constructor_refuses(
    make_directory: MakeDirectory, bad: object
) -> None:
    """channel_for(max_wait=) is checked as the directory's own max_wait is: "60" is not 60 seconds."""
    directory = await make_directory()
    await directory.connect("sales", "dirtest://team?domains=contoso.com", shared=True)
    with pytest.raises(ConfigurationError, match="max_wait must be a number of seconds"):
        await directory.channel_for(message("bob@contoso.com"), max_wait=bad)  # type: ignore[arg-type]


async def test_channel_for_with_no_wait_raises_at_once_when_the_budget_is_spent(
    make_directory: MakeDirectory,
) -> None:
    clock = VirtualClock()
    directory = await make_directory(clock=clock, max_wait=3600.0)
    await directory.connect("sales", "dirtest://team?domains=contoso.com&rate=1/60", shared=True)
    sender = await directory.channel_for(message("bob@contoso.com"), max_wait=0, retry=False)
    await sender.send(message("bob@contoso.com"))
    with pytest.raises(QuotaExceededError) as caught:
        await sender.send(message("bob@contoso.com"))
    assert caught.value.retry_after == pytest.approx(60.0)
    assert 0.0 == clock.now()  # nothing waited
    assert "ok" == directory.route("bob@contoso.com").state  # our budget, not the provider's quota


async def test_two_owners_of_one_shared_key_share_one_budget(make_directory: MakeDirectory) -> None:
    directory = await make_directory(clock=VirtualClock())
    # Each team connected the same key for itself: two entries, one credential, one budget.
    url = "dirtest://team?domains=contoso.com&rate=1/60"
    sales = await directory.connect("sales", url)
    support = await directory.connect("support", url)
    assert sales.id != support.id
    to_sales = await directory.channel_for(message("bob@contoso.com"), owner="sales", max_wait=0)
    to_support = await directory.channel_for(message("bob@contoso.com"), owner="support", max_wait=0)
    assert to_sales is not to_support
    assert to_sales.credential_id == to_support.credential_id  # type: ignore[attr-defined]
    assert not to_sales.idempotent  # type: ignore[attr-defined]
    await to_sales.send(message("bob@contoso.com"))
    with pytest.raises(QuotaExceededError):
        await to_support.send(message("bob@contoso.com"))


async def test_entries_can_be_listed_by_owner(make_directory: MakeDirectory) -> None:
    directory = await make_directory()
    await directory.connect("alice", ALICE)
    await directory.connect("bob", BOB)
    assert ["bob"] == [e.owner for e in await directory.entries(owner="bob")]


# -- secrets ------------------------------------------------------------------------------------------------


async def test_a_second_directory_rebuilds_the_channel_from_the_stored_secrets(
    make_shared_directory: MakeDirectory,
) -> None:
    make_directory = make_shared_directory
    first = await make_directory()
    await first.connect("alice", ALICE, password=sentinels.PASSWORD, send_as=None)
    second = await make_directory()
    result = await second.send(message(), owner="alice")
    assert "dirtest:alice" == result.channel


async def test_rotate_secrets_lets_the_old_key_go(
    make_shared_directory: MakeDirectory, secret_key: str
) -> None:
    make_directory = make_shared_directory
    old = await make_directory()
    await old.connect("alice", ALICE, password=sentinels.PASSWORD)
    new_key = Fernet.generate_key().decode()
    both = await make_directory(secrets=[new_key, secret_key])
    assert 1 == await both.rotate_secrets()
    only_new = await make_directory(secrets=new_key)
    await only_new.send(message(), owner="alice")
    only_old = await make_directory(secrets=secret_key)
    with pytest.raises(ConfigurationError, match="None of the secret keys decrypts"):
        await only_old.send(message(), owner="alice")


async def test_an_entry_disconnected_or_rewritten_elsewhere_is_closed_and_rebuilt_here(
    make_shared_directory: MakeDirectory,
) -> None:
    here = await make_shared_directory()
    elsewhere = await make_shared_directory()
    await here.connect("sales", TEAM, shared=True)
    await here.send(message("bob@contoso.com"))
    built_here = channel("team")
    await elsewhere.rotate_secrets()  # every secret rewritten by another directory object
    await here.entries()  # this one reads the change now (its watcher would within refresh_interval)
    await asyncio.sleep(0)
    assert built_here.closed  # the old channel was closed...
    await here.send(message("bob@contoso.com"))
    assert channel("team") is not built_here  # ...and a new one built from the rewritten secrets
    (entry,) = await elsewhere.entries()
    assert await elsewhere.disconnect(entry.id)
    assert [] == await here.entries()
    await asyncio.sleep(0)
    assert channel("team").closed
    with pytest.raises(SenderNotAllowedError):
        await here.channel_for(message("bob@contoso.com"))
