"""The directory across real processes, on a SQLite file and on PostgreSQL: health set by one process is
seen by another, and processes that connect and route at once leave a consistent directory."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest

from sendchannel import ChannelDirectory, Message
from sendchannel.errors import AuthenticationError
from tests.directory import _workers, scheme

pytestmark = pytest.mark.slow


def _spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


async def test_a_second_process_sees_needs_reconnect_set_by_the_first(
    file_database: str, secret_key: str
) -> None:
    message = Message(sender="alice@contoso.com", to=["c@example.net"], subject="s", text="t")
    async with ChannelDirectory(file_database, secrets=secret_key) as directory:
        await directory.connect("alice", "dirtest://alice?address=alice@contoso.com")
        await directory.send(message, owner="alice")  # this process's channel is built and cached
        with _spawn().Pool(1) as pool:
            arguments = (file_database, secret_key)
            outcome = await asyncio.to_thread(pool.apply, _workers.refuse_alice, arguments)
        assert "refused" == outcome
        # The other process stored the state; this one sees it at its next check (every 0.5 s).
        deadline = time.monotonic() + 10
        while directory.route("alice@contoso.com", owner="alice").state != "needs_reconnect":
            assert time.monotonic() < deadline, "the state change never reached this process"
            await asyncio.sleep(0.05)
        entry = directory.route("alice@contoso.com", owner="alice")
        assert "alice must reconnect it" in (entry.reason or "")
        attempts = len(scheme.channel("alice").attempts)
        with pytest.raises(AuthenticationError, match="needs reconnecting"):
            await directory.send(message, owner="alice")
        assert attempts == len(scheme.channel("alice").attempts)  # not sent to the provider


async def test_processes_connecting_and_routing_at_once_leave_a_consistent_directory(
    file_database: str, secret_key: str
) -> None:
    processes, rounds = 4, 3
    with _spawn().Pool(processes) as pool:
        results = await asyncio.to_thread(
            pool.starmap,
            _workers.connect_and_route,
            [(file_database, secret_key, number, rounds) for number in range(processes)],
        )
    async with ChannelDirectory(file_database, secrets=secret_key) as directory:
        entries = await directory.entries()
    by_owner = sorted((entry.owner, entry.scope.identities) for entry in entries)
    contested = [owner for owner, identities in by_owner if identities == ("contested@contoso.com",)]
    # The contested mailbox belongs to exactly one owner; whoever got it first kept it (its reconnects
    # replaced its own entry), and every other attempt was refused.
    assert 1 == len(contested)
    winner = int(contested[0][1:])
    assert rounds == results[winner]["contested"]
    assert processes * rounds == sum(r["contested"] + r["refused"] for r in results)
    # One entry for each user's mailbox and one for the team: reconnects replaced, never duplicated.
    assert [f"user{n}" for n in range(processes)] == sorted(o for o, _ in by_owner if o.startswith("user"))
    assert 1 == sum(1 for owner, _ in by_owner if owner == "team")
    assert len(entries) == processes + 2
    assert len({entry.id for entry in entries}) == len(entries)
