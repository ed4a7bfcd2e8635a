"""The Outbox with a ChannelDirectory: each message through its sender's entry, inside that entry's budget."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from sendchannel import (
    AuthenticationError,
    ChannelDirectory,
    CredentialScope,
    Limits,
    Outbox,
    Rate,
    SenderNotAllowedError,
)
from sendchannel.testing import memory_channel
from sendchannel.testing._fake import _reset_memory_channels
from tests.outbox.helpers import message


@pytest.fixture(autouse=True)
def _empty_memory_channels() -> Iterator[None]:
    _reset_memory_channels()
    yield
    memory_channel("outbox-alice").limits = Limits()
    _reset_memory_channels()


async def _directory() -> ChannelDirectory:
    """A directory (in memory) with Alice's mailbox and the sales team's shared per-domain key."""
    directory = ChannelDirectory("memory://", secrets=Fernet.generate_key())
    await directory.__aenter__()
    alice = CredentialScope.per_address("alice@contoso.com")
    # Alice's mailbox allows 2 messages an hour (set on the process-wide fake the directory's URL names).
    memory_channel("outbox-alice").limits = Limits(rates=(Rate(2, 3600),))
    await directory.connect("alice", "memory://outbox-alice", scope=alice)
    team = CredentialScope.per_domain("contoso.com")
    await directory.connect("sales", "memory://outbox-team", shared=True, scope=team)
    return directory


def test_each_message_goes_through_its_senders_entry(database: str) -> None:
    """Alice's mail goes through her mailbox, Carol's through the team's key; nobody's is refused at put."""

    async def main() -> None:
        directory = await _directory()
        try:
            async with Outbox(database, directory=directory) as outbox:
                await outbox.put(message(1, sender="alice@contoso.com"), owner="alice")
                await outbox.put(message(2, sender="carol@contoso.com"), owner="carol")
                with pytest.raises(SenderNotAllowedError):
                    await outbox.put(message(3, sender="eve@elsewhere.org"), owner="eve")
                await asyncio.wait_for(outbox.run(until_empty=True), 30)
                assert ["m1"] == [m.subject for m in memory_channel("outbox-alice").outbox]
                assert ["m2"] == [m.subject for m in memory_channel("outbox-team").outbox]
                assert {"sent": 2} == {k: v for k, v in (await outbox.counts()).items() if v}
        finally:
            await directory.aclose()

    asyncio.run(main())


def test_a_spent_entry_budget_defers_its_items_without_an_attempt_and_holds_up_no_one(database: str) -> None:
    """Alice's Rate(2, 1 h): two go, the rest wait for her next permit; the team's mail goes meanwhile."""

    async def main() -> None:
        directory = await _directory()
        try:
            async with Outbox(database, directory=directory) as outbox:
                before = datetime.datetime.now(datetime.UTC)
                alices = [message(i, sender="alice@contoso.com") for i in range(5)]
                mine = await outbox.put_many(alices, owner="alice")
                carols = [message(i, sender="carol@contoso.com") for i in range(5)]
                team = await outbox.put_many(carols, owner="carol")
                await asyncio.wait_for(outbox.run(until_empty=True), 30)
                alice_items = [await outbox.get(item.id) for item in mine]
                assert ["queued"] * 3 + ["sent"] * 2 == sorted(item.status for item in alice_items)
                for item in alice_items:
                    if item.status == "queued":
                        assert 0 == item.attempts
                        assert item.next_attempt_at >= before + datetime.timedelta(seconds=3500)
                assert ["sent"] * 5 == [(await outbox.get(item.id)).status for item in team]
        finally:
            await directory.aclose()

    asyncio.run(main())


def test_refused_credentials_fail_the_item_and_say_who_must_reconnect(database: str) -> None:
    """An AuthenticationError from the provider fails the item with the directory's reason."""

    async def main() -> None:
        directory = await _directory()
        try:
            memory_channel("outbox-alice").fail_next(AuthenticationError("535 5.7.3 password rejected"))
            async with Outbox(database, directory=directory) as outbox:
                item = await outbox.put(message(1, sender="alice@contoso.com"), owner="alice")
                await asyncio.wait_for(outbox.run(until_empty=True), 30)
                done = await outbox.get(item.id)
                assert "failed" == done.status
                assert done.error is not None
                assert done.error.startswith("AuthenticationError: 535 5.7.3")
        finally:
            await directory.aclose()

    asyncio.run(main())
