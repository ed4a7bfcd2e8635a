"""A blocking facade over any channel, for code that is not async.

::

    from sendchannel import Message
    from sendchannel.sync import SyncChannel

    with SyncChannel("smtp://app:secret@mail.example.com:587") as channel:
        channel.verify()
        result = channel.send(Message("app@example.com", ["bob@example.com"], subject="Hi", text="Hello"))

    # or, for one message:
    sendchannel.sync.send("smtp://app:secret@mail.example.com:587", message)

A :class:`SyncChannel` runs its own event loop in a background thread and hands each call to it, so the
channel's connections live on one loop for the facade's whole life and are reused from call to call. Any
number of threads may call one facade at once (a web server's request threads, a thread pool, the worker
threads of a running event loop's ``run_in_executor``); the calls run concurrently on the facade's loop.
:meth:`SyncChannel.close` lets calls in flight finish, closes the channel's connections, stops the loop
and joins its thread. A facade that is never closed is closed when it is garbage collected or when the
interpreter exits.

A thread that runs an event loop must not block on a send: it would stall every other task of that
loop. The facade raises :class:`RuntimeError` there; ``await`` the channel itself instead, or call the
facade through :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from sendchannel._channel import Channel
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._registry import channel_from_url, redact_url
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope

__all__ = ["SyncChannel", "send", "verify"]

T = TypeVar("T")

_numbers = itertools.count(1)


class _LoopThread:
    """An event loop running forever in a daemon thread, owning one channel."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        #: The calls running on the loop, which close() lets finish.
        self.calls: set[asyncio.Task[Any]] = set()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    def submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future[T]:
        async def run() -> T:
            task = asyncio.current_task()
            assert task is not None
            self.calls.add(task)
            try:
                return await coroutine
            finally:
                self.calls.discard(task)

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def shut_down(self, channel: Channel) -> None:
        """Let tasks in flight finish, close ``channel``, stop the loop and join the thread."""
        if not self.thread.is_alive():
            return
        if self.in_loop_thread():
            # Garbage collection ran the finalizer on the loop's own thread: it cannot wait for itself.
            self.loop.create_task(self._close_then_stop(channel))
            return
        try:
            asyncio.run_coroutine_threadsafe(self._drain_and_close(channel), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()

    async def _drain_and_close(self, channel: Channel) -> None:
        if self.calls:
            await asyncio.wait(set(self.calls))
        await channel.aclose()

    async def _close_then_stop(self, channel: Channel) -> None:
        try:
            await self._drain_and_close(channel)
        finally:
            self.loop.stop()


async def _aclose(channel: Channel) -> None:
    await channel.aclose()


def _shut_down(runner: _LoopThread, channel: Channel) -> None:
    runner.shut_down(channel)


class SyncChannel:
    """A channel with blocking methods, for code that is not async (scripts, Django, Flask, threads).

    The facade owns the channel: closing the facade closes it. Use it as a context manager, or call
    :meth:`close` when done.

    Args:
        channel: A channel, or a URL for :func:`~sendchannel.channel_from_url`
            (``"smtp://user:password@host:587"``).
        overrides: Keyword arguments of the URL's channel (only with a URL).

    Raises:
        ConfigurationError: The URL is not valid or names an unknown scheme.
        TypeError: Overrides were given with a channel object.

    Example::

        with SyncChannel("memory://") as channel:
            channel.send(Message("app@example.com", ["bob@example.com"], subject="Hi"))
    """

    def __init__(self, channel: Channel | str, **overrides: Any) -> None:
        if isinstance(channel, str):
            self._label = redact_url(channel)
            channel = channel_from_url(channel, **overrides)
        else:
            if overrides:
                raise TypeError(
                    "SyncChannel takes keyword overrides only with a URL; configure the channel object "
                    "itself instead"
                )
            self._label = getattr(channel, "name", type(channel).__name__)
        self._channel = channel
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._finalizer: weakref.finalize[Any, SyncChannel] | None = None
        self._closed = False

    # -- what the channel is -----------------------------------------------------------------------

    @property
    def channel(self) -> Channel:
        """The async channel behind the facade (await it only on the facade's own loop)."""
        return self._channel

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._channel.name

    @property
    def scope(self) -> CredentialScope:
        """The channel's credential scope."""
        return self._channel.scope

    @property
    def limits(self) -> Limits:
        """The channel's limits."""
        return self._channel.limits

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- blocking calls ----------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        """Send one message and wait for the outcome.

        Raises:
            SendError: The send failed, exactly as the channel's own ``send`` raises it.
            InvalidMessageError: The message breaks a per-message limit (nothing was sent).
            RuntimeError: The facade is closed, or it was called from a thread that runs an event loop.
        """
        return self._call(self._channel.send, message)

    def verify(self) -> None:
        """Reach the provider and authenticate without sending, and wait for it.

        Raises:
            SendError: The provider could not be reached or refused the credentials.
            RuntimeError: The facade is closed, or it was called from a thread that runs an event loop.
        """
        self._call(self._channel.verify)

    def close(self) -> None:
        """Let the calls in flight finish, close the channel's connections, stop the loop and its thread.

        Closing twice does nothing.

        Raises:
            RuntimeError: Called from a thread that runs an event loop.
        """
        self._check_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            finalizer = self._finalizer
        if finalizer is None:
            # Never used: no loop to stop, but the channel is ours to close.
            asyncio.run(_aclose(self._channel))
        else:
            finalizer()  # runs _shut_down once, and never again at exit

    def _close_soon(self) -> threading.Thread | None:
        """Refuse new calls at once and close in a background thread, for callers that must not block.

        Returns:
            The thread doing the closing, or None when the facade was already closed.
        """
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            finalizer = self._finalizer
        channel = self._channel

        def close() -> None:
            if finalizer is None:
                asyncio.run(_aclose(channel))
            else:
                finalizer()

        thread = threading.Thread(target=close, name="sendchannel-sync-close", daemon=True)
        thread.start()
        return thread

    def _check_thread(self, *, in_event_loop: bool = False) -> None:
        runner = self._runner
        if runner is not None and runner.in_loop_thread():
            raise RuntimeError(
                "SyncChannel was called from its own event loop (from inside a send); await "
                "SyncChannel.channel's methods there instead"
            )
        if in_event_loop:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            "SyncChannel's blocking methods were called from a thread that runs an event loop, where "
            "they would stall every other task; await the channel's own send() instead, or call the "
            "facade through asyncio.to_thread()"
        )

    def _ensure_runner(self) -> _LoopThread:
        # Called with the lock held.
        if self._runner is None:
            self._runner = _LoopThread(f"sendchannel-sync-{next(_numbers)}")
            self._finalizer = weakref.finalize(self, _shut_down, self._runner, self._channel)
        return self._runner

    def _call(self, method: Callable[..., Awaitable[T]], *args: Any, in_event_loop: bool = False) -> T:
        # in_event_loop: block even a thread that runs an event loop (for Django, whose own backends do).
        self._check_thread(in_event_loop=in_event_loop)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"SyncChannel for {self._label} is closed; create a new one")
            future = self._ensure_runner().submit(method(*args))
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt or SystemExit in the waiting thread: do not leave the send running.
            future.cancel()
            raise

    def __enter__(self) -> SyncChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SyncChannel {self._label} {state}>"


def send(channel: Channel | str, message: Message, **overrides: Any) -> SendResult:
    """Send one message through a channel or URL, and close the channel.

    For many messages, keep a :class:`SyncChannel` open instead: it reuses its connections.

    Args:
        channel: A channel, or a URL for :func:`~sendchannel.channel_from_url`.
        message: The message.
        overrides: Keyword arguments of the URL's channel.

    Raises:
        SendError: The send failed.
        ConfigurationError: The URL is not valid or names an unknown scheme.
        RuntimeError: Called from a thread that runs an event loop.
    """
    with SyncChannel(channel, **overrides) as facade:
        return facade.send(message)


def verify(channel: Channel | str, **overrides: Any) -> None:
    """Reach the provider and authenticate without sending, then close the channel.

    Args:
        channel: A channel, or a URL for :func:`~sendchannel.channel_from_url`.
        overrides: Keyword arguments of the URL's channel.

    Raises:
        SendError: The provider could not be reached or refused the credentials.
        ConfigurationError: The URL is not valid or names an unknown scheme.
        RuntimeError: Called from a thread that runs an event loop.
    """
    with SyncChannel(channel, **overrides) as facade:
        facade.verify()
