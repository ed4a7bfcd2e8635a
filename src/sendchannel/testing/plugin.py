"""The pytest plugin (entry point ``pytest11``): fixtures ``fake_channel``, ``outbox``, ``virtual_clock``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sendchannel._message import Message
from sendchannel.testing._clock import VirtualClock
from sendchannel.testing._fake import FakeChannel, _reset_memory_channels, memory_channel


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
def virtual_clock() -> VirtualClock:
    """A VirtualClock starting at 0: sleeps on it take no real time."""
    return VirtualClock()
