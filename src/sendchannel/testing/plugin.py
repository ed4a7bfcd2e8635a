"""The pytest plugin (entry point ``pytest11``): fixtures ``fake_channel``, ``outbox``, ``durable_outbox``,
``virtual_clock``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from sendchannel._message import Message
from sendchannel.testing._clock import VirtualClock
from sendchannel.testing._fake import FakeChannel, _reset_memory_channels, memory_channel

if TYPE_CHECKING:
    from sendchannel._outbox import Outbox


@pytest.fixture
def fake_channel() -> Iterator[FakeChannel]:
    """An empty FakeChannel; the same object that ``channel_from_url("memory://")`` returns."""
    _reset_memory_channels()
    channel = memory_channel()
    yield channel
    _reset_memory_channels()


@pytest.fixture
def outbox(fake_channel: FakeChannel) -> list[Message]:
    """The messages ``fake_channel`` (and ``memory://``) accepted during the test, in order."""
    return fake_channel.outbox


@pytest.fixture
def durable_outbox(fake_channel: FakeChannel) -> Outbox:
    """An :class:`~sendchannel.Outbox` in memory (``memory://``) that sends through ``fake_channel``.

    Code under test queues with ``put``; ``await durable_outbox.run(until_empty=True)`` sends what is due,
    and the ``outbox`` fixture then lists what went out::

        async def test_reminder_is_queued_for_tomorrow(durable_outbox, outbox):
            await schedule_reminder(user, outbox=durable_outbox)
            assert 1 == (await durable_outbox.counts())["queued"]
    """
    from sendchannel._outbox import Outbox

    return Outbox("memory://", channel=fake_channel)


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A VirtualClock starting at 0: sleeps on it take no real time."""
    return VirtualClock()
