"""Throttling: keep every sender of a credential inside its provider's limits.

:class:`Throttler` wraps a channel; it keeps its sliding-window ledger in a store: :class:`MemoryStore`
(one process), :class:`SqliteStore` (the processes of one host) or :class:`RedisStore` (a fleet), or any
object that follows the :class:`ThrottleStore` protocol.
"""

from sendchannel._throttle._memory import MemoryStore
from sendchannel._throttle._redis import RedisStore
from sendchannel._throttle._sqlite import SqliteStore
from sendchannel._throttle._store import Reservation, ThrottleStore
from sendchannel._throttle._throttler import DEFAULT_PAUSE, Throttler, default_key

__all__ = [
    "DEFAULT_PAUSE",
    "MemoryStore",
    "RedisStore",
    "Reservation",
    "SqliteStore",
    "ThrottleStore",
    "Throttler",
    "default_key",
]
