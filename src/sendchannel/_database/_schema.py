"""Versioned schemas: each component (the directory, the outbox) migrates its own tables, on first use.

A component's tables are all prefixed ``sendchannel_``; its schema version is kept in a table of its own,
``sendchannel_<component>_schema`` (one row), so the directory and the outbox can share one database and
still move to new versions independently. :meth:`Schema.ensure` runs the migrations that a database has
not seen yet, in one transaction that holds the database's write lock (SQLite ``BEGIN IMMEDIATE``; a
PostgreSQL advisory lock), so processes that start together migrate exactly once.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence

import attrs

from sendchannel._database._base import Database, Transaction
from sendchannel.errors import ConfigurationError

__all__ = ["Migration", "Schema"]

# Any fixed number: the key of the advisory lock that serialises schema changes on a PostgreSQL server.
_ADVISORY_LOCK = 0x73656E64636831  # "sendch1"


def _strings(statements: Iterable[str]) -> tuple[str, ...]:
    return tuple(statements)


@attrs.frozen
class Migration:
    """The statements that take a schema from one version to the next, for each engine.

    Use :meth:`same` when both engines accept the same SQL.
    """

    sqlite: tuple[str, ...] = attrs.field(converter=_strings)
    postgresql: tuple[str, ...] = attrs.field(converter=_strings)

    @classmethod
    def same(cls, *statements: str) -> Migration:
        """A migration whose statements both engines accept as written."""
        return cls(sqlite=tuple(statements), postgresql=tuple(statements))

    def statements(self, dialect: str) -> tuple[str, ...]:
        """The statements for ``dialect`` (``"sqlite"`` or ``"postgresql"``)."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _migrations(migrations: Iterable[Migration]) -> tuple[Migration, ...]:
    return tuple(migrations)


_ready: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()


@attrs.frozen
class Schema:
    """A component's tables, as a list of migrations: version N is the first N migrations applied.

    Args:
        component: The component's name, lowercase letters and underscores (``"directory"``); its
            version table is ``sendchannel_<component>_schema``.
        migrations: In order; never edit one that has shipped, append a new one.
    """

    component: str = attrs.field()
    migrations: tuple[Migration, ...] = attrs.field(converter=_migrations)

    @component.validator
    def _check_component(self, _attribute: object, value: str) -> None:
        if not re.fullmatch(r"[a-z][a-z_]*", value):
            raise ValueError(f"a schema component is lowercase letters and underscores, got {value!r}")

    @property
    def version(self) -> int:
        """The version this code writes: the number of migrations."""
        return len(self.migrations)

    @property
    def table(self) -> str:
        """The table that holds this component's schema version."""
        return f"sendchannel_{self.component}_schema"

    async def ensure(self, database: Database) -> None:
        """Create or migrate this component's tables in ``database`` (once per database object).

        Raises:
            ConfigurationError: The database was migrated by a newer sendchannel (a version this code does
                not know); upgrade sendchannel on this machine.
        """
        done = _ready.setdefault(database, set())
        key = f"{self.component}:{self.version}"
        if key in done:
            return
        await database.run(self._migrate)
        done.add(key)

    async def installed_version(self, database: Database) -> int:
        """The version the database holds now (0 when the component was never used there)."""

        async def read(tx: Transaction) -> int:
            await tx.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (version INTEGER NOT NULL)")
            rows = await tx.execute(f"SELECT version FROM {self.table}")  # noqa: S608 - a fixed name
            return int(rows[0][0]) if rows else 0

        return await database.run(read)

    async def _migrate(self, tx: Transaction) -> None:
        if tx.dialect == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK,))
        await tx.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (version INTEGER NOT NULL)")
        rows = await tx.execute(f"SELECT version FROM {self.table}")  # noqa: S608 - a fixed name
        if not rows:
            await tx.execute(f"INSERT INTO {self.table} (version) VALUES (0)")  # noqa: S608
        installed = int(rows[0][0]) if rows else 0
        if installed > self.version:
            raise ConfigurationError(
                f"The database holds sendchannel's {self.component} tables at schema version {installed}, "
                f"but this sendchannel knows versions up to {self.version}: a newer sendchannel migrated it. "
                "Upgrade sendchannel here too."
            )
        for migration in self.migrations[installed:]:
            for statement in migration.statements(tx.dialect):
                await tx.execute(statement)
        if installed < self.version:
            await tx.execute(f"UPDATE {self.table} SET version = ?", (self.version,))  # noqa: S608


def _statements(migrations: Sequence[Migration], dialect: str) -> list[str]:
    """Every statement of ``migrations`` for ``dialect`` (for tests and docs)."""
    return [statement for migration in migrations for statement in migration.statements(dialect)]
