"""Where the directory keeps its entries: one store interface, on SQLite, PostgreSQL or memory://.

Every change bumps one counter (``sendchannel_directory_generation``), so a process checks whether its
cached entries are still current with one small read, and reloads them only after a change. Connecting
runs as one write transaction that holds the counter's row (SQLite ``BEGIN IMMEDIATE``; PostgreSQL
``SELECT ... FOR UPDATE``), so two processes that connect at once are serialised: the rule "a mailbox
belongs to one owner" and "the same owner's same credential replaces the old one" hold across processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from sendchannel._database import Database, Migration, Row, Schema, Transaction, open_database
from sendchannel._database._url import DatabaseURL
from sendchannel._directory._entry import Record, State
from sendchannel._scope import ScopeKind

__all__ = ["SCHEMA", "DirectoryStore", "MailboxTaken", "SqlDirectoryStore"]

_COLUMNS = (
    "id, owner, url, scheme, identity, scope_kind, scope_identities, scope_provider, shared, state, reason, "
    "since, paused_until, sequence, secret, secret_version"
)

SCHEMA = Schema(
    "directory",
    [
        Migration(
            sqlite=[
                """CREATE TABLE sendchannel_directory_entries (
                    id TEXT PRIMARY KEY, owner TEXT NOT NULL, url TEXT NOT NULL, scheme TEXT NOT NULL,
                    identity TEXT NOT NULL, scope_kind TEXT NOT NULL, scope_identities TEXT NOT NULL,
                    scope_provider TEXT, shared INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT,
                    since REAL NOT NULL, paused_until REAL, sequence INTEGER NOT NULL,
                    secret BLOB NOT NULL, secret_version INTEGER NOT NULL)""",
            ],
            postgresql=[
                """CREATE TABLE sendchannel_directory_entries (
                    id TEXT PRIMARY KEY, owner TEXT NOT NULL, url TEXT NOT NULL, scheme TEXT NOT NULL,
                    identity TEXT NOT NULL, scope_kind TEXT NOT NULL, scope_identities TEXT NOT NULL,
                    scope_provider TEXT, shared INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT,
                    since DOUBLE PRECISION NOT NULL, paused_until DOUBLE PRECISION, sequence BIGINT NOT NULL,
                    secret BYTEA NOT NULL, secret_version INTEGER NOT NULL)""",
            ],
        ),
        Migration.same(
            "CREATE UNIQUE INDEX sendchannel_directory_entries_owner_identity "
            "ON sendchannel_directory_entries (owner, identity)",
            "CREATE TABLE sendchannel_directory_generation (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO sendchannel_directory_generation (id, value) VALUES (1, 0)",
        ),
    ],
)


class MailboxTaken(Exception):
    """A per-address credential's mailbox is connected already by another owner."""

    def __init__(self, other: Record, mailbox: str) -> None:
        super().__init__(mailbox)
        self.other = other
        self.mailbox = mailbox


class DirectoryStore(Protocol):
    """What the directory needs from a store; :class:`SqlDirectoryStore` is the one implementation, on
    every database the layer has. ``tests/directory/conformance.py`` checks a store."""

    async def generation(self) -> int:
        """The change counter: it moves whenever anything in the directory changes."""

    async def load(self) -> tuple[int, list[Record]]:
        """The counter and every entry, oldest connected first, read in one transaction."""

    async def connect(self, record: Record) -> tuple[Record, Record | None]:
        """Store a new entry (its ``sequence`` is assigned here), replacing the same owner's entry of the
        same identity; return it and the entry it replaced.

        Raises:
            MailboxTaken: The record is per-address and another owner's per-address entry has one of its
                mailboxes.
        """

    async def set_state(
        self, entry_id: str, state: State, reason: str | None, paused_until: float | None, now: float
    ) -> tuple[Record, Record] | None:
        """Change an entry's state; ``(previous, current)``, or None when the entry is gone or already in
        that state for that reason."""

    async def update_secret(self, entry_id: str, secret: bytes, *, expected_version: int) -> int | None:
        """Replace an entry's secret if it is still at ``expected_version``; the new version, or None."""

    async def delete(self, entry_id: str) -> Record | None:
        """Remove an entry; the removed record, or None when there was none."""

    async def rotate(self, reencrypt: Callable[[bytes], bytes]) -> int:
        """Re-encrypt every secret in one transaction; how many."""

    async def aclose(self) -> None:
        """Release the database."""


def _record(row: Row) -> Record:
    return Record(
        id=row[0],
        owner=row[1],
        url=row[2],
        scheme=row[3],
        identity=row[4],
        scope_kind=row[5],
        scope_identities=tuple(json.loads(row[6])),
        scope_provider=row[7],
        shared=bool(row[8]),
        state=row[9],
        reason=row[10],
        since=float(row[11]),
        paused_until=None if row[12] is None else float(row[12]),
        sequence=int(row[13]),
        secret=bytes(row[14]),
        secret_version=int(row[15]),
    )


def _mailboxes(record: Record) -> set[str]:
    if record.scope_kind != ScopeKind.PER_ADDRESS.value:
        return set()
    return {identity.lower() for identity in record.scope_identities}


class SqlDirectoryStore:
    """The directory's entries in a database of the shared layer (SQLite, PostgreSQL or memory://).

    Args:
        database: A database URL or a parsed one; the store opens (and closes) its own connection.
    """

    def __init__(self, database: str | DatabaseURL) -> None:
        self._database: Database = open_database(database)

    def __repr__(self) -> str:
        return f"SqlDirectoryStore({self._database.url.display!r})"

    @property
    def database(self) -> Database:
        """The database (for tests that look at the raw rows)."""
        return self._database

    async def _ready(self) -> Database:
        await SCHEMA.ensure(self._database)
        return self._database

    async def generation(self) -> int:
        """The change counter."""
        database = await self._ready()
        rows = await database.execute(
            "SELECT value FROM sendchannel_directory_generation WHERE id = 1", write=False
        )
        return int(rows[0][0])

    async def load(self) -> tuple[int, list[Record]]:
        """The counter and every entry."""
        database = await self._ready()

        async def body(tx: Transaction) -> tuple[int, list[Record]]:
            rows = await tx.execute("SELECT value FROM sendchannel_directory_generation WHERE id = 1")
            entries = await tx.execute(
                f"SELECT {_COLUMNS} FROM sendchannel_directory_entries ORDER BY sequence"  # noqa: S608
            )
            return int(rows[0][0]), [_record(row) for row in entries]

        return await database.run(body, write=False)

    @staticmethod
    async def _bump(tx: Transaction) -> int:
        if tx.dialect == "postgresql":
            # Hold the counter's row for the rest of the transaction: directory changes go one at a time.
            await tx.execute("SELECT value FROM sendchannel_directory_generation WHERE id = 1 FOR UPDATE")
        rows = await tx.execute(
            "UPDATE sendchannel_directory_generation SET value = value + 1 WHERE id = 1 RETURNING value"
        )
        return int(rows[0][0])

    async def connect(self, record: Record) -> tuple[Record, Record | None]:
        """Store a new entry, replacing the same owner's entry of the same identity."""
        database = await self._ready()

        async def body(tx: Transaction) -> tuple[Record, Record | None]:
            sequence = await self._bump(tx)
            stored = attrs.evolve(record, sequence=sequence)
            wanted = _mailboxes(stored)
            replaced: Record | None = None
            rows = await tx.execute(f"SELECT {_COLUMNS} FROM sendchannel_directory_entries")  # noqa: S608
            for existing in map(_record, rows):
                if existing.owner == record.owner and existing.identity == record.identity:
                    replaced = existing
                elif existing.owner != record.owner and wanted & _mailboxes(existing):
                    raise MailboxTaken(existing, sorted(wanted & _mailboxes(existing))[0])
            if replaced is not None:
                await tx.execute("DELETE FROM sendchannel_directory_entries WHERE id = ?", (replaced.id,))
            await tx.execute(
                f"INSERT INTO sendchannel_directory_entries ({_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(stored),
            )
            return stored, replaced

        return await database.run(body)

    async def set_state(
        self, entry_id: str, state: State, reason: str | None, paused_until: float | None, now: float
    ) -> tuple[Record, Record] | None:
        """Change an entry's state, when it differs."""
        database = await self._ready()

        async def body(tx: Transaction) -> tuple[Record, Record] | None:
            rows = await tx.execute(
                f"SELECT {_COLUMNS} FROM sendchannel_directory_entries WHERE id = ?", (entry_id,)  # noqa: S608
            )
            if not rows:
                return None
            previous = _record(rows[0])
            if (previous.state, previous.reason, previous.paused_until) == (state, reason, paused_until):
                return None
            await self._bump(tx)
            await tx.execute(
                "UPDATE sendchannel_directory_entries SET state = ?, reason = ?, paused_until = ?, since = ? "
                "WHERE id = ?",
                (state, reason, paused_until, now, entry_id),
            )
            current = attrs.evolve(previous, state=state, reason=reason, paused_until=paused_until, since=now)
            return previous, current

        return await database.run(body)

    async def update_secret(self, entry_id: str, secret: bytes, *, expected_version: int) -> int | None:
        """Replace an entry's secret if nobody else did since ``expected_version``."""
        database = await self._ready()

        async def body(tx: Transaction) -> int | None:
            await self._bump(tx)
            rows = await tx.execute(
                "UPDATE sendchannel_directory_entries SET secret = ?, secret_version = secret_version + 1 "
                "WHERE id = ? AND secret_version = ? RETURNING secret_version",
                (secret, entry_id, expected_version),
            )
            return int(rows[0][0]) if rows else None

        return await database.run(body)

    async def delete(self, entry_id: str) -> Record | None:
        """Remove an entry."""
        database = await self._ready()

        async def body(tx: Transaction) -> Record | None:
            await self._bump(tx)
            rows = await tx.execute(
                f"DELETE FROM sendchannel_directory_entries WHERE id = ? RETURNING {_COLUMNS}",  # noqa: S608
                (entry_id,),
            )
            return _record(rows[0]) if rows else None

        return await database.run(body)

    async def rotate(self, reencrypt: Callable[[bytes], bytes]) -> int:
        """Re-encrypt every secret."""
        database = await self._ready()

        async def body(tx: Transaction) -> int:
            await self._bump(tx)
            rows = await tx.execute("SELECT id, secret FROM sendchannel_directory_entries")
            for entry_id, secret in rows:
                await tx.execute(
                    "UPDATE sendchannel_directory_entries "
                    "SET secret = ?, secret_version = secret_version + 1 WHERE id = ?",
                    (reencrypt(bytes(secret)), entry_id),
                )
            return len(rows)

        return await database.run(body)

    async def aclose(self) -> None:
        """Close the database."""
        await self._database.aclose()


def _row(record: Record) -> Sequence[object]:
    return (
        record.id,
        record.owner,
        record.url,
        record.scheme,
        record.identity,
        record.scope_kind,
        json.dumps(list(record.scope_identities)),
        record.scope_provider,
        int(record.shared),
        record.state,
        record.reason,
        record.since,
        record.paused_until,
        record.sequence,
        record.secret,
        record.secret_version,
    )
