"""Helpers for the throttle tests: a fake channel that logs when each send reached it."""

from __future__ import annotations

from typing import Any

from sendchannel import Message, SendResult
from sendchannel.testing import FakeChannel


class LoggingChannel(FakeChannel):
    """A FakeChannel that logs ``(clock time, recipients)`` of every send that reached it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, int]] = []

    async def _send(self, message: Message) -> SendResult:
        self.log.append((self.clock.now(), len(message.recipients)))
        return await super()._send(message)


def message(recipients: int = 1, sender: str = "alice@example.com") -> Message:
    """A message from ``sender`` to ``recipients`` distinct recipients."""
    return Message(sender, [f"r{index}@example.net" for index in range(recipients)], subject="s", text="t")
