"""What routing and health cost a send: ChannelDirectory.send() beside pipeline(FakeChannel) alone.

    python bench/bench_directory.py            # about ten seconds
    python bench/bench_directory.py --quick    # fewer sends, for a smoke run

Both sides send through the same kind of stack, ``Retrying(Throttler(FakeChannel))`` with a MemoryStore
and no rate limits, so the difference is what the directory adds: finding the entry for the sender (its
copy of the entries, cached per sender), the health check, the layer that records the provider's answers.
The directory keeps its entries in a SQLite file and checks it for other processes' changes every half
second (as it does in production) while the sends run. Rows (median over batches, microseconds a send):

- pipeline: ``await pipeline(FakeChannel()).send(message)`` (the baseline).
- directory: ``await directory.send(message, owner=...)`` for a connected entry (cached after the first).

Target: the directory adds under 20 us a send.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from cryptography.fernet import Fernet

from sendchannel import ChannelDirectory, CredentialScope, MemoryStore, Message, pipeline
from sendchannel.testing import FakeChannel

MESSAGE = Message("alice@contoso.com", ["customer@example.net"], subject="bench", text="hello")


async def per_send(send: object, sends: int) -> float:
    started = time.perf_counter()
    for _ in range(sends):
        await send(MESSAGE)  # type: ignore[operator]
    return (time.perf_counter() - started) / sends * 1e6


async def run(batches: int, sends: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        database = f"sqlite:///{os.path.join(folder, 'directory.db')}"
        directory = ChannelDirectory(database, secrets=Fernet.generate_key(), throttle_store=MemoryStore())
        async with directory as d:
            await d.connect(
                "alice", "memory://bench", scope=CredentialScope.per_address("alice@contoso.com")
            )
            baseline = pipeline(FakeChannel(scope=CredentialScope.per_address("alice@contoso.com")))

            async def directory_send(message: Message) -> object:
                return await d.send(message, owner="alice")

            await directory_send(MESSAGE)  # build and cache the entry's channel outside the timing
            await baseline.send(MESSAGE)
            plain: list[float] = []
            routed: list[float] = []
            for _ in range(batches):  # interleaved, so both see the same machine load
                plain.append(await per_send(baseline.send, sends))
                routed.append(await per_send(directory_send, sends))
            await baseline.aclose()
    return plain, routed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sends, for a smoke run")
    args = parser.parse_args()
    batches, sends = (5, 500) if args.quick else (30, 2000)
    plain, routed = asyncio.run(run(batches, sends))
    base, directory = statistics.median(plain), statistics.median(routed)
    print(f"{'pipeline(FakeChannel)':<28} {base:8.2f} us a send (median of {batches} batches of {sends})")
    print(f"{'ChannelDirectory.send()':<28} {directory:8.2f} us a send")
    print(f"{'added by the directory':<28} {directory - base:8.2f} us a send  (target: under 20 us)")
    print(f"{'ratio directory / pipeline':<28} {directory / base:8.2f}")


if __name__ == "__main__":
    main()
