"""The blocking facade's cost: a send through SyncChannel beside the same send awaited directly.

    python bench/bench_sync.py            # about ten seconds
    python bench/bench_sync.py --quick    # fewer sends, for a smoke run

Every figure is a FakeChannel send (no I/O), so what is measured is the facade: handing the call to its
event loop thread and waiting for the answer. The baseline, measured in the same run, is the same send
awaited on a running loop. Rows:

- await: ``await channel.send(message)`` in a loop (the baseline).
- SyncChannel, 1 thread: ``facade.send(message)`` from one thread, one call at a time.
- SyncChannel, N threads: N threads calling one facade at once (throughput of the shared loop).
- sendchannel.sync.send(): a facade built and closed for each message (loop thread start and stop).

Target: one thread's overhead under 100 us a send; many threads at least as fast in total as one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable

import sendchannel.sync
from sendchannel import Message
from sendchannel.sync import SyncChannel
from sendchannel.testing import FakeChannel

MESSAGE = Message("alice@example.com", ["bob@example.net"], subject="bench", text="hello")


def best_of(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


def awaited(sends: int) -> float:
    async def run() -> float:
        channel = FakeChannel()
        started = time.perf_counter()
        for _ in range(sends):
            await channel.send(MESSAGE)
        return time.perf_counter() - started

    return asyncio.run(run()) / sends


def one_thread(sends: int) -> float:
    with SyncChannel(FakeChannel()) as facade:
        facade.send(MESSAGE)  # start the loop thread outside the timing
        started = time.perf_counter()
        for _ in range(sends):
            facade.send(MESSAGE)
        return (time.perf_counter() - started) / sends


def many_threads(sends: int, threads: int) -> float:
    with SyncChannel(FakeChannel()) as facade:
        facade.send(MESSAGE)
        each = sends // threads
        barrier = threading.Barrier(threads + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(each):
                facade.send(MESSAGE)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        return (time.perf_counter() - started) / (each * threads)


def one_shot(sends: int) -> float:
    channel = FakeChannel()
    started = time.perf_counter()
    for _ in range(sends):
        sendchannel.sync.send(channel, MESSAGE)
        channel.closed = False  # the fake refuses to send once closed; reopen it for the next round
    return (time.perf_counter() - started) / sends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sends, for a smoke run")
    options = parser.parse_args()
    sends = 2_000 if options.quick else 20_000
    runs = 3
    baseline = best_of(runs, lambda: awaited(sends))
    rows = [("await channel.send() (baseline)", baseline)]
    rows.append(("SyncChannel, 1 thread", best_of(runs, lambda: one_thread(sends))))
    for threads in (4, 16):
        label = f"SyncChannel, {threads} threads"
        rows.append((label, best_of(runs, lambda t=threads: many_threads(sends, t))))
    rows.append(("sendchannel.sync.send(), new facade each", best_of(runs, lambda: one_shot(sends // 20))))
    print(f"{'':44} {'us/send':>9} {'x baseline':>11} {'overhead us':>12}")
    for label, seconds in rows:
        overhead = (seconds - baseline) * 1e6
        print(f"{label:44} {seconds * 1e6:9.1f} {seconds / baseline:11.1f} {overhead:12.1f}")
    one = rows[1][1]
    print()
    print(f"one thread's overhead: {(one - baseline) * 1e6:.1f} us a send (target < 100 us)")
    spread = statistics.mean(seconds for _, seconds in rows[2:4])
    print(f"many threads vs one: {one / spread:.2f}x the throughput (target >= 1.0)")


if __name__ == "__main__":
    main()
