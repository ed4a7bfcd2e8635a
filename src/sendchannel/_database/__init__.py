"""The database layer the directory and the outbox share: SQLite or PostgreSQL, async, versioned schemas.

::

    from sendchannel._database import Migration, Schema, open_database

    SCHEMA = Schema("outbox", [Migration.same("CREATE TABLE sendchannel_outbox_items (...)")])

    database = open_database("sqlite:///mail.db")      # or postgresql://..., or memory://
    await SCHEMA.ensure(database)                      # creates or migrates, once per process
    async with database.transaction() as tx:           # BEGIN IMMEDIATE on SQLite; BEGIN on PostgreSQL
        rows = await tx.execute("SELECT id FROM sendchannel_outbox_items WHERE status = ?", ("queued",))
    await database.aclose()

- :func:`parse_database_url` reads ``sqlite:///path``, ``postgresql://...`` and ``memory://`` (a private
  in-memory SQLite database) into a :class:`DatabaseURL` whose ``display`` hides the password; anything
  else is a ``ConfigurationError``.
- A :class:`Database` has ``dialect``, ``transaction(write=True)``, ``run(body)`` (a transaction retried
  from the start after a PostgreSQL serialization failure or deadlock), ``execute(sql, params)`` (one
  statement, its own transaction: one round trip on PostgreSQL, in autocommit), ``batch(statements)``
  (statements that need no answer in between, one transaction: one pipelined round trip on PostgreSQL)
  and ``aclose()``. A caller cancelled in the middle leaves no transaction open on the connection. SQL
  uses ``?`` placeholders on both engines.
- Errors: a constraint violation is :class:`ConstraintError` on both engines; a lock held too long, or a
  server that cannot be reached, is :class:`~sendchannel.errors.ConnectionLostError`; a database that
  cannot be used (bad path, refused password, missing psycopg) is
  :class:`~sendchannel.errors.ConfigurationError`.
"""

from __future__ import annotations

from sendchannel._database._base import Database, Dialect, Row, Transaction
from sendchannel._database._errors import ConstraintError
from sendchannel._database._schema import Migration, Schema
from sendchannel._database._url import DatabaseURL, parse_database_url

__all__ = [
    "ConstraintError",
    "Database",
    "DatabaseURL",
    "Dialect",
    "Migration",
    "Row",
    "Schema",
    "Transaction",
    "open_database",
    "parse_database_url",
]


def open_database(url: str | DatabaseURL, *, max_connections: int = 4) -> Database:
    """The database at ``url``; nothing is opened before the first transaction.

    Args:
        url: ``sqlite:///path``, ``postgresql://...`` or ``memory://`` (a string or a parsed URL).
        max_connections: For PostgreSQL, the most connections this process opens at once.

    Raises:
        ConfigurationError: The URL is not one of those, or psycopg is missing for a PostgreSQL URL.
    """
    parsed = url if isinstance(url, DatabaseURL) else parse_database_url(url)
    if parsed.kind == "postgresql":
        from sendchannel._database._postgresql import PostgresDatabase

        return PostgresDatabase(parsed, max_connections=max_connections)
    from sendchannel._database._sqlite import SqliteDatabase

    return SqliteDatabase(parsed)
