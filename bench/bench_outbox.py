"""The Outbox's throughput and database cost beside send_all, and a worker's memory with a long queue.

    python bench/bench_outbox.py                       # 20,000 messages, 4 workers, SQLite and PostgreSQL
    python bench/bench_outbox.py --messages 5000 --queued 100000 --databases sqlite

In one run, into Postfix's smtp-sink (aiosmtpd's sink when smtp-sink is missing), the same messages of
about 1 KB go:

* through ``send_all`` over one SmtpChannel (pool of 8, concurrency 8) in this process: the baseline;
* through an Outbox on SQLite and on PostgreSQL: ``put_many`` first (timed apart), then 4 worker processes
  (``Outbox.run(concurrency=32, until_empty=True)``, each with its own SmtpChannel, pool of 8) drain it.
  The clock starts when every worker has started, imported and connected (as send_all's leaves out making
  its channel and messages) and stops when the last one returns.

For each outbox it prints messages per second, the ratio to send_all, and what the database cost per
message: statements and transactions (commits) counted in the workers, and for PostgreSQL the server's own
count of commits (``pg_stat_database.xact_commit``) and, for the private server, its CPU time. Then the
peak RSS of one worker process that sends 10,000 messages from an outbox holding ``--queued`` items
(1,000,000 by default) beside one whose outbox holds 10,000: a worker's memory does not follow the
queue's length.

PostgreSQL is a private server started for the run (``initdb``/``pg_ctl`` on 127.0.0.1, as the tests do),
or the server of ``--postgresql URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))

from _smtp_servers import HOST, aiosmtpd_sink, find_postfix_tool, smtp_sink  # noqa: E402

from sendchannel import Message, Outbox, SmtpChannel, send_all  # noqa: E402
from sendchannel.testing import FakeChannel  # noqa: E402

CONCURRENCY = 8
#: Sends in flight in each worker: more than its connections, so its database round trips overlap the sends
#: (each worker still has a pool of CONCURRENCY connections, as send_all has).
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "32"))
BODY = ("Your order has shipped. " * 30 + "\n") * 1


def messages(count: int, start: int = 0) -> list[Message]:
    return [
        Message("shop@example.com", [f"customer{n}@example.net"], subject=f"Order {n} shipped", text=BODY)
        for n in range(start, start + count)
    ]


# -- a worker process ------------------------------------------------------------------------------------


class _Counting:
    """Counts the statements and transactions a store's database runs (wraps the shared layer's object)."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.statements = 0
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    async def execute(self, sql: str, params: Any = (), *, write: bool = True) -> Any:
        self.statements += 1
        self.transactions += 1
        return await self._database.execute(sql, params, write=write)

    async def batch(self, statements: Any, *, write: bool = True) -> Any:
        self.statements += len(statements)
        self.transactions += 1
        return await self._database.batch(statements, write=write)

    async def run(self, body: Any, *, write: bool = True) -> Any:
        counter = self

        class _Tx:
            def __init__(self, tx: Any) -> None:
                self._tx = tx
                self.dialect = tx.dialect

            async def execute(self, sql: str, params: Any = ()) -> Any:
                counter.statements += 1
                return await self._tx.execute(sql, params)

            async def executemany(self, sql: str, params: Any) -> Any:
                counter.statements += len(params)
                return await self._tx.executemany(sql, params)

        self.transactions += 1
        return await self._database.run(lambda tx: body(_Tx(tx)), write=write)


def _peak_rss_kib() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (ru_maxrss keeps the parent's peak,
    taken at fork, so a worker started by a parent that filled a large outbox would look large)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _work(database: str, port: int, sends: int | None) -> dict[str, float]:
    channel = SmtpChannel(HOST, port, tls="none", pool_size=CONCURRENCY, local_hostname="bench.localhost")
    outbox = Outbox(database, channel=channel)
    await outbox.store.setup()
    counting = _Counting(outbox.store.database)  # type: ignore[attr-defined]
    outbox.store.database = counting  # type: ignore[attr-defined]
    sent = 0
    # Started, imported and set up: wait for the word to go, so that the timing (as send_all's) leaves out
    # the interpreter's start and the imports, and the workers start together.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    def progress(outcome: str) -> None:
        nonlocal sent
        sent += outcome == "sent"
        if sends is not None and sent >= sends:
            outbox.stop()

    await outbox.run(concurrency=WORKER_CONCURRENCY, until_empty=sends is None, progress=progress)
    await outbox.aclose()
    await channel.aclose()
    return {
        "sent": sent,
        "statements": counting.statements,
        "transactions": counting.transactions,
        "max_rss_kib": _peak_rss_kib(),
        "cpu": time.process_time(),
    }


def worker_main(database: str, port: int, sends: int | None) -> None:
    report = asyncio.run(_work(database, port, sends))
    sys.stdout.write(json.dumps(report) + "\n")


def start_worker(database: str, port: int, sends: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", database, str(port), str(sends or 0)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# -- the runs ----------------------------------------------------------------------------------------------


def bench_send_all(port: int, count: int) -> float:
    batch = messages(count)

    async def main() -> float:
        channel = SmtpChannel(HOST, port, tls="none", pool_size=CONCURRENCY, local_hostname="bench.localhost")
        started = time.perf_counter()
        report = await send_all(channel, batch, concurrency=CONCURRENCY)
        elapsed = time.perf_counter() - started
        await channel.aclose()
        assert len(report.sent) == count, f"send_all sent {len(report.sent)} of {count}"
        return count / elapsed

    return asyncio.run(main())


async def _fill(database: str, count: int, chunk: int = 5000) -> float:
    async with Outbox(database, channel=FakeChannel()) as outbox:
        started = time.perf_counter()
        for start in range(0, count, chunk):
            await outbox.put_many(messages(min(chunk, count - start), start))
        return count / (time.perf_counter() - started)


async def _pg_commits(database: str) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


def _server_cpu(pid: int | None) -> float:
    """CPU seconds of a private PostgreSQL server: the postmaster and its children that ended (the workers'
    backends end with their connections; autovacuum's count too)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def bench_outbox(
    label: str, database: str, port: int, count: int, workers: int, server_pid: int | None = None
) -> dict[str, float]:
    put_rate = asyncio.run(_fill(database, count))
    commits_before = asyncio.run(_pg_commits(database)) if database.startswith("postgresql") else None
    cpu_before = _server_cpu(server_pid)
    processes = [start_worker(database, port) for _ in range(workers)]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", "a worker did not start"
    started = time.perf_counter()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        assert process.returncode == 0, f"a worker failed with status {process.returncode}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.perf_counter() - started
    sent = sum(r["sent"] for r in reports)
    assert sent == count, f"{label}: the workers sent {sent} of {count}"
    result = {
        "rate": count / elapsed,
        "put_rate": put_rate,
        "statements": sum(r["statements"] for r in reports) / count,
        "transactions": sum(r["transactions"] for r in reports) / count,
        "cpu_us": sum(r["cpu"] for r in reports) / count * 1e6,
    }
    if server_pid is not None:
        result["server_cpu_us"] = (_server_cpu(server_pid) - cpu_before) / count * 1e6
    if commits_before is not None:
        # Minus this query's own transaction.
        result["server_commits"] = (asyncio.run(_pg_commits(database)) - commits_before - 1) / count
    return result


def bench_rss(database: str, port: int, queued: int, sends: int) -> float:
    """Peak RSS (MiB) of one worker that sends ``sends`` messages from an outbox of ``queued`` items."""
    asyncio.run(_fill(database, queued))
    process = start_worker(database, port, sends)
    out, _ = process.communicate("go\n", timeout=3600)
    assert process.returncode == 0
    report = json.loads(out.strip().splitlines()[-1])
    return float(report["max_rss_kib"]) / 1024


@contextlib.contextmanager
def postgresql(url: str | None) -> Iterator[Any]:
    if url is not None:
        yield lambda: url, None
        return
    from tests.pg import PostgresServer

    with PostgresServer.start() as server:
        yield server.new_database, server.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--queued", type=int, default=1_000_000, help="items queued for the RSS figure")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rss-only", action="store_true", help="only the RSS figures")
    parser.add_argument(
        "--postgresql", metavar="URL", help="an existing server's database (default: private)"
    )
    args = parser.parse_args()
    kinds = args.databases.split(",")
    binary = find_postfix_tool("smtp-sink")
    server = smtp_sink(binary) if binary else aiosmtpd_sink()
    print(
        f"server: {'Postfix smtp-sink' if binary else 'aiosmtpd sink (smtp-sink not installed)'}; "
        f"{args.messages:,} messages of {len(messages(1)[0].as_bytes()):,} bytes; "
        f"{args.workers} worker processes x concurrency {WORKER_CONCURRENCY} "
        f"(pools of {CONCURRENCY} connections)"
    )
    with (
        server as port,
        tempfile.TemporaryDirectory() as scratch,
        postgresql(args.postgresql) as (new_pg, pg_pid),
    ):
        baseline = 0.0 if args.rss_only else bench_send_all(port, args.messages)
        if baseline:
            print(f"send_all, one process:   {baseline:8.0f} msg/s  (1.00x)")
        for kind in kinds if baseline else ():
            database = f"sqlite:///{scratch}/bench.db" if kind == "sqlite" else new_pg()
            pid = pg_pid if kind == "postgresql" else None
            result = bench_outbox(kind, database, port, args.messages, args.workers, pid)
            extra = f", server commits {result['server_commits']:.2f}" if "server_commits" in result else ""
            if "server_cpu_us" in result:
                extra += f", server CPU {result['server_cpu_us']:.0f} us"
            print(
                f"Outbox on {kind:10s}:   {result['rate']:8.0f} msg/s  ({result['rate'] / baseline:.2f}x)  "
                f"put_many {result['put_rate']:,.0f} msg/s; per message: "
                f"{result['statements']:.2f} statements, {result['transactions']:.2f} transactions{extra}, "
                f"worker CPU {result['cpu_us']:.0f} us"
            )
        if args.queued:
            for kind in kinds:
                small = f"sqlite:///{scratch}/small.db" if kind == "sqlite" else new_pg()
                large = f"sqlite:///{scratch}/large.db" if kind == "sqlite" else new_pg()
                sends = 10_000
                small_rss = bench_rss(small, port, sends, sends)
                started = time.perf_counter()
                large_rss = bench_rss(large, port, args.queued, sends)
                print(
                    f"worker peak RSS on {kind}: {small_rss:.1f} MiB with {sends:,} queued, "
                    f"{large_rss:.1f} MiB with {args.queued:,} queued ({large_rss / small_rss:.2f}x; "
                    f"filling and sending took {time.perf_counter() - started:.0f} s)"
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) or None)
    else:
        main()
