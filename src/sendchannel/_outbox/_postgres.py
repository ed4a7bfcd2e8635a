"""The outbox in PostgreSQL: a fleet of workers, ``FOR UPDATE SKIP LOCKED`` claims, LISTEN/NOTIFY wake-ups.

``put`` may run inside the application's own transaction (``connection=``, a psycopg ``AsyncConnection``):
the rows and the NOTIFY become visible only if that transaction commits, so mail goes out only for
business changes that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sendchannel._database._base import Transaction
from sendchannel._database._postgresql import _convert
from sendchannel._outbox._sql import TABLE, SqlOutboxStore
from sendchannel.errors import ConfigurationError

__all__ = ["CHANNEL", "PostgresOutboxStore"]

logger = logging.getLogger("sendchannel.outbox")

#: The LISTEN/NOTIFY channel on which ``put`` wakes the workers.
CHANNEL = "sendchannel_outbox"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"

#: A ``put_many`` of at least this many items that adds more than a fifth of the table's rows brings the
#: planner's statistics up to date at once. Autovacuum would, within a minute or so; meanwhile a claim
#: planned for a small table sorts every due item (10 ms a claim with 20,000 due, 50 with 100,000) where it
#: should read the first few of its index.
ANALYZE_AFTER = 1000


class PostgresOutboxStore(SqlOutboxStore):
    """Items in PostgreSQL; workers sleep on LISTEN and wake when items arrive (a slow poll backs it up)."""

    poll_interval = 5.0

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._listener: asyncio.Task[None] | None = None
        self._connection: Any = None

    async def _notify(self, tx: Transaction) -> None:
        await tx.execute(_NOTIFY)

    async def _statistics_stale(self, tx: Transaction, inserted: int) -> bool:
        if inserted < ANALYZE_AFTER:
            return False
        rows = await tx.execute("SELECT reltuples FROM pg_class WHERE oid = CAST(? AS regclass)", [TABLE])
        known = max(0.0, float(rows[0][0])) if rows else 0.0  # -1: never analysed
        return inserted > known / 5

    async def _analyze(self) -> None:
        # The items are committed: nothing here may make the put look failed (and be repeated). A role that
        # does not own the table gets a warning and no statistics; autovacuum will see to them.
        try:
            await self._execute(f"ANALYZE {TABLE}")
        except Exception as exc:  # noqa: BLE001
            logger.info("outbox: could not ANALYZE %s after a large put (%s)", TABLE, exc)

    async def _insert_on(self, connection: Any, statements: list[tuple[str, list[object]]]) -> list[int]:
        import psycopg

        if isinstance(connection, psycopg.Connection):
            # A blocking connection (Django's, on psycopg 3): a few short statements, run where we are.
            ids: list[int] = []
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(_convert(sql), params)
                    ids += sorted(int(row[0]) for row in cursor.fetchall())
                cursor.execute(_NOTIFY)
            return ids
        if not isinstance(connection, psycopg.AsyncConnection):
            raise ConfigurationError(
                "connection= takes the psycopg 3 connection of the application's transaction (an "
                f"AsyncConnection, or a Connection such as Django's), got {type(connection).__name__}"
            )
        ids = []
        async with connection.cursor() as cursor:
            for sql, params in statements:
                await cursor.execute(_convert(sql), params)
                ids += sorted(int(row[0]) for row in await cursor.fetchall())
            await cursor.execute(_NOTIFY)
        return ids

    async def wait_for_work(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="sendchannel outbox LISTEN")
        await super().wait_for_work()

    async def _listen(self) -> None:
        """Hold one connection on LISTEN and wake the workers on each notification."""
        import psycopg

        dsn = self.database.url.dsn
        assert dsn is not None
        try:
            self._connection = connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            await connection.execute(f"LISTEN {CHANNEL}")
            async for _ in connection.notifies():
                self._arrived.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the workers' polling goes on without notifications
            logger.warning("outbox: LISTEN on %s stopped (%s); workers poll instead", self.where, exc)

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        await super().aclose()
