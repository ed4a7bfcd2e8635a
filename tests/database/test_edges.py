"""The database layer's edges: a file that is no database, our own SQL mistakes, a server that drops the
connection, a missing driver, one database used from two event loops."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from sendchannel._database import open_database, parse_database_url
from sendchannel._database._postgresql import PostgresDatabase
from sendchannel._database._sqlite import SqliteDatabase
from sendchannel.errors import ConfigurationError, ConnectionLostError
from tests.pg import PostgresServer


async def test_a_file_that_is_not_a_sqlite_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages of a database " * 200)
    database = open_database(f"sqlite:///{path}")
    try:
        with pytest.raises(ConfigurationError, match=r"cannot be used \(file is not a database\)"):
            await database.execute("SELECT 1")
    finally:
        await database.aclose()


async def test_a_mistake_in_our_own_sql_is_raised_as_it_is(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await database.execute("SELECT * FROM sendchannel_nothing")
    finally:
        await database.aclose()


def test_each_engine_refuses_the_other_engines_url() -> None:
    with pytest.raises(ConfigurationError, match="is not a SQLite database URL"):
        SqliteDatabase(parse_database_url("postgresql://db/mail"))
    with pytest.raises(ConfigurationError, match="is not a PostgreSQL database URL"):
        PostgresDatabase(parse_database_url("sqlite:///mail.db"))


def test_without_psycopg_a_postgresql_url_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigurationError, match=r'pip install "sendchannel\[postgresql\]"'):
        open_database("postgresql://db/mail")


async def test_a_connection_the_server_drops_is_a_connection_lost_error_then_replaced(
    postgresql_server: PostgresServer, postgresql_url: str
) -> None:
    database = open_database(postgresql_url)
    try:
        assert [(1,)] == await database.execute("SELECT 1")  # one pooled connection now
        name = postgresql_url.rsplit("/", 1)[1]
        postgresql_server.sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        with pytest.raises(ConnectionLostError, match="The connection to PostgreSQL at postgresql://postgres:\\*\\*\\*@"):
            await database.execute("SELECT 1")
        assert [(2,)] == await database.execute("SELECT 2")  # a new connection
    finally:
        await database.aclose()
    with pytest.raises(RuntimeError, match="is closed"):
        await database.execute("SELECT 1")


def test_one_postgresql_database_object_serves_one_event_loop_after_another(postgresql_url: str) -> None:
    database = open_database(postgresql_url)

    async def query(value: int) -> list[tuple[object, ...]]:
        return await database.execute("SELECT ?", (value,))

    assert [(1,)] == asyncio.run(query(1))
    assert [(2,)] == asyncio.run(query(2))  # the first loop's connections are dropped, new ones opened
    asyncio.run(database.aclose())
