"""The database layer the directory and the outbox share, against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sendchannel._database import (
    ConstraintError,
    Database,
    DatabaseURL,
    Migration,
    Schema,
    Transaction,
    open_database,
    parse_database_url,
)
from sendchannel.errors import ConfigurationError, ConnectionLostError
from tests import sentinels
from tests.database import _workers
from tests.pg import PostgresServer

NOTES = Schema(
    "notes_test",
    [
        Migration(
            sqlite=[
                "CREATE TABLE sendchannel_notes_test (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)"
            ],
            postgresql=[
                "CREATE TABLE sendchannel_notes_test (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL UNIQUE)"
            ],
        ),
        Migration.same("ALTER TABLE sendchannel_notes_test ADD COLUMN weight REAL NOT NULL DEFAULT 1.5"),
    ],
)


# -- URLs ---------------------------------------------------------------------------------------------------


def test_sqlite_url_path_follows_the_third_slash_relative_or_absolute() -> None:
    assert "mail.db" == parse_database_url("sqlite:///mail.db").path
    assert "/var/lib/app/mail.db" == parse_database_url("sqlite:////var/lib/app/mail.db").path
    assert ":memory:" == parse_database_url("sqlite:///:memory:").path
    assert 2.5 == parse_database_url("sqlite:///mail.db?timeout=2.5").timeout


def test_memory_and_postgresql_urls_are_recognised() -> None:
    assert "memory" == parse_database_url("memory://").kind
    url = parse_database_url("postgres://app@db.internal:5433/mail?sslmode=require&timeout=5")
    assert ("postgresql", 5.0) == (url.kind, url.timeout)
    assert "postgresql://app@db.internal:5433/mail?sslmode=require" == url.dsn


def test_a_postgresql_password_is_never_shown() -> None:
    url = parse_database_url(f"postgresql://app:{sentinels.PASSWORD}@db/mail?password={sentinels.PASSWORD}")
    assert "postgresql://app:***@db/mail?password=***" == url.display
    assert sentinels.PASSWORD not in repr(url) + str(url)
    assert sentinels.PASSWORD in (url.dsn or "")  # kept for the driver, which needs it


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://app:pw@db/mail", "Unknown database URL scheme 'mysql'"),
        ("mail.db", "is not a database URL"),
        ("sqlite://mail.db", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///mail.db?journal=wal", "unknown option(s) journal"),
        ("sqlite:///mail.db?timeout=-1", "positive number of seconds"),
        ("memory://somewhere", "takes no host or path"),
        ("postgresql://db:notaport/mail", "not a valid PostgreSQL URL"),
    ],
)
def test_a_url_that_is_no_database_is_a_clear_configuration_error(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)
    assert words in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_an_unknown_scheme_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(f"mysql://app:{sentinels.PASSWORD}@db/mail")
    assert "mysql://app:***@db/mail" in str(caught.value)


def test_a_directory_is_not_a_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="names a directory"):
        parse_database_url(f"sqlite:///{tmp_path}")


def test_a_non_string_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a URL string"):
        parse_database_url(Path("mail.db"))  # type: ignore[arg-type]


# -- every engine -------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    elif request.param == "memory":
        url = "memory://"
    else:
        url = request.getfixturevalue("postgresql_url")
    db = open_database(url)
    try:
        yield db
    finally:
        await db.aclose()


async def test_schema_is_created_on_first_use_and_its_version_recorded(database: Database) -> None:
    assert 0 == await NOTES.installed_version(database)
    await NOTES.ensure(database)
    assert 2 == await NOTES.installed_version(database)
    rows = await database.execute(
        "INSERT INTO sendchannel_notes_test (body) VALUES (?) RETURNING id, weight", ("first",)
    )
    assert [(1, 1.5)] == rows


async def test_migrations_run_once_and_only_those_not_yet_applied(database: Database) -> None:
    first = Schema("notes_test", NOTES.migrations[:1])
    await first.ensure(database)
    await database.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("kept",))
    await NOTES.ensure(database)  # applies the second migration only: the row stays
    await NOTES.ensure(database)
    assert [("kept", 1.5)] == await database.execute("SELECT body, weight FROM sendchannel_notes_test")


async def test_two_components_migrate_independently_in_one_database(database: Database) -> None:
    await NOTES.ensure(database)
    other = Schema("other_test", [Migration.same("CREATE TABLE sendchannel_other_test (x INTEGER)")])
    await other.ensure(database)
    assert (2, 1) == (await NOTES.installed_version(database), await other.installed_version(database))


async def test_a_database_migrated_by_a_newer_version_is_refused(database: Database) -> None:
    await NOTES.ensure(database)
    older = Schema("notes_test", NOTES.migrations[:1])
    with pytest.raises(ConfigurationError, match=r"schema version 2.*versions up to 1.*Upgrade sendchannel"):
        await older.ensure(database)


async def test_a_transaction_commits_together_or_not_at_all(database: Database) -> None:
    await NOTES.ensure(database)
    async with database.transaction() as tx:
        await tx.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("a",))
        await tx.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("b",))

    async def fails(tx: Transaction) -> None:
        await tx.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("c",))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await database.run(fails)
    assert [("a",), ("b",)] == await database.execute("SELECT body FROM sendchannel_notes_test ORDER BY body")


async def test_a_batch_returns_each_statements_rows_and_commits_together_or_not_at_all(
    database: Database,
) -> None:
    """``batch`` (one pipelined round trip on PostgreSQL): rows in statement order; a statement that fails
    undoes the ones before it, and the connection is clean for the next call."""
    await NOTES.ensure(database)
    insert = "INSERT INTO sendchannel_notes_test (body) VALUES (?) RETURNING body"
    results = await database.batch(
        [(insert, ("a",)), ("UPDATE sendchannel_notes_test SET weight = ?", (2.0,)), (insert, ("b",))]
    )
    assert [[("a",)], [], [("b",)]] == results
    with pytest.raises(ConstraintError):
        await database.batch([(insert, ("c",)), (insert, ("a",)), (insert, ("d",))])
    assert [("a", 2.0), ("b", 1.5)] == await database.execute(
        "SELECT body, weight FROM sendchannel_notes_test ORDER BY body"
    )
    assert [[(2,)]] == await database.batch([("SELECT COUNT(*) FROM sendchannel_notes_test", ())])


async def test_a_unique_violation_is_a_constraint_error_on_every_engine(database: Database) -> None:
    await NOTES.ensure(database)
    await database.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("same",))
    with pytest.raises(ConstraintError):
        await database.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("same",))
    # The connection is still good after the failed transaction.
    assert [(1,)] == await database.execute("SELECT COUNT(*) FROM sendchannel_notes_test")


async def test_placeholders_and_literal_percent_signs_mean_the_same_everywhere(database: Database) -> None:
    await NOTES.ensure(database)

    async def body(tx: Transaction) -> list[tuple[object, ...]]:
        await tx.executemany(
            "INSERT INTO sendchannel_notes_test (body) VALUES (?)", [("50% off",), ("full price",)]
        )
        await tx.execute("UPDATE sendchannel_notes_test SET weight = ? WHERE body LIKE '%off'", (3.0,))
        assert 1 == tx.rowcount
        return await tx.execute("SELECT body, weight FROM sendchannel_notes_test ORDER BY body")

    assert [("50% off", 3.0), ("full price", 1.5)] == await database.run(body)


async def test_a_read_transaction_sees_committed_rows(database: Database) -> None:
    await NOTES.ensure(database)
    await database.execute("INSERT INTO sendchannel_notes_test (body) VALUES (?)", ("x",))
    async with database.transaction(write=False) as tx:
        assert [("x",)] == await tx.execute("SELECT body FROM sendchannel_notes_test")
        assert tx.dialect == database.dialect


async def test_bytes_come_back_as_bytes(database: Database) -> None:
    blob = "BYTEA" if database.dialect == "postgresql" else "BLOB"
    table = Schema("blob_test", [Migration.same(f"CREATE TABLE sendchannel_blob_test (data {blob})")])
    await table.ensure(database)
    await database.execute("INSERT INTO sendchannel_blob_test (data) VALUES (?)", (b"\x00\xffsecret",))
    rows = await database.execute("SELECT data FROM sendchannel_blob_test")
    assert [(b"\x00\xffsecret",)] == rows


def test_the_repr_of_a_database_hides_the_password(postgresql_server: PostgresServer) -> None:
    database = open_database(postgresql_server.url)
    assert "***" in repr(database)
    assert sentinels.PASSWORD not in repr(database) + repr(database.url)


# -- several processes --------------------------------------------------------------------------------------


def _increment_from_processes(url: str, processes: int, times: int) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        assert [times] * processes == pool.starmap(_workers.increment, [(url, times)] * processes)


@pytest.mark.slow
async def test_sqlite_read_then_write_from_several_processes_loses_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    _increment_from_processes(url, 4, 50)
    database = open_database(url)
    try:
        assert [(200,)] == await database.execute("SELECT value FROM sendchannel_counter_test")
    finally:
        await database.aclose()


@pytest.mark.slow
async def test_postgresql_migrates_once_and_retries_serialization_failures(postgresql_url: str) -> None:
    # The processes start on an empty database: they migrate it once between them (the advisory lock; a
    # second CREATE TABLE would fail). Their read-then-write transactions run SERIALIZABLE, so PostgreSQL
    # aborts all but one of those that overlap, and run() starts them again: no update is lost.
    _increment_from_processes(postgresql_url, 4, 25)
    database = open_database(postgresql_url)
    try:
        assert 1 == await _workers.COUNTER.installed_version(database)
        assert [(100,)] == await database.execute("SELECT value FROM sendchannel_counter_test")
    finally:
        await database.aclose()


# -- failures -----------------------------------------------------------------------------------------------


async def test_sqlite_locked_by_another_process_too_long_is_a_connection_lost_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    database = open_database(f"sqlite:///{path}?timeout=0.2")
    try:
        with pytest.raises(ConnectionLostError, match=r"stayed locked for 0\.2 s"):
            await database.execute("INSERT INTO t (x) VALUES (1)")
        holder.execute("COMMIT")
        await database.execute("INSERT INTO t (x) VALUES (1)")  # usable once the lock is gone
    finally:
        holder.close()
        await database.aclose()


async def test_sqlite_file_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    try:
        with pytest.raises(ConfigurationError, match=r"cannot be used.*directory exists"):
            await database.execute("SELECT 1")
    finally:
        await database.aclose()


async def test_a_wrong_postgresql_password_is_a_configuration_error_that_hides_it(
    postgresql_server: PostgresServer,
) -> None:
    url = postgresql_server.url.replace("sentinel-Pa55w0rd", "sentinel-Pa55w0rX")
    database = open_database(url)
    try:
        with pytest.raises(ConfigurationError, match="refused the credentials") as caught:
            await database.execute("SELECT 1")
        assert "postgres:***@127.0.0.1" in str(caught.value)
        assert "Pa55w0rX" not in str(caught.value)
    finally:
        await database.aclose()


async def test_an_unreachable_postgresql_is_a_connection_lost_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    database = open_database(f"postgresql://app:{sentinels.PASSWORD}@127.0.0.1:{port}/mail?timeout=2")
    try:
        with pytest.raises(ConnectionLostError, match="Cannot reach PostgreSQL at postgresql://app:\\*\\*\\*@"):
            await database.execute("SELECT 1")
    finally:
        await database.aclose()


async def test_a_closed_database_refuses_further_use(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    await database.execute("SELECT 1")
    await database.aclose()
    await database.aclose()
    with pytest.raises(RuntimeError, match="is closed"):
        await database.execute("SELECT 1")


def test_open_database_takes_a_parsed_url() -> None:
    url = parse_database_url("memory://")
    assert isinstance(url, DatabaseURL)
    assert "sqlite" == open_database(url).dialect
