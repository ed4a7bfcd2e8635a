"""The ``worker`` and ``outbox`` commands: run workers on an outbox database, and say where it stands.

``sendchannel._cli`` calls :func:`add_parsers` to add them; each command's ``run(args, out)`` returns the
exit status, as the other commands' do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import signal
import time
from typing import Any, TextIO

from sendchannel._outbox._item import STATUSES, from_timestamp
from sendchannel._outbox._outbox import Outbox
from sendchannel._outbox._store import Summary
from sendchannel._outbox._worker import SHORT_WAIT

__all__ = ["add_parsers", "run_outbox", "run_worker"]


def add_parsers(commands: Any) -> None:
    """Add ``worker`` and ``outbox`` to the command line's subparsers."""
    worker = commands.add_parser(
        "worker",
        help="send what an outbox holds, until stopped (SIGTERM or Ctrl-C finishes what is in flight)",
        description="Run a worker on an outbox database: claim due items, send them through the directory "
        "in the same database (or through --channel), record each outcome. Run as many as you like, on "
        "any host that reaches the database. SIGTERM or Ctrl-C stops it after the sends in flight.",
    )
    worker.add_argument("database", metavar="DATABASE_URL", help="sqlite:///path or postgresql://...")
    worker.add_argument(
        "--channel",
        metavar="URL",
        help="send every message through this channel instead of the directory "
        "(its password in SENDCHANNEL_PASSWORD or the URL)",
    )
    worker.add_argument(
        "--store",
        metavar="STORE",
        help="with --channel: the throttle store shared by the workers, "
        "sqlite:PATH or redis://host:port/db (default: this process only)",
    )
    worker.add_argument("--concurrency", type=int, default=8, help="sends in flight at once (default 8)")
    worker.add_argument("--until-empty", action="store_true", help="stop once nothing is due or in flight")
    worker.set_defaults(run=run_worker)

    outbox = commands.add_parser(
        "outbox",
        help="show an outbox: counts by status and owner, the oldest due item, unknown outcomes",
        description="Show where an outbox stands: how many items are in each status for each owner, the "
        "oldest item waiting, and the items whose outcome is unknown, with their error.",
    )
    outbox.add_argument("database", metavar="DATABASE_URL", help="sqlite:///path or postgresql://...")
    outbox.set_defaults(run=run_outbox)


# -- worker ------------------------------------------------------------------------------------------------


class _Progress:
    """The worker's progress line: redrawn in place on a terminal, a line a minute elsewhere."""

    def __init__(self, stream: TextIO, *, every: float | None = None) -> None:
        self.stream = stream
        self.counts = dict.fromkeys(("sent", "failed", "unknown", "retry", "deferred"), 0)
        self._tty = stream.isatty()
        self._every = every if every is not None else (0.5 if self._tty else 60.0)
        self._started = time.monotonic()
        self._shown = 0.0
        self._changed = False

    def __call__(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._changed = True
        now = time.monotonic()
        if now - self._shown >= self._every:
            self.show()

    async def tick(self) -> None:
        """Redraw what changed since the last line, every so often (the last outcomes of a burst too)."""
        while True:
            await asyncio.sleep(self._every)
            if self._changed:
                self.show()

    def render(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.counts["sent"] / elapsed
        counts = "  ".join(f"{name} {count}" for name, count in self.counts.items())
        return f"{counts}  ({rate:.1f} sent/s)"

    def show(self, *, final: bool = False) -> None:
        self._shown = time.monotonic()
        self._changed = False
        if self._tty:
            self.stream.write("\r" + self.render() + ("\n" if final else ""))
            self.stream.flush()
        else:
            print(self.render(), file=self.stream, flush=True)


def _channel(args: argparse.Namespace) -> Any:
    from sendchannel._cli import _build_channel
    from sendchannel._pipeline import pipeline

    channel = _build_channel(argparse.Namespace(url=args.channel, ca_file=None, timeout=None))
    store = None
    if args.store:
        from sendchannel._cli import _open_store

        store = _open_store(args.store)
    # The outbox retries and defers itself: no retry layer, and a short wait for permits.
    return pipeline(channel, store=store, max_wait=SHORT_WAIT, retry=None)


def run_worker(args: argparse.Namespace, out: Any) -> int:
    """``sendchannel worker DATABASE_URL``."""
    from sendchannel.errors import ConfigurationError

    if args.concurrency < 1:
        raise ConfigurationError(f"--concurrency must be 1 or more, got {args.concurrency}")
    if args.store and not args.channel:
        raise ConfigurationError("--store goes with --channel; the directory keeps its own throttle store")
    return asyncio.run(_work(args, out))


async def _work(args: argparse.Namespace, out: Any) -> int:
    directory = None
    channel = None
    if args.channel:
        channel = _channel(args)
    else:
        from sendchannel._directory import ChannelDirectory

        directory = ChannelDirectory(args.database)
    progress = _Progress(out.stdout)
    outbox = Outbox(args.database, channel=channel, directory=directory)
    loop = asyncio.get_running_loop()
    stopping: list[str] = []
    worker: asyncio.Task[None] | None = None

    def stop(name: str) -> None:
        if not stopping:
            out.error(f"\n{name}: finishing the sends in flight, then stopping (again to stop at once)")
            stopping.append(name)
            outbox.stop()
        elif worker is not None:
            worker.cancel()

    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stop, signal.Signals(number).name)
    out.line(f"sendchannel worker on {outbox.store.where}: concurrency {args.concurrency}")
    ticker = asyncio.create_task(progress.tick())
    try:
        async with contextlib.AsyncExitStack() as stack:
            if directory is not None:
                await stack.enter_async_context(directory)
            await stack.enter_async_context(outbox)
            worker = asyncio.create_task(
                outbox.run(concurrency=args.concurrency, until_empty=args.until_empty, progress=progress)
            )
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    finally:
        ticker.cancel()
        if channel is not None:
            await channel.aclose()
    progress.show(final=True)
    return 0


# -- outbox ------------------------------------------------------------------------------------------------


def run_outbox(args: argparse.Namespace, out: Any) -> int:
    """``sendchannel outbox DATABASE_URL``."""
    summary, where = asyncio.run(_summary(args.database))
    for line in describe(summary, where, now=time.time()):
        out.line(line)
    return 0


async def _summary(database: str) -> tuple[Summary, str]:
    from sendchannel._outbox._outbox import open_store

    store = open_store(database)
    try:
        await store.setup()
        return await store.summary(time.time()), store.where
    finally:
        await store.aclose()


def _when(seconds: float, now: float) -> str:
    moment = from_timestamp(seconds).replace(microsecond=0)
    delta = round(seconds - now)
    if delta > 0:
        return f"{moment.isoformat()} (in {datetime.timedelta(seconds=delta)})"
    return f"{moment.isoformat()} ({datetime.timedelta(seconds=-delta)} ago)"


def describe(summary: Summary, where: str, *, now: float) -> list[str]:
    """The report's lines."""
    lines = [f"Outbox {where}"]
    owners = sorted({owner for owner, _ in summary.counts}, key=lambda owner: (owner is None, owner or ""))
    if not owners:
        lines.append("  empty: nothing was ever put, or everything was purged")
        return lines
    totals = {status: sum(n for (_, s), n in summary.counts.items() if s == status) for status in STATUSES}
    header = ["owner", *STATUSES]
    rows = [
        [owner if owner is not None else "(none)"]
        + [str(summary.counts.get((owner, s), 0)) for s in STATUSES]
        for owner in owners
    ]
    rows.append(["total"] + [str(totals[s]) for s in STATUSES])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append(
            "  "
            + "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
    if summary.oldest_queued is not None:
        lines.append(f"Due now: {summary.due}; oldest waiting item due {_when(summary.oldest_queued, now)}")
    else:
        lines.append("Nothing is waiting.")
    if summary.unknown:
        lines.append(
            f"Unknown outcome ({totals['unknown']}): the provider may or may not have these; they are not "
            "sent again. Check the recipients' mailboxes or the provider's logs by Message-ID."
        )
        for item in summary.unknown:
            lines.append(f"  #{item.id} {item.message_id} owner={item.owner or '(none)'}: {item.error}")
        if totals["unknown"] > len(summary.unknown):
            lines.append(f"  ... and {totals['unknown'] - len(summary.unknown)} more")
    return lines
