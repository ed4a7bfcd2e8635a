"""SparkpostChannel's speed on the shared HTTP base, against bare aiohttp and bare httpx POSTs.

    python bench/bench_http.py             # 2,000 messages a run, 3 runs (about half a minute)
    python bench/bench_http.py --quick     # 300 messages, 1 run (a smoke run)

A fast HTTP server (a bare asyncio protocol that answers every POST with SparkPost's 200 JSON) runs in its
own process on 127.0.0.1 (an OS-chosen port), so the client's CPU time is its own. Each row sends the same
messages of about 2 KB, 8 at a time, on one connection pool:

- SparkpostChannel: ``channel.send(message)`` (scope and size checks, MIME rendering, the JSON body,
  the Idempotency-Key, reading the answer).
- bare aiohttp: ``session.post`` of the same JSON bodies, rendered before the clock starts.
- bare httpx: ``client.post`` of the same bodies.

Each row prints messages a second (wall time) and client CPU microseconds a message (this process's
``time.process_time``), medians of the runs, then SparkpostChannel's ratios to bare aiohttp. Target:
SparkpostChannel at least 0.8x bare aiohttp's messages a second, under 300 us of client CPU a message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import httpx

from sendchannel import Message, SparkpostChannel

KEY = "bench-api-key"
CONCURRENCY = 8
ANSWER = json.dumps(
    {"results": {"total_rejected_recipients": 0, "total_accepted_recipients": 1, "id": "11668787484950529"}}
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)


# -- the server, in its own process ------------------------------------------------------------------


class _Http(asyncio.Protocol):
    """Reads requests (headers, then Content-Length bytes) and answers each at once; keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = 0
            if start >= 0:
                stop = head.find(b"\r\n", start)
                length = int(head[start + 15 : stop if stop > 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


def _serve(ready: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Http, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the clients ---------------------------------------------------------------------------------------


def messages(count: int) -> list[Message]:
    text = ("Dear customer, your order has shipped and will arrive soon. " * 30)[:1500] + "\n"
    return [
        Message("shop@example.com", [f"customer{i}@example.net"], subject=f"Order {i} shipped", text=text)
        for i in range(count)
    ]


async def _run_all(count: int, send: Callable[[int], Awaitable[object]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await send(index)

    await asyncio.gather(*(one(i) for i in range(count)))


Setup = Callable[[], Awaitable[tuple[Callable[[int], Awaitable[object]], Any]]]


async def measure(setup: Setup, count: int) -> tuple[float, float]:
    """(messages a second, client CPU microseconds a message) for one run."""
    send, close = await setup()
    await send(0)  # the connection and any lazy set-up, outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    await _run_all(count, send)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return count / wall, cpu / count * 1e6


def clients(port: int, batch: Sequence[Message]) -> dict[str, Setup]:
    base = f"http://127.0.0.1:{port}/api/v1"

    async def channel() -> tuple[Callable[[int], Awaitable[object]], Any]:
        sparkpost = SparkpostChannel(KEY, domains=["example.com"], base_url=base)
        return (lambda i: sparkpost.send(batch[i])), sparkpost.aclose

    # The same JSON the channel sends, rendered before the clock starts.
    probe = SparkpostChannel(KEY, domains=["example.com"], base_url=base)
    bodies = [probe._transmission(message) for message in batch]
    headers = {"Authorization": KEY, "Accept": "application/json", "Content-Type": "application/json"}

    async def bare_aiohttp() -> tuple[Callable[[int], Awaitable[object]], Any]:
        session = aiohttp.ClientSession()

        async def send(i: int) -> object:
            async with session.post(base + "/transmissions", data=bodies[i], headers=headers) as response:
                return await response.json()

        return send, session.close

    async def bare_httpx() -> tuple[Callable[[int], Awaitable[object]], Any]:
        client = httpx.AsyncClient()

        async def send(i: int) -> object:
            response = await client.post(base + "/transmissions", content=bodies[i], headers=headers)
            return response.json()

        return send, client.aclose

    return {"SparkpostChannel": channel, "bare aiohttp": bare_aiohttp, "bare httpx": bare_httpx}


# -- the run: options, the server process, the table of figures ---------------------------------------


def options(doc: str, argv: Sequence[str] | None) -> tuple[int, int]:
    """(messages a run, runs) from the command line: ``--quick``, ``--count``, ``--runs``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 messages, one run")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    return (300, 1) if args.quick else (args.count, args.runs)


@contextlib.contextmanager
def server() -> Iterator[int]:
    """The fast HTTP server in its own process; gives its port, and stops it on the way out."""
    receive, send_end = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_serve, args=(send_end,), daemon=True)
    process.start()
    try:
        yield receive.recv()
    finally:
        process.terminate()
        process.join(5)


def run(
    doc: str,
    argv: Sequence[str] | None,
    batch_of: Callable[[int], list[Message]],
    clients_of: Callable[[int, Sequence[Message]], dict[str, Setup]],
    width: int,
) -> dict[str, tuple[float, float]]:
    """Measure each client row ``runs`` times against the server and print its medians.

    Returns (messages a second, client CPU microseconds a message) for each row's name.
    """
    count, runs = options(doc, argv)
    with server() as port:
        batch = batch_of(count)
        size = len(batch[0].as_bytes())
        print(f"{count} messages of {size:,} bytes, {CONCURRENCY} at a time, {runs} run(s); medians")
        figures: dict[str, tuple[float, float]] = {}
        for name, setup in clients_of(port, batch).items():
            results = [asyncio.run(measure(setup, count)) for _ in range(runs)]
            rate = statistics.median(r[0] for r in results)
            cpu = statistics.median(r[1] for r in results)
            figures[name] = (rate, cpu)
            print(f"  {name:<{width}} {rate:>8,.0f} msg/s   {cpu:>6,.0f} us CPU a message")
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    figures = run(__doc__, argv, messages, clients, width=18)
    ours, bare = figures["SparkpostChannel"], figures["bare aiohttp"]
    print(
        f"SparkpostChannel / bare aiohttp: {ours[0] / bare[0]:.2f}x the messages a second (target 0.8x), "
        f"{ours[1] / bare[1]:.2f}x the CPU a message (target: under 300 us; {ours[1]:.0f} us)"
    )


if __name__ == "__main__":
    main()
