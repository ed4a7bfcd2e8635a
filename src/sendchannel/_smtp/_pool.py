"""A pool of reused SMTP connections, shared by concurrent sends.

At most ``size`` connections are open at any moment, counting the ones being opened and the ones saying
QUIT (Office 365 refuses a fourth connection even while a third is still closing). Idle connections are
reused most-recently-used first, so the others age out; a connection is retired after ``recycle_after``
messages, after ``max_idle`` seconds unused, when the server closed it, or when it failed. Sends that
find every connection busy wait in order.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

from sendchannel._smtp._session import Connection

__all__ = ["Pool"]


class Pool:
    """Connections to one server for one credential.

    Args:
        opener: Opens a new authenticated connection (raises a classified SendError).
        size: The most connections open at once.
        recycle_after: Retire a connection after this many messages (None: never).
        max_idle: Retire a connection unused for this many seconds (None: never).
        quit_timeout: How long a retiring connection waits for the reply to QUIT.
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[Connection]],
        *,
        size: int,
        recycle_after: int | None,
        max_idle: float | None,
        quit_timeout: float,
    ) -> None:
        self._opener = opener
        self.size = size
        self._recycle_after = recycle_after
        self._max_idle = max_idle
        self._quit_timeout = quit_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_count = 0  # open, opening or closing
        self._idle: list[Connection] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._retiring: set[asyncio.Task[None]] = set()
        self.closed = False
        #: How many connections were opened over the pool's life.
        self.opened = 0

    @property
    def idle(self) -> int:
        """How many connections are open and waiting to be reused."""
        return len(self._idle)

    @property
    def open_connections(self) -> int:
        """How many connections are open, opening or closing."""
        return self._open_count

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or the channel moved to another event loop (asyncio.run called again): the
            # old loop's connections cannot be used here, so drop them.
            for connection in self._idle:
                self._cancel_idle_timer(connection)
                connection.close()
            self._idle.clear()
            self._waiters.clear()
            self._retiring.clear()
            self._open_count = 0
            self._loop = loop
        return loop

    # -- lending ---------------------------------------------------------------------------------------

    async def acquire(self) -> Connection:
        """A usable connection: an idle one when there is one, else a new one once there is room.

        Raises:
            RuntimeError: The pool is closed.
            SendError: Opening a connection failed (classified).
        """
        loop = self._bind()
        first = True
        while True:
            self._check_open()
            connection = self._take_idle()
            if connection is not None:
                return connection
            if self._open_count < self.size:
                return await self._open_new()
            await self._wait(loop, first)
            first = False

    async def open_fresh(self) -> Connection:
        """A new connection, never an idle one (for ``verify``); give it back with :meth:`discard`."""
        loop = self._bind()
        first = True
        while True:
            self._check_open()
            if self._open_count < self.size:
                return await self._open_new()
            if self._idle:
                # Every slot is taken by idle connections: close one to make room.
                connection = self._idle.pop(0)
                self._cancel_idle_timer(connection)
                self._retire(connection)
            await self._wait(loop, first)
            first = False

    def release(self, connection: Connection) -> None:
        """Give a connection back after a send: keep it for reuse, or retire it."""
        if self.closed or not connection.usable or self._used_up(connection):
            self._retire(connection)
            return
        connection.last_used = time.monotonic()
        self._idle.append(connection)
        if self._max_idle is not None and self._loop is not None:
            connection.idle_handle = self._loop.call_later(
                self._max_idle, self._expire_idle, connection
            )
        self._wake()

    async def discard(self, connection: Connection) -> None:
        """Say QUIT on a connection and free its slot (after :meth:`open_fresh`)."""
        try:
            await connection.quit(self._quit_timeout)
        finally:
            self._closed_one()

    # -- internals -------------------------------------------------------------------------------------

    def _take_idle(self) -> Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            self._cancel_idle_timer(connection)
            if connection.usable and not self._expired(connection, now):
                return connection
            self._retire(connection)
        return None

    async def _open_new(self) -> Connection:
        self._open_count += 1
        try:
            connection = await self._opener()
        except BaseException:
            self._closed_one()
            raise
        self.opened += 1
        return connection

    async def _wait(self, loop: asyncio.AbstractEventLoop, first: bool) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        if first:
            self._waiters.append(waiter)
        else:
            self._waiters.appendleft(waiter)  # woken but beaten to it: keep its place in the queue
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._wake()  # it was woken: pass the turn on
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _closed_one(self) -> None:
        self._open_count -= 1
        self._wake()

    def _used_up(self, connection: Connection) -> bool:
        return self._recycle_after is not None and connection.messages >= self._recycle_after

    def _expired(self, connection: Connection, now: float) -> bool:
        return self._max_idle is not None and now - connection.last_used >= self._max_idle

    def _cancel_idle_timer(self, connection: Connection) -> None:
        if connection.idle_handle is not None:
            connection.idle_handle.cancel()
            connection.idle_handle = None

    def _expire_idle(self, connection: Connection) -> None:
        connection.idle_handle = None
        if connection in self._idle:
            self._idle.remove(connection)
            self._retire(connection)

    def _retire(self, connection: Connection) -> None:
        # A healthy connection says QUIT in the background; a broken one is just closed. Its slot is
        # freed once it is really gone.
        if not connection.usable:
            connection.close()
            self._closed_one()
            return

        async def retire() -> None:
            try:
                await connection.quit(self._quit_timeout)
            finally:
                self._closed_one()

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("the channel is closed; create a new one to send again")

    async def aclose(self) -> None:
        """Close every idle connection (saying QUIT) and wait for the ones being retired.

        Connections lent out are retired when they come back.
        """
        self.closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # they find the pool closed
        self._waiters.clear()
        if self._loop is not asyncio.get_running_loop():
            for connection in self._idle:
                connection.close()
            self._idle.clear()
            return
        idle, self._idle = self._idle, []
        for connection in idle:
            self._cancel_idle_timer(connection)
        await asyncio.gather(
            *(self.discard(connection) for connection in idle), return_exceptions=True
        )
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
