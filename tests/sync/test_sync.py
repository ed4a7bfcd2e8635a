"""sendchannel.sync: blocking calls from threads, thread pools and scripts; clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

import sendchannel.sync
from sendchannel import (
    BaseChannel,
    ConfigurationError,
    Message,
    SendResult,
    ThrottledError,
    register_channel,
)
from sendchannel._registry import _unregister
from sendchannel.sync import SyncChannel
from sendchannel.testing import FakeChannel


def message(to: str = "bob@example.com", subject: str = "Hi") -> Message:
    return Message("app@example.com", [to], subject=subject, text="Hello")


def facade_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sendchannel-sync-")]


class Gate(BaseChannel):
    """A channel whose sends wait until ``expected`` of them are in flight at once (or time out)."""

    name = "gate"

    def __init__(self, expected: int) -> None:
        from sendchannel import CredentialScope, Limits

        self.scope = CredentialScope.unrestricted()
        self.limits = Limits()
        self.expected = expected
        self.in_flight = 0
        self.peak = 0
        self.threads: set[str] = set()
        self.events: list[str] = []
        self._all_in: asyncio.Event | None = None

    async def _send(self, message: Message) -> SendResult:
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.threads.add(threading.current_thread().name)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.expected:
            self._all_in.set()
        try:
            await asyncio.wait_for(self._all_in.wait(), timeout=10)
        finally:
            self.in_flight -= 1
        self.events.append(f"sent {message.subject}")
        return SendResult(message.message_id, accepted=message.recipients, channel=self.name)

    async def aclose(self) -> None:
        self.events.append("closed")


@pytest.fixture
def scheme() -> Iterator[str]:
    """A URL scheme registered as a plugin would, building a fresh FakeChannel."""
    built: list[FakeChannel] = []

    def factory(url: object, **overrides: object) -> FakeChannel:
        channel = FakeChannel(name="plugin")
        built.append(channel)
        return channel

    register_channel("synctest", factory)
    yield "synctest"
    _unregister("synctest")


def test_send_blocks_until_sent_and_returns_the_result(fake_channel: FakeChannel) -> None:
    sent = message()
    with SyncChannel("memory://") as channel:
        result = channel.send(sent)
    assert [sent] == fake_channel.outbox
    assert sent.message_id == result.message_id
    assert ("bob@example.com",) == result.accepted


def test_errors_are_raised_as_the_channel_raised_them() -> None:
    fake = FakeChannel()
    error = ThrottledError("slow down", code=421, retry_after=3.0)
    fake.fail_next(error)
    with SyncChannel(fake) as channel, pytest.raises(ThrottledError) as info:
        channel.send(message())
    assert error is info.value


def test_verify_runs_the_channels_verify(fake_channel: FakeChannel) -> None:
    sendchannel.sync.verify("memory://")
    assert [] == fake_channel.attempts


def test_module_level_send_sends_and_closes_the_channel() -> None:
    fake = FakeChannel()
    result = sendchannel.sync.send(fake, message())
    assert [result.message_id] == [m.message_id for m in fake.outbox]
    assert fake.closed


def test_calls_from_many_threads_run_concurrently_on_one_loop_thread() -> None:
    gate = Gate(expected=12)
    with SyncChannel(gate) as channel:
        results: list[SendResult] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(channel.send(message(subject=f"m{i}"))))
            for i in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert 12 == len(results)
    assert 12 == gate.peak
    assert 1 == len(gate.threads)
    assert gate.threads.pop().startswith("sendchannel-sync-")


async def test_calls_from_a_running_loops_thread_pool_work() -> None:
    gate = Gate(expected=6)
    channel = SyncChannel(gate)
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(
        *(asyncio.to_thread(channel.send, message(subject=f"t{i}")) for i in range(3)),
        *(loop.run_in_executor(None, channel.send, message(subject=f"e{i}")) for i in range(3)),
    )
    await asyncio.to_thread(channel.close)
    assert 6 == len(results)
    assert "closed" == gate.events[-1]


async def test_a_blocking_call_in_an_event_loop_thread_is_refused_with_the_remedy() -> None:
    fake = FakeChannel()
    channel = SyncChannel(fake)
    with pytest.raises(RuntimeError, match=r"await the channel's own send\(\) instead.*to_thread"):
        channel.send(message())
    assert [] == fake.attempts
    await asyncio.to_thread(channel.close)


def test_close_waits_for_sends_in_flight_then_closes_the_channel_and_stops_the_loop() -> None:
    gate = Gate(expected=2)
    channel = SyncChannel(gate)
    first = threading.Thread(target=channel.send, args=(message(subject="first"),))
    first.start()
    while gate.in_flight < 1:
        threading.Event().wait(0.001)
    closer = threading.Thread(target=channel.close)
    closer.start()
    # Once closing, the facade refuses new calls while the first send still waits at the gate; open
    # the gate with a second send made directly on the facade's loop.
    while not channel.closed:
        threading.Event().wait(0.001)
    with pytest.raises(RuntimeError, match="is closed"):
        channel.send(message(subject="late"))
    assert channel.channel is gate
    runner = channel._runner
    assert runner is not None
    asyncio.run_coroutine_threadsafe(gate.send(message(subject="second")), runner.loop).result()
    closer.join()
    first.join()
    assert ({"sent first", "sent second"}, ["closed"]) == (set(gate.events[:2]), gate.events[2:])
    assert [] == facade_threads()


def test_close_twice_does_nothing_and_an_unused_facade_still_closes_its_channel() -> None:
    fake = FakeChannel()
    channel = SyncChannel(fake)
    channel.close()
    channel.close()
    assert fake.closed
    assert [] == facade_threads()
    assert "closed" in repr(channel)


@pytest.mark.no_secret_sweep
def test_a_facade_dropped_without_close_is_closed_by_garbage_collection() -> None:
    fake = FakeChannel()
    channel = SyncChannel(fake)
    channel.send(message())
    assert 1 == len(facade_threads())
    del channel
    gc.collect()
    assert fake.closed
    assert [] == facade_threads()


def test_a_facade_left_open_is_closed_when_the_interpreter_exits() -> None:
    script = textwrap.dedent(
        """
        from sendchannel import Message
        from sendchannel.sync import SyncChannel
        from sendchannel.testing import FakeChannel

        class Loud(FakeChannel):
            async def aclose(self):
                await super().aclose()
                print("closed", len(self.outbox))

        KEEP = SyncChannel(Loud())
        KEEP.send(Message("app@example.com", ["bob@example.com"], subject="Hi"))
        print("sent")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert ("sent\nclosed 1\n", "") == (out.stdout, out.stderr)


def test_ctrl_c_while_waiting_cancels_the_send_in_flight() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, signal, sys, threading
        from sendchannel import BaseChannel, CredentialScope, Limits, Message
        from sendchannel.sync import SyncChannel

        class Hang(BaseChannel):
            name = "hang"
            scope = CredentialScope.unrestricted()
            limits = Limits()
            async def _send(self, message):
                threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    sys.stdout.write("send cancelled\\n")
                    raise

        channel = SyncChannel(Hang())
        try:
            channel.send(Message("app@example.com", ["bob@example.com"]))
        except KeyboardInterrupt:
            sys.stdout.write("interrupted\\n")
        channel.close()
        print("closed")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert ({"interrupted", "send cancelled"}, ["closed"]) == (set(lines[:2]), lines[2:]), out.stderr


def test_overrides_need_a_url() -> None:
    with pytest.raises(TypeError, match="overrides only with a URL"):
        SyncChannel(FakeChannel(), timeout=3)


def test_an_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Unknown channel URL scheme 'nope'"):
        SyncChannel("nope://x")


def test_repr_never_shows_the_password(scheme: str) -> None:
    channel = SyncChannel(f"{scheme}://app:hunter2@mail.example.com")
    text = repr(channel)
    channel.close()
    assert "hunter2" not in text
    assert f"<SyncChannel {scheme}://app:***@mail.example.com open>" == text


def test_the_facade_exposes_the_channels_name_scope_and_limits() -> None:
    fake = FakeChannel(name="office")
    with SyncChannel(fake) as channel:
        assert ("office", fake.scope, fake.limits) == (channel.name, channel.scope, channel.limits)
