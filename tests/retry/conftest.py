"""Fixtures for the retry, failover and bulk tests: a virtual clock that records every wait."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sendchannel import CredentialScope, Limits, Message, Rate
from sendchannel.testing import FakeChannel, VirtualClock, set_testing


class RecordingClock(VirtualClock):
    """A VirtualClock that also keeps the length of every sleep asked of it, in order."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture(autouse=True)
def _testing_mode_off() -> Iterator[None]:
    """Every test starts and ends with the retry testing switch off, whatever a test did to it."""
    with set_testing(False):
        yield


def message(*to: str, sender: str = "app@example.com", subject: str = "Hi") -> Message:
    return Message(sender, list(to or ["bob@example.com"]), subject=subject, text="Hello")


def office365_like(clock: VirtualClock, *, enforce_limits: bool = False) -> FakeChannel:
    """A fake with Office 365's shape: one mailbox, 30 messages a minute, 10,000 recipients a day."""
    return FakeChannel(
        scope=CredentialScope.per_address("alice@contoso.com", provider="Office 365"),
        limits=Limits(
            rates=(Rate.per_minute(30), Rate.per_day(10_000, "recipients")),
            max_recipients_per_message=500,
            max_message_bytes=35 * 1024 * 1024,
            max_connections=3,
        ),
        name="office365",
        clock=clock,
        enforce_limits=enforce_limits,
    )


def sparkpost_like(clock: VirtualClock, *, enforce_limits: bool = False) -> FakeChannel:
    """A fake with SparkPost's shape: any address at contoso.com, an hourly plan limit."""
    return FakeChannel(
        scope=CredentialScope.per_domain("contoso.com", provider="SparkPost"),
        limits=Limits(rates=(Rate.per_hour(1_000),), max_message_bytes=20 * 1024 * 1024),
        name="sparkpost",
        clock=clock,
        enforce_limits=enforce_limits,
    )
