"""The outbox in a SQLite file: the processes of one host, claims serialised by the file's write lock."""

from __future__ import annotations

from sendchannel._outbox._sql import SqlOutboxStore

__all__ = ["SqliteOutboxStore"]


class SqliteOutboxStore(SqlOutboxStore):
    """Items in a SQLite file (WAL): a worker looks for new items every ``poll_interval`` seconds.

    Workers of other processes learn of new items by polling; items put through the same Outbox object
    wake its workers at once.
    """
