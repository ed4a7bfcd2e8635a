"""Outbox: durable, scheduled sending by any number of workers on SQLite or PostgreSQL.

:class:`Outbox` keeps the items in a store (``_memory``, ``_sqlite``, ``_postgres``: each follows
``_store.OutboxStore``); ``_worker`` is the loop of ``Outbox.run``; ``_codec`` says how a message and its
outcome are stored; ``_cli`` gives the ``worker`` and ``outbox`` commands.
"""

from sendchannel._outbox._item import STATUSES, OutboxItem
from sendchannel._outbox._outbox import Outbox

__all__ = ["STATUSES", "Outbox", "OutboxItem"]
