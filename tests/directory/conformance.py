"""The conformance kit for directory stores: what every store must do, run against each database.

Each check takes a fresh, empty store. ``test_store_conformance.py`` runs them all against memory://, a
SQLite file and a PostgreSQL database; a new store runs the same list.
"""

from __future__ import annotations

import attrs

from sendchannel._directory._entry import NEEDS_RECONNECT, OK, PAUSED, Record
from sendchannel._directory._store import DirectoryStore, MailboxTaken


def record(
    entry_id: str, owner: str, identity: str, *, mailbox: str | None = None, **changes: object,
) -> Record:
    """A record to store: per-address over ``mailbox`` when given, else per-domain over example.com."""
    base = Record(
        id=entry_id,
        owner=owner,
        url=f"dirtest://{entry_id}",
        scheme="dirtest",
        identity=identity,
        scope_kind="per-address" if mailbox else "per-domain",
        scope_identities=(mailbox,) if mailbox else ("example.com",),
        scope_provider="Office 365" if mailbox else None,
        shared=False,
        state=OK,
        reason=None,
        since=1000.0,
        paused_until=None,
        sequence=0,
        secret=b"ciphertext-" + entry_id.encode(),
    )
    return attrs.evolve(base, **changes)


async def connect_assigns_increasing_sequences_and_load_returns_oldest_first(store: DirectoryStore) -> None:
    first, _ = await store.connect(record("a", "alice", "i-a"))
    second, _ = await store.connect(record("b", "bob", "i-b"))
    assert first.sequence < second.sequence
    _, records = await store.load()
    assert ["a", "b"] == [r.id for r in records]
    assert first == records[0]
    assert b"ciphertext-a" == records[0].secret


async def the_same_owner_and_identity_replaces_the_entry(store: DirectoryStore) -> None:
    await store.connect(record("old", "alice", "office365://alice", mailbox="alice@contoso.com"))
    again = record("new", "alice", "office365://alice", mailbox="alice@contoso.com")
    new, replaced = await store.connect(again)
    assert replaced is not None
    assert "old" == replaced.id
    _, records = await store.load()
    assert [new] == records


async def a_mailbox_of_another_owner_is_taken(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "i-a", mailbox="alice@contoso.com"))
    taken: MailboxTaken | None = None
    try:
        await store.connect(record("b", "bob", "i-b", mailbox="ALICE@contoso.com"))
    except MailboxTaken as exc:
        taken = exc
    assert taken is not None, "a second owner got alice's mailbox"
    assert ("alice", "alice@contoso.com") == (taken.other.owner, taken.mailbox)
    _, records = await store.load()
    assert ["a"] == [r.id for r in records]


async def two_owners_may_hold_the_same_shared_identity(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "sparkpost://***@us/per-domain:example.com", shared=True))
    await store.connect(record("b", "sales", "sparkpost://***@us/per-domain:example.com", shared=True))
    _, records = await store.load()
    assert 2 == len(records)


async def set_state_returns_before_and_after_once(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "i-a"))
    changed = await store.set_state("a", NEEDS_RECONNECT, "refused", None, 2000.0)
    assert changed is not None
    before, after = changed
    assert (OK, NEEDS_RECONNECT, "refused", 2000.0) == (before.state, after.state, after.reason, after.since)
    assert await store.set_state("a", NEEDS_RECONNECT, "refused", None, 2001.0) is None
    paused = await store.set_state("a", PAUSED, "quota", 5000.0, 2002.0)
    assert paused is not None
    assert 5000.0 == paused[1].paused_until
    assert await store.set_state("missing", OK, None, None, 1.0) is None
    _, records = await store.load()
    assert (PAUSED, "quota", 5000.0) == (records[0].state, records[0].reason, records[0].paused_until)


async def a_secret_is_replaced_only_at_the_version_read(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "i-a"))
    assert 1 == await store.update_secret("a", b"v1", expected_version=0)
    assert await store.update_secret("a", b"stale", expected_version=0) is None
    _, records = await store.load()
    assert (b"v1", 1) == (records[0].secret, records[0].secret_version)


async def delete_returns_the_record_once(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "i-a"))
    removed = await store.delete("a")
    assert removed is not None
    assert "a" == removed.id
    assert await store.delete("a") is None
    assert [] == (await store.load())[1]


async def rotate_rewrites_every_secret(store: DirectoryStore) -> None:
    await store.connect(record("a", "alice", "i-a"))
    await store.connect(record("b", "bob", "i-b"))
    assert 2 == await store.rotate(lambda secret: secret.upper())
    _, records = await store.load()
    assert [b"CIPHERTEXT-A", b"CIPHERTEXT-B"] == [r.secret for r in records]


async def every_change_moves_the_generation(store: DirectoryStore) -> None:
    seen = [await store.generation()]
    await store.connect(record("a", "alice", "i-a"))
    seen.append(await store.generation())
    await store.set_state("a", NEEDS_RECONNECT, "refused", None, 1.0)
    seen.append(await store.generation())
    await store.update_secret("a", b"x", expected_version=0)
    seen.append(await store.generation())
    await store.rotate(lambda secret: secret)
    seen.append(await store.generation())
    await store.delete("a")
    seen.append(await store.generation())
    assert seen == sorted(set(seen))


CHECKS = [
    connect_assigns_increasing_sequences_and_load_returns_oldest_first,
    the_same_owner_and_identity_replaces_the_entry,
    a_mailbox_of_another_owner_is_taken,
    two_owners_may_hold_the_same_shared_identity,
    set_state_returns_before_and_after_once,
    a_secret_is_replaced_only_at_the_version_read,
    delete_returns_the_record_once,
    rotate_rewrites_every_secret,
    every_change_moves_the_generation,
]
