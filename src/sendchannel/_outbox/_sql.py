"""The outbox on the shared database layer: one SQL store for SQLite and PostgreSQL.

Claims are safe across processes and hosts: on PostgreSQL the claim picks its rows with
``FOR UPDATE SKIP LOCKED`` (workers never wait for each other's rows, nor take the same one); on SQLite
every write transaction holds the file's write lock (``BEGIN IMMEDIATE``), so one claim runs at a time and
no two workers lease one item. Every step is one short transaction, one round trip to PostgreSQL (a
single statement in autocommit, or a pipelined batch), so the cost of a message is a fraction of two:
claim (shared by the items claimed together) and record (the marks and outcomes a worker makes while its
previous record is being written, together).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from sendchannel._database import Database, Migration, Schema, Transaction, open_database
from sendchannel._outbox._codec import decode_result
from sendchannel._outbox._item import FINISHED, OutboxItem, Status, from_timestamp
from sendchannel._outbox._store import (
    RESENT_NOTE,
    UNKNOWN_ERROR,
    Claimed,
    Marking,
    NewItem,
    Settlement,
    Summary,
)

__all__ = ["SCHEMA", "SqlOutboxStore", "TABLE"]

T = TypeVar("T")

TABLE = "sendchannel_outbox_items"

_COLUMNS = """
    message_id TEXT NOT NULL,
    owner TEXT,
    status TEXT NOT NULL DEFAULT 'queued',
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    send_at {real} NOT NULL,
    next_attempt_at {real} NOT NULL,
    created_at {real} NOT NULL,
    first_attempt_at {real},
    finished_at {real},
    claimed_by TEXT,
    lease_until {real},
    credential TEXT,
    idempotent INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    envelope TEXT NOT NULL,
    rendered {blob} NOT NULL
"""

_INDEXES = (
    # The claim: due items by priority, then age.
    f"CREATE INDEX sendchannel_outbox_claim ON {TABLE} (priority DESC, next_attempt_at, id) "
    "WHERE status = 'queued'",
    # When the next item comes due.
    f"CREATE INDEX sendchannel_outbox_due ON {TABLE} (next_attempt_at) WHERE status = 'queued'",
    # Leases: the claims and sends in progress, and the ones whose worker died.
    f"CREATE INDEX sendchannel_outbox_leases ON {TABLE} (lease_until) WHERE lease_until IS NOT NULL",
    # purge, and the CLI's unknown items.
    f"CREATE INDEX sendchannel_outbox_finished ON {TABLE} (finished_at) WHERE finished_at IS NOT NULL",
    f"CREATE INDEX sendchannel_outbox_owner ON {TABLE} (owner, status)",
)

SCHEMA = Schema(
    "outbox",
    [
        Migration(
            sqlite=(
                f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                + _COLUMNS.format(real="REAL", blob="BLOB")
                + ")",
                *_INDEXES,
            ),
            postgresql=(
                f"CREATE TABLE {TABLE} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                + _COLUMNS.format(real="DOUBLE PRECISION", blob="BYTEA")
                + ")",
                *_INDEXES,
            ),
        )
    ],
)

_ITEM_COLUMNS = "id, message_id, owner, status, attempts, send_at, next_attempt_at, error, result"

_FINISHED = ", ".join(f"'{name}'" for name in FINISHED)

# Rows a page of items() reads, and rows one INSERT statement carries.
_PAGE = 500
_INSERT_CHUNK = 500


def _item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        id=int(row[0]),
        message_id=row[1],
        owner=row[2],
        status=row[3],
        attempts=int(row[4]),
        send_at=from_timestamp(float(row[5])),
        next_attempt_at=from_timestamp(float(row[6])),
        error=row[7],
        result=decode_result(row[8]),
    )


# PostgreSQL takes at most 65,535 parameters a statement; a record() with more goes as a pipeline.
_MAX_PARAMETERS = 30_000


def _parameters(statements: Sequence[tuple[str, Sequence[object]]]) -> int:
    return sum(len(params) for _, params in statements)


def _one_statement(
    statements: Sequence[tuple[str, Sequence[object]]], returning: int
) -> tuple[str, list[object]]:
    """PostgreSQL: ``statements`` (UPDATEs of distinct rows) as one statement, each a WITH clause; it returns
    the ids that the first ``returning`` of them return."""
    clauses = ", ".join(f"s{index} AS ({sql})" for index, (sql, _) in enumerate(statements))
    selects = " UNION ALL ".join(f"SELECT id FROM s{index}" for index in range(returning))  # noqa: S608
    params = [param for _, values in statements for param in values]
    return f"WITH {clauses} {selects or 'SELECT NULL WHERE FALSE'}", params


def _not_in(column: str, values: Collection[str]) -> tuple[str, list[str]]:
    if not values:
        return "", []
    marks = ", ".join("?" for _ in values)
    return f" AND ({column} IS NULL OR {column} NOT IN ({marks}))", list(values)


class SqlOutboxStore:
    """The outbox in SQLite or PostgreSQL, through ``sendchannel._database``."""

    #: Seconds between looks for new items when nothing wakes the worker sooner.
    poll_interval = 0.2

    def __init__(self, url: str) -> None:
        self.database: Database = open_database(url)
        #: Where the items are (the URL without its password).
        self.where = self.database.url.display
        self._arrived = asyncio.Event()

    async def setup(self) -> None:
        await SCHEMA.ensure(self.database)

    # Every call runs to its end even when the caller is cancelled (a worker being stopped), so an outcome
    # already decided is still recorded. (The database layer itself leaves the connection clean after a
    # cancellation; this is about not losing the write.) The caller still sees the cancellation at once.

    async def _execute(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return await asyncio.shield(asyncio.ensure_future(self.database.execute(sql, params)))

    async def _batch(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[list[Any]]:
        return await asyncio.shield(asyncio.ensure_future(self.database.batch(statements)))

    async def _run(self, body: Callable[[Transaction], Awaitable[T]], *, write: bool = True) -> T:
        return await asyncio.shield(asyncio.ensure_future(self.database.run(body, write=write)))

    # -- queueing -------------------------------------------------------------------------------------------

    def _insert_statements(self, items: Sequence[NewItem], now: float) -> list[tuple[str, list[object]]]:
        statements = []
        for start in range(0, len(items), _INSERT_CHUNK):
            chunk = items[start : start + _INSERT_CHUNK]
            values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
            params: list[object] = []
            for item in chunk:
                params += [
                    item.message_id,
                    item.owner,
                    item.priority,
                    item.send_at,
                    item.send_at,
                    now,
                    item.envelope,
                    item.rendered,
                ]
            statements.append(
                (
                    f"INSERT INTO {TABLE} (message_id, owner, priority, send_at, "  # noqa: S608 - fixed names
                    f"next_attempt_at, created_at, envelope, rendered) VALUES {values} RETURNING id",
                    params,
                )
            )
        return statements

    async def insert(self, items: Sequence[NewItem], *, connection: Any = None) -> list[int]:
        now = time.time()
        statements = self._insert_statements(items, now)
        if connection is not None:
            return await self._insert_on(connection, statements)

        async def body(tx: Transaction) -> tuple[list[int], bool]:
            ids: list[int] = []
            for sql, params in statements:
                rows = await tx.execute(sql, params)
                ids += sorted(int(row[0]) for row in rows)
            await self._notify(tx)
            return ids, await self._statistics_stale(tx, len(ids))

        ids, stale = await self._run(body)
        self._arrived.set()
        if stale:
            await self._analyze()
        return ids

    async def _insert_on(self, connection: Any, statements: list[tuple[str, list[object]]]) -> list[int]:
        from sendchannel.errors import ConfigurationError

        raise ConfigurationError(
            "connection= enqueues inside the application's own PostgreSQL transaction; this outbox is on "
            f"{self.where}. Leave connection= out (or use a postgresql:// outbox)."
        )

    async def _notify(self, tx: Transaction) -> None:
        """Tell the other workers that items arrived (PostgreSQL: NOTIFY, delivered at commit)."""

    async def _statistics_stale(self, tx: Transaction, inserted: int) -> bool:
        """Whether ``inserted`` new rows leave the query planner's statistics of the table out of date."""
        return False

    async def _analyze(self) -> None:
        """Bring the planner's statistics up to date."""

    # -- working --------------------------------------------------------------------------------------------

    async def claim(
        self, worker: str, limit: int, *, now: float, lease_until: float, exclude: Collection[str]
    ) -> list[Claimed]:
        skip, skip_params = _not_in("credential", exclude)
        locking = " FOR UPDATE SKIP LOCKED" if self.database.dialect == "postgresql" else ""
        sql = (
            f"UPDATE {TABLE} SET claimed_by = ?, lease_until = ? WHERE id IN ("  # noqa: S608 - fixed names
            f"SELECT id FROM {TABLE} WHERE status = 'queued' AND next_attempt_at <= ? "
            f"AND (lease_until IS NULL OR lease_until <= ?){skip} "
            f"ORDER BY priority DESC, next_attempt_at, id LIMIT ?{locking}) "
            "RETURNING id, owner, attempts, first_attempt_at, credential, rendered, envelope, priority, "
            "next_attempt_at"
        )
        rows = await self._execute(sql, [worker, lease_until, now, now, *skip_params, limit])
        rows.sort(key=lambda row: (-row[7], row[8], row[0]))
        return [
            Claimed(
                id=int(row[0]),
                owner=row[1],
                attempts=int(row[2]),
                first_attempt_at=None if row[3] is None else float(row[3]),
                credential=row[4],
                rendered=bytes(row[5]),
                envelope=row[6],
            )
            for row in rows
        ]

    async def record(
        self,
        worker: str,
        marks: Sequence[Marking],
        settlements: Sequence[Settlement],
        *,
        now: float,
        lease_until: float,
    ) -> set[int]:
        statements = self._mark_statements(worker, marks, now, lease_until)
        marking = len(statements)
        finished = [one for one in settlements if one.status != "queued"]
        for start in range(0, len(finished), _INSERT_CHUNK):
            statements.append(self._finish_statement(worker, finished[start : start + _INSERT_CHUNK], now))
        statements += [self._requeue_statement(worker, one) for one in settlements if one.status == "queued"]
        if not statements:
            return set()
        if self.database.dialect == "postgresql" and _parameters(statements) <= _MAX_PARAMETERS:
            # One statement of data-modifying WITH clauses: atomic, one round trip, and about a quarter of the
            # client's CPU of a pipelined transaction (psycopg's pipeline costs ~450 us, a statement ~100).
            rows = await self._execute(*_one_statement(statements, marking))
            return {int(row[0]) for row in rows}
        # One transaction: one trip to SQLite's thread; on PostgreSQL, for a batch too large for one
        # statement's parameters (a worker with a concurrency of thousands), a pipeline.
        results = await self._batch(statements)
        return {int(row[0]) for rows in results[:marking] for row in rows}

    @staticmethod
    def _mark_statements(
        worker: str, marks: Sequence[Marking], now: float, lease_until: float
    ) -> list[tuple[str, Sequence[object]]]:
        """One UPDATE a channel (usually one in all) that marks its items sending."""
        groups: dict[tuple[bool, str | None], list[int]] = {}
        for mark in marks:
            groups.setdefault((mark.idempotent, mark.credential), []).append(mark.id)
        statements: list[tuple[str, Sequence[object]]] = []
        for (idempotent, credential), ids in groups.items():
            places = ", ".join("?" for _ in ids)
            statements.append(
                (
                    f"UPDATE {TABLE} SET status = 'sending', attempts = attempts + 1, "  # noqa: S608
                    "first_attempt_at = COALESCE(first_attempt_at, ?), lease_until = ?, idempotent = ?, "
                    f"credential = ? WHERE claimed_by = ? AND status = 'queued' AND id IN ({places}) "
                    "RETURNING id",
                    [now, lease_until, int(idempotent), credential, worker, *ids],
                )
            )
        return statements

    @staticmethod
    def _requeue_statement(worker: str, one: Settlement) -> tuple[str, list[object]]:
        """Back to the queue (a retry, a spent budget), with the attempt counted and the error kept."""
        return (
            f"UPDATE {TABLE} SET status = 'queued', attempts = ?, error = ?, "  # noqa: S608 - fixed names
            "next_attempt_at = COALESCE(?, next_attempt_at), credential = COALESCE(?, credential), "
            "claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ? "
            f"AND status NOT IN ({_FINISHED})",
            [one.attempts, one.error, one.next_attempt_at, one.credential, one.id, worker],
        )

    @staticmethod
    def _finish_statement(worker: str, rows: Sequence[Settlement], now: float) -> tuple[str, list[object]]:
        """One UPDATE that finishes many items (sent, failed, unknown), each with its own values."""
        values = ", ".join(
            "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS TEXT), "
            "CAST(? AS TEXT))"
            for _ in rows
        )
        params: list[object] = []
        for one in rows:
            params += [one.id, one.status, one.attempts, one.error, one.result, one.credential]
        return (
            f"WITH v(id, status, attempts, error, result, credential) AS (VALUES {values}) "  # noqa: S608
            f"UPDATE {TABLE} SET status = v.status, attempts = v.attempts, error = v.error, "
            f"result = v.result, credential = COALESCE(v.credential, {TABLE}.credential), finished_at = ?, "
            f"lease_until = NULL FROM v WHERE {TABLE}.id = v.id AND {TABLE}.claimed_by = ? "
            f"AND {TABLE}.status NOT IN ({_FINISHED})",
            [*params, now, worker],
        )

    async def release(
        self, item_id: int, worker: str, *, next_attempt_at: float | None, credential: str | None
    ) -> None:
        await self._execute(
            f"UPDATE {TABLE} SET claimed_by = NULL, lease_until = NULL, "  # noqa: S608 - fixed names
            "next_attempt_at = COALESCE(?, next_attempt_at), credential = COALESCE(?, credential) "
            "WHERE id = ? AND claimed_by = ? AND status = 'queued'",
            [next_attempt_at, credential, item_id, worker],
        )

    async def expire(self, now: float) -> int:
        async def body(tx: Transaction) -> int:
            rows = await tx.execute(
                f"UPDATE {TABLE} SET "  # noqa: S608 - fixed names
                "status = CASE WHEN idempotent = 1 THEN 'queued' ELSE 'unknown' END, "
                "error = CASE WHEN idempotent = 1 THEN ? ELSE ? END, "
                "finished_at = CASE WHEN idempotent = 1 THEN NULL ELSE ? END, "
                "claimed_by = NULL, lease_until = NULL "
                "WHERE status = 'sending' AND lease_until IS NOT NULL AND lease_until <= ? RETURNING id",
                [RESENT_NOTE, UNKNOWN_ERROR, now, now],
            )
            if rows:
                await self._notify(tx)
            return len(rows)

        return await self._run(body)

    async def pending(self, now: float) -> tuple[int, int, float | None]:
        # One statement, one round trip: is anything due, is anything leased, when is the next one due.
        sql = (
            f"SELECT (SELECT 1 FROM {TABLE} WHERE status = 'queued' "  # noqa: S608 - fixed names
            "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) LIMIT 1), "
            f"(SELECT 1 FROM {TABLE} WHERE lease_until > ? AND status IN ('queued', 'sending') LIMIT 1), "
            f"(SELECT next_attempt_at FROM {TABLE} WHERE status = 'queued' "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt_at LIMIT 1)"
        )
        ((due, leased, nxt),) = await asyncio.shield(
            asyncio.ensure_future(self.database.execute(sql, [now, now, now, now], write=False))
        )
        return int(due or 0), int(leased or 0), None if nxt is None else float(nxt)

    # -- where things stand ---------------------------------------------------------------------------------

    async def get(self, item_id: int) -> OutboxItem | None:
        rows = await self._read(
            f"SELECT {_ITEM_COLUMNS} FROM {TABLE} WHERE id = ?",  # noqa: S608 - fixed names
            [item_id],
        )
        return _item(rows[0]) if rows else None

    async def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        # One statement alone: one round trip (autocommit on PostgreSQL), no writer waited for on SQLite.
        return await asyncio.shield(asyncio.ensure_future(self.database.execute(sql, params, write=False)))

    async def counts(self) -> dict[str, int]:
        rows = await self._read(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status", [])  # noqa: S608
        return {row[0]: int(row[1]) for row in rows}

    async def items(self, status: Status | None, owner: str | None) -> AsyncIterator[OutboxItem]:
        where = ""
        params: list[object] = []
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        if owner is not None:
            where += " AND owner = ?"
            params.append(owner)
        after = 0
        while True:
            rows = await self._read(
                f"SELECT {_ITEM_COLUMNS} FROM {TABLE} WHERE id > ?{where} "  # noqa: S608 - fixed names
                f"ORDER BY id LIMIT {_PAGE}",
                [after, *params],
            )
            for row in rows:
                yield _item(row)
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])

    async def cancel(self, item_id: int, now: float) -> bool:
        rows = await self._execute(
            f"UPDATE {TABLE} SET status = 'cancelled', finished_at = ?, claimed_by = NULL, "  # noqa: S608
            "lease_until = NULL WHERE id = ? AND status = 'queued' RETURNING id",
            [now, item_id],
        )
        return bool(rows)

    async def purge(self, before: float) -> int:
        async def body(tx: Transaction) -> int:
            # The count, not the ids: a purge may remove millions of rows.
            await tx.execute(
                f"DELETE FROM {TABLE} WHERE finished_at IS NOT NULL AND finished_at < ? "  # noqa: S608
                f"AND status IN ({_FINISHED})",
                [before],
            )
            return max(0, tx.rowcount)

        return await self._run(body)

    async def summary(self, now: float) -> Summary:
        async def body(tx: Transaction) -> Summary:
            rows = await tx.execute(
                f"SELECT owner, status, COUNT(*) FROM {TABLE} GROUP BY owner, status"  # noqa: S608
            )
            counts = {(row[0], row[1]): int(row[2]) for row in rows}
            oldest = await tx.execute(
                f"SELECT next_attempt_at FROM {TABLE} WHERE status = 'queued' "  # noqa: S608
                "ORDER BY next_attempt_at LIMIT 1"
            )
            due = await tx.execute(
                f"SELECT COUNT(*) FROM {TABLE} WHERE status = 'queued' AND next_attempt_at <= ?",  # noqa: S608
                [now],
            )
            unknown = await tx.execute(
                f"SELECT {_ITEM_COLUMNS} FROM {TABLE} WHERE status = 'unknown' "  # noqa: S608
                "ORDER BY id DESC LIMIT 50"
            )
            return Summary(
                counts, float(oldest[0][0]) if oldest else None, int(due[0][0]), [_item(r) for r in unknown]
            )

        return await self._run(body, write=False)

    async def wait_for_work(self) -> None:
        await self._arrived.wait()
        self._arrived = asyncio.Event()

    async def aclose(self) -> None:
        await self.database.aclose()
