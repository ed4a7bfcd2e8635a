"""A sending process for the crash tests: ``python -m tests.reliability._sender DATABASE LOG COUNT``.

It sends COUNT one-recipient messages with ``send_all(pipeline(channel, store=SqliteStore(DATABASE)))``,
8 at a time, where the channel is a FakeChannel that appends ``time recipients`` to LOG with one
unbuffered write as each send reaches it (``tests.throttle.worker.FileLoggingChannel``), so the sends of
a process killed with SIGKILL are on disk. The limits are :data:`RATES`, small enough that a few seconds
span many windows. It prints the report's summary when it finishes.
"""

from __future__ import annotations

import asyncio
import sys

from sendchannel import Limits, Rate, RetryPolicy, SqliteStore, pipeline, send_all
from tests.throttle.helpers import message
from tests.throttle.worker import FileLoggingChannel

#: 20 messages in any half second, 60 in any 3 seconds: 20 a second once the long window is full.
RATES = (Rate(20, 0.5), Rate(60, 3.0))
CONCURRENCY = 8


async def main(database: str, log: str, count: int) -> None:
    store = SqliteStore(database)
    channel = pipeline(
        FileLoggingChannel(log, Limits(rates=RATES)),
        store=store,
        retry=RetryPolicy(attempts=3, initial=0.05, maximum=0.1),
    )
    try:
        report = await send_all(channel, [message() for _ in range(count)], concurrency=CONCURRENCY)
    finally:
        await channel.aclose()
        await store.aclose()
    sys.stdout.write(f"{report}\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
