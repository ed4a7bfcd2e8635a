"""The outbox stores' record(): marks and settlements of several items in one transaction, on every store."""

from __future__ import annotations

import asyncio
import time

import pytest

from sendchannel import Outbox
from sendchannel._outbox._store import Marking, Settlement
from sendchannel.testing import FakeChannel
from tests.outbox.helpers import message


def test_record_marks_and_settles_many_items_at_once_and_only_those_the_worker_holds(database: str) -> None:
    """One record() marks two items sending (attempts + 1, credential, idempotent kept), finishes one, puts
    one back in the queue, and leaves alone an item another worker holds and one already finished."""

    async def main() -> None:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            store = outbox.store
            ids = [item.id for item in await outbox.put_many([message(index) for index in range(6)])]
            now = time.time()
            lease = now + 60
            mine = {c.id for c in await store.claim("w1", 5, now=now, lease_until=lease, exclude=())}
            assert set(ids[:5]) == mine
            theirs = await store.claim("w2", 5, now=now, lease_until=lease, exclude=())
            assert [ids[5]] == [c.id for c in theirs]
            a, b, c, d, e = ids[:5]
            # c and d were handed over earlier; e was finished by this worker before.
            assert {c, d, e} == await store.record(
                "w1", [Marking(i, False, None) for i in (c, d, e)], [], now=now, lease_until=lease
            )
            await store.record("w1", [], [Settlement(e, "sent", 1, result=None)], now=now, lease_until=lease)

            marked = await store.record(
                "w1",
                [Marking(a, True, "cred-a"), Marking(b, False, "cred-b"), Marking(ids[5], False, None)],
                [
                    Settlement(c, "failed", 1, error="PermanentError: no"),
                    Settlement(d, "queued", 1, error="TransientError: later", next_attempt_at=now + 30),
                    Settlement(e, "failed", 1, error="too late"),
                ],
                now=now,
                lease_until=lease,
            )
            assert {a, b} == marked
            items = {i: await outbox.get(i) for i in ids}
            assert ("sending", 1) == (items[a].status, items[a].attempts)
            assert ("sending", 1) == (items[b].status, items[b].attempts)
            assert ("failed", "PermanentError: no") == (items[c].status, items[c].error)
            assert ("queued", 1, "TransientError: later") == (
                items[d].status,
                items[d].attempts,
                items[d].error,
            )
            assert abs(items[d].next_attempt_at.timestamp() - (now + 30)) < 0.01
            assert "sent" == items[e].status  # a finished item keeps its outcome
            assert ("queued", 0) == (items[ids[5]].status, items[ids[5]].attempts)  # w2's, not marked
            # d is back in the queue for anyone once due.
            assert [d] == [
                x.id for x in await store.claim("w3", 5, now=now + 31, lease_until=now + 90, exclude=())
            ]
            assert 2 == await store.expire(lease + 1)  # both leases ended: a (idempotent) back to the queue
            assert "queued" == (await outbox.get(a)).status
            assert "unknown" == (await outbox.get(b)).status

    asyncio.run(main())


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_record_with_more_parameters_than_one_postgresql_statement_takes(database: str) -> None:
    """Outcomes of 11,000 items at once (66,000 parameters; PostgreSQL takes 65,535 a statement), as a worker
    with a concurrency in the thousands writes them, are recorded all the same."""

    async def main() -> None:
        count = 11_000
        async with Outbox(database, channel=FakeChannel()) as outbox:
            store = outbox.store
            ids = [item.id for item in await outbox.put_many([message(index) for index in range(count)])]
            now = time.time()
            lease = now + 60
            assert count == len(await store.claim("w1", count, now=now, lease_until=lease, exclude=()))
            marks = [Marking(i, False, None) for i in ids]
            assert set(ids) == await store.record("w1", marks, [], now=now, lease_until=lease)
            settlements = [Settlement(i, "sent", 1, result=None) for i in ids]
            assert set() == await store.record("w1", [], settlements, now=now, lease_until=lease)
            assert {"sent": count} == {k: v for k, v in (await outbox.counts()).items() if v}

    asyncio.run(main())
