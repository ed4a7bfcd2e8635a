"""A sending process for the multi-process tests: ``python -m tests.throttle.worker MODE STORE LOG END``.

MODE is ``saturate`` (send through the throttler as fast as it allows, until the wall-clock time END) or
``hammer`` (ask with max_wait=0 as fast as possible, forever, until killed). STORE is ``sqlite:PATH`` or
``redis`` (the URL in the environment variable THROTTLE_REDIS_URL). Each send that reaches the channel
appends ``time recipients`` to LOG with one unbuffered write.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import time

from sendchannel import (
    Limits,
    Message,
    QuotaExceededError,
    Rate,
    RedisStore,
    SendResult,
    SqliteStore,
    Throttler,
)
from sendchannel._throttle import ThrottleStore
from sendchannel.testing import FakeChannel
from tests.throttle.helpers import message

#: The limits in saturate mode: small, so that a few seconds cover many windows.
SATURATE = (Rate(5, 0.5), Rate(12, 1.5, "recipients"))
#: The limit in hammer mode: spent at once, then refused for the rest of a long window.
HAMMER = Rate(20, 30.0)

KEY = "processes"


class FileLoggingChannel(FakeChannel):
    """A FakeChannel that appends each arrival to a file, so a killed process's sends are on disk."""

    def __init__(self, path: str, limits: Limits) -> None:
        super().__init__(limits=limits)
        self.descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def _send(self, message: Message) -> SendResult:
        os.write(self.descriptor, f"{time.time()!r} {len(message.recipients)}\n".encode())
        return await super()._send(message)


def open_store(spec: str) -> ThrottleStore:
    if spec.startswith("sqlite:"):
        return SqliteStore(spec.removeprefix("sqlite:"))
    return RedisStore(os.environ["THROTTLE_REDIS_URL"])


async def saturate(store: ThrottleStore, log: str, end: float) -> None:
    channel = FileLoggingChannel(log, Limits(rates=SATURATE))
    throttler = Throttler(channel, store=store, key=KEY, max_wait=math.inf)
    chooser = random.Random(os.getpid())
    while time.time() < end:
        await throttler.send(message(chooser.randint(1, 3)))


async def hammer(store: ThrottleStore, log: str) -> None:
    channel = FileLoggingChannel(log, Limits(rates=(HAMMER,)))
    throttler = Throttler(channel, store=store, key=KEY, max_wait=0.0)
    while True:
        try:
            await throttler.send(message())
        except QuotaExceededError:
            await asyncio.sleep(0.001)


async def main(mode: str, spec: str, log: str, end: float) -> None:
    store = open_store(spec)
    try:
        await (saturate(store, log, end) if mode == "saturate" else hammer(store, log))
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
