"""PostgreSQL outbox: enqueue inside the application's transaction, LISTEN/NOTIFY wake-ups, many workers."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from sendchannel import ConfigurationError, Outbox
from tests.outbox.helpers import CountingChannel, message


def test_put_inside_the_applications_transaction_exists_only_if_it_commits(postgresql_url: str) -> None:
    """put(connection=) writes in the caller's transaction: rolled back, no item; committed, sent."""

    async def main() -> None:
        channel = CountingChannel()
        async with Outbox(postgresql_url, channel=channel) as outbox:
            async with await psycopg.AsyncConnection.connect(postgresql_url) as connection:
                await connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
                await connection.commit()
                async with connection.transaction(force_rollback=True):
                    await connection.execute("INSERT INTO orders VALUES (1)")
                    await outbox.put(message(1), connection=connection)
                assert 0 == sum((await outbox.counts()).values())
                async with connection.transaction():
                    await connection.execute("INSERT INTO orders VALUES (2)")
                    item = await outbox.put(message(2), connection=connection)
                    assert await outbox.get(item.id) is None  # not committed yet: other sessions see nothing
            await asyncio.wait_for(outbox.run(until_empty=True), 30)
            assert ["m2"] == [m.subject for m in channel.outbox]
            assert "sent" == (await outbox.get(item.id)).status

    asyncio.run(main())


def test_connection_is_refused_on_sqlite(tmp_path: object) -> None:
    """connection= on a SQLite outbox is a ConfigurationError that says why."""

    async def main() -> None:
        async with Outbox(f"sqlite:///{tmp_path}/o.db", channel=CountingChannel()) as outbox:
            with pytest.raises(ConfigurationError, match="PostgreSQL"):
                await outbox.put(message(1), connection=object())
            assert 0 == sum((await outbox.counts()).values())

    asyncio.run(main())


async def _listening(url: str) -> None:
    """Return once a session of this database is LISTENing on the outbox's channel."""
    from sendchannel._outbox._postgres import CHANNEL

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        while True:
            cursor = await connection.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
                [f"LISTEN {CHANNEL}"],
            )
            if await cursor.fetchone():
                return
            await asyncio.sleep(0.05)


async def _asleep_after(url: str, item_id: int) -> None:
    """Return once the item is finished and a worker asked what is pending after that: the worker's last
    look before it waits (seen in the server's pg_stat_activity)."""
    from sendchannel._outbox._sql import TABLE

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        while True:
            cursor = await connection.execute(
                f"SELECT 1 FROM {TABLE} i, pg_stat_activity a WHERE i.id = %s AND i.finished_at IS NOT NULL "
                "AND a.datname = current_database() AND a.state = 'idle' "
                f"AND a.query LIKE 'SELECT (SELECT 1 FROM {TABLE} %%' "
                "AND extract(epoch FROM a.query_start) >= i.finished_at",
                [item_id],
            )
            if await cursor.fetchone():
                return
            await asyncio.sleep(0.05)


def test_a_put_from_another_process_wakes_a_listening_worker_at_once(postgresql_url: str) -> None:
    """A worker asleep on LISTEN sends an item put through another connection well before its poll."""

    async def main() -> None:
        channel = CountingChannel()
        async with (
            Outbox(postgresql_url, channel=channel) as worker_side,
            Outbox(postgresql_url, channel=CountingChannel()) as producer,
        ):
            assert worker_side.store.poll_interval >= 5.0  # type: ignore[attr-defined]
            worker = asyncio.create_task(worker_side.run())
            await asyncio.wait_for(_listening(postgresql_url), 30)
            # A first item, so the worker has claimed, sent, recorded, found nothing more and gone to sleep.
            first = await producer.put(message(1))
            await asyncio.wait_for(_asleep_after(postgresql_url, first.id), 30)
            started = time.monotonic()
            await producer.put(message(2))
            await asyncio.wait_for(channel.wait_until(lambda: len(channel.outbox) == 2), 10)
            elapsed = time.monotonic() - started
            worker_side.stop()
            await asyncio.wait_for(worker, 30)
            assert 2 == len(channel.outbox)
            assert elapsed < 2.5, f"took {elapsed:.2f} s: the notification did not wake the worker"

    asyncio.run(main())


def test_many_workers_share_the_queue_and_send_each_item_once(postgresql_url: str) -> None:
    """Four workers (four Outbox objects, own connections) claim with SKIP LOCKED: each item goes once."""

    async def main() -> None:
        channel = CountingChannel(latency=0.005)
        outboxes = [Outbox(postgresql_url, channel=channel) for _ in range(4)]
        try:
            await outboxes[0].put_many([message(index) for index in range(300)])
            await asyncio.wait_for(
                asyncio.gather(*(o.run(concurrency=4, until_empty=True) for o in outboxes)), 120
            )
            subjects = [m.subject for m in channel.outbox]
            assert 300 == len(subjects)
            assert 300 == len(set(subjects))
            assert {"sent": 300} == {k: v for k, v in (await outboxes[0].counts()).items() if v}
        finally:
            for outbox in outboxes:
                await outbox.aclose()

    asyncio.run(main())


def test_put_on_a_blocking_connection_joins_its_transaction(postgresql_url: str) -> None:
    """A blocking psycopg Connection (Django's kind) works too: the item follows its transaction."""

    async def main() -> None:
        channel = CountingChannel()
        async with Outbox(postgresql_url, channel=channel) as outbox:
            with psycopg.connect(postgresql_url) as connection:
                with connection.transaction(force_rollback=True):
                    await outbox.put(message(1), connection=connection)
                with connection.transaction():
                    kept = await outbox.put(message(2), connection=connection)
            await asyncio.wait_for(outbox.run(until_empty=True), 30)
            assert ["m2"] == [m.subject for m in channel.outbox]
            assert "sent" == (await outbox.get(kept.id)).status

    asyncio.run(main())


def test_a_large_put_brings_the_planners_statistics_up_to_date(postgresql_url: str) -> None:
    """put_many of ANALYZE_AFTER items or more into a table it outgrows runs ANALYZE (so a claim reads the
    first rows of its index instead of sorting every due item); a small put does not."""
    from sendchannel._outbox._postgres import ANALYZE_AFTER
    from sendchannel._outbox._sql import TABLE

    async def rows_the_planner_knows() -> float:
        async with await psycopg.AsyncConnection.connect(postgresql_url, autocommit=True) as connection:
            cursor = await connection.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [TABLE])
            row = await cursor.fetchone()
            assert row is not None
            return float(row[0])

    async def main() -> None:
        async with Outbox(postgresql_url, channel=CountingChannel()) as outbox:
            await outbox.put_many([message(index) for index in range(10)])
            assert await rows_the_planner_knows() <= 0  # -1: never analysed (10 rows are not worth it)
            await outbox.put_many([message(index) for index in range(ANALYZE_AFTER)])
            assert ANALYZE_AFTER + 10 == await rows_the_planner_knows()

    asyncio.run(main())
