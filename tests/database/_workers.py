"""Functions run in other processes by the database tests (importable, for multiprocessing's spawn)."""

from __future__ import annotations

import asyncio

from sendchannel._database import Migration, Schema, Transaction, open_database

COUNTER = Schema(
    "counter_test",
    [
        Migration.same(
            "CREATE TABLE sendchannel_counter_test (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO sendchannel_counter_test (name, value) VALUES ('hits', 0)",
        )
    ],
)


def increment(url: str, times: int) -> int:
    """Read the counter then write it plus one, ``times`` times, each in one write transaction."""

    async def main() -> int:
        database = open_database(url)
        try:
            await COUNTER.ensure(database)

            async def bump(tx: Transaction) -> None:
                if tx.dialect == "postgresql":
                    await tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                rows = await tx.execute("SELECT value FROM sendchannel_counter_test WHERE name = 'hits'")
                await tx.execute(
                    "UPDATE sendchannel_counter_test SET value = ? WHERE name = ?", (rows[0][0] + 1, "hits")
                )

            for _ in range(times):
                await database.run(bump)
            return times
        finally:
            await database.aclose()

    return asyncio.run(main())
