"""The mail-transaction end of a connection: write commands, read replies, with pipelining.

aiosmtplib opens the connection, starts TLS and logs in; then the transport is handed to a
:class:`ReplyReader`, which keeps every reply the server sends, in order. aiosmtplib reads exactly one
reply per command and drops data that arrives while no command waits for it, which rules out RFC 2920
pipelining (MAIL, every RCPT and DATA written at once, their replies read afterwards); halving the round
trips of each message is worth this small reader. Each wait for a reply is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["ConnectionGone", "ReplyReader"]

_MAX_REPLY = 64 * 1024


class ConnectionGone(ConnectionError):
    """The server closed the connection (or it broke) before the reply came."""


class ReplyReader(asyncio.Protocol):
    """Collects the SMTP replies arriving on ``transport`` and hands them out in order.

    Args:
        transport: A connected transport (plain or TLS) on which no reply is outstanding.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._replies: collections.deque[tuple[int, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._gone: BaseException | None = None
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Split the data into replies."""
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                # Not SMTP: hand out an unreadable reply (-1) and stop listening.
                text = line[:200].decode("utf-8", "replace")
                self._replies.append((-1, f"Malformed SMTP reply line: {text}"))
                self._lines.clear()
                buffer.clear()
                self._gone = ConnectionGone("the server sent something that is not SMTP")
                self._wake()
                return
            self._lines.append(line)
            if line[3:4] != b"-":
                lines = self._lines
                text = "\n".join(item[4:].decode("utf-8", "surrogateescape").strip() for item in lines)
                self._replies.append((int(lines[0][:3]), text))
                self._lines = []
        if start:
            del buffer[:start]
        if len(buffer) > _MAX_REPLY or sum(map(len, self._lines)) > _MAX_REPLY:
            self._gone = ConnectionGone("the server's reply is too long")
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        """The server closed its side: no more replies will come."""
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone."""
        self._lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer is full: writers wait in :meth:`drain`."""
        self._paused = True

    def resume_writing(self) -> None:
        """The buffer has room again."""
        self._paused = False
        self._wake_drain()

    def _lost(self, exc: BaseException | None) -> None:
        if self._gone is None:
            self._gone = ConnectionGone(
                f"the server closed the connection ({exc})" if exc else "the server closed the connection"
            )
        self._wake()
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- use -----------------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether the connection is up, with no reply nobody asked for (a 421 before closing)."""
        return self._gone is None and not self._replies and not self.transport.is_closing()

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data``.

        Raises:
            ConnectionGone: The connection is closed.
        """
        if self._gone is not None or self.transport.is_closing():
            raise ConnectionGone("the connection is closed")
        self.transport.write(data)

    async def send(self, data: bytes, wait: float, chunk: int = 256 * 1024) -> None:
        """Write ``data`` in chunks, waiting (at most ``wait`` seconds each time) while the server reads.

        A large message on a slow link takes as long as it takes, but a server that stops reading for
        ``wait`` seconds ends it.

        Raises:
            TimeoutError: The server read nothing for ``wait`` seconds.
            ConnectionGone: The connection closed.
        """
        view = memoryview(data)
        for start in range(0, len(view), chunk):
            self.write(view[start : start + chunk])
            while self._paused:
                if self._gone is not None:
                    raise self._gone
                waiter = self._loop.create_future()
                self._drain_waiter = waiter
                timer = self._loop.call_later(wait, _expire, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._drain_waiter = None

    async def reply(self, wait: float) -> tuple[int, str]:
        """The next reply: ``(code, text)``, lines of text joined by ``\\n``; code -1 when unreadable.

        Raises:
            TimeoutError: No reply within ``wait`` seconds.
            ConnectionGone: The connection closed first.
        """
        # Woken by every read: a reply split across reads (the code now, the text 50 ms later) means another
        # wait, within the same ``wait`` seconds, not a closed connection.
        deadline = self._loop.time() + wait
        while not self._replies:
            if self._gone is not None:
                raise self._gone
            waiter = self._loop.create_future()
            self._waiter = waiter
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._replies.popleft()

    def close(self) -> None:
        """Close the transport."""
        self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
