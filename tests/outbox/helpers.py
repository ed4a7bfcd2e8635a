"""Helpers for the outbox tests: messages, and a fake channel that counts its sends in flight."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from sendchannel import Message, SendResult
from sendchannel.testing import FakeChannel


def message(index: int = 0, sender: str = "alice@example.com", recipients: int = 1) -> Message:
    """A small message from ``sender``, numbered by its subject."""
    return Message(
        sender, [f"r{index}-{n}@example.net" for n in range(recipients)], subject=f"m{index}", text="hello"
    )


def at(seconds: float) -> datetime.datetime:
    """A UTC datetime for seconds since the epoch (VirtualClock times)."""
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


class CountingChannel(FakeChannel):
    """A FakeChannel that records the most sends it had in flight at once, and when each reached it."""

    def __init__(self, *args: Any, idempotent: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idempotent = idempotent
        self.in_flight = 0
        self.most_in_flight = 0
        self.log: list[tuple[float, str]] = []
        self._changed: asyncio.Condition | None = None

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checked each time a send starts or ends."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(condition)

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def _send(self, message: Message) -> SendResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.log.append((self.clock.now(), message.subject))
        await self._notify()
        try:
            return await super()._send(message)
        finally:
            self.in_flight -= 1
            await self._notify()

    async def send(self, message: Message) -> SendResult:
        result = await super().send(message)
        await self._notify()
        return result
