"""What a rate-limit refusal at MAIL FROM costs against a real Postfix, before and after sending MAIL alone.

    sudo python bench/bench_postfix_rate.py                     # 80 messages, anvil allows 20 a minute
    sudo python bench/bench_postfix_rate.py --messages 200 --limit 40 --pool 8 --repeat 5

Each run starts a private Postfix (tests/postfix/instance.py: its own directory, free 127.0.0.1 ports, stopped
by pid; root and the postfix and dovecot-core packages are needed) whose anvil allows a client ``--limit``
messages a minute (``smtpd_client_message_rate_limit``), and sends ``--messages`` messages of two
recipients each through a bare SmtpChannel (no throttler, no retries: every refusal comes back at once),
``--pool`` sends at a time on as many connections.

Two ways of sending, each against a fresh instance (so anvil's count starts at zero), in the same run:

* ``before``: MAIL, both RCPTs and DATA are always pipelined, as sendchannel did before; once Postfix refuses
  MAIL (450 4.7.1 too much mail), it answers the RCPTs and DATA written behind it with 503/554, counts
  each as an error, sleeps a second before each reply once a connection has 10 errors
  (smtpd_soft_error_limit) and drops it with 421 at 20 (smtpd_hard_error_limit).
* ``after``: once MAIL was refused for now, the next transactions send MAIL alone and pipeline the rest
  only when it is accepted, so a refused transaction costs Postfix one error.

Printed: wall time, how the sends ended, the errors Postfix counted (failed MAIL, RCPT and DATA, from its
``disconnect from`` lines), connections opened and connections Postfix dropped for too many errors;
medians over ``--repeat`` runs, and the before/after ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.postfix.instance import PostfixInstance, unavailable  # noqa: E402
from tests.smtp.servers import Certificates  # noqa: E402

import sendchannel._smtp._session as session  # noqa: E402
from sendchannel import Message, SendError, SmtpChannel  # noqa: E402

_STATS = re.compile(r"\b(mail|rcpt|data)=(\d+)/(\d+)")


@dataclass
class Run:
    seconds: float
    outcomes: collections.Counter[str]
    postfix_errors: int
    connections: int
    dropped: int


@contextmanager
def behaviour(name: str) -> Iterator[None]:
    """``before``: the old rule (never send MAIL alone); ``after``: the library as it is."""
    original = session._mail_alone_after
    if name == "before":
        session._mail_alone_after = lambda code: False
    try:
        yield
    finally:
        session._mail_alone_after = original


async def send_batch(
    port: int, messages: list[Message], pool: int
) -> tuple[float, collections.Counter[str], int]:
    outcomes: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(pool)
    async with SmtpChannel("127.0.0.1", port, tls="none", pool_size=pool, timeout=60.0,
                           local_hostname="bench.localhost") as channel:

        async def one(message: Message) -> None:
            async with gate:
                try:
                    await channel.send(message)
                    outcomes["delivered"] += 1
                except SendError as error:
                    outcomes[f"{type(error).__name__} {error.code}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(message) for message in messages))
        seconds = time.perf_counter() - started
        opened = channel._pool.opened
    return seconds, outcomes, opened


def postfix_counts(postfix: PostfixInstance, connections: int) -> tuple[int, int]:
    """Failed MAIL/RCPT/DATA over every connection, and connections dropped for too many errors."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line for line in postfix.log().splitlines() if "disconnect from" in line and "mail=" in line]
        if len(lines) >= connections or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    errors = 0
    for line in lines:
        for _, ok, total in _STATS.findall(line):
            errors += int(total) - int(ok)
    dropped = postfix.log().count("too many errors")
    return errors, dropped


def one_run(name: str, args: argparse.Namespace, certificates: Certificates) -> Run:
    messages = [
        Message("shop@example.com", ["bob@example.net", "carol@example.net"], subject=f"Order {i}",
                text="Your order has shipped.\n")
        for i in range(args.messages)
    ]
    settings = {"smtpd_client_message_rate_limit": str(args.limit), "anvil_rate_time_unit": "60s"}
    with PostfixInstance(certificates=certificates, mailboxes=("bob", "carol"), settings=settings) as postfix:
        with behaviour(name):
            seconds, outcomes, opened = asyncio.run(send_batch(postfix.port, messages, args.pool))
        errors, dropped = postfix_counts(postfix, opened)
    return Run(seconds, outcomes, errors, opened, dropped)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=80)
    parser.add_argument("--limit", type=int, default=20, help="messages a minute anvil allows")
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    logging.getLogger("sendchannel").setLevel(logging.ERROR)  # every refusal would log a warning
    certificates = Certificates()
    runs: dict[str, list[Run]] = {"before": [], "after": []}
    for _ in range(args.repeat):
        for name in runs:  # alternate, so a change in the machine's load touches both alike
            runs[name].append(one_run(name, args, certificates))
    print(f"{args.messages} messages x 2 recipients, anvil {args.limit}/minute, pool {args.pool}, "
          f"median of {args.repeat}")
    print(f"{'':8} {'seconds':>8} {'postfix errors':>15} {'connections':>12} {'dropped 421':>12}  outcomes")
    medians = {}
    for name, items in runs.items():
        seconds = statistics.median(r.seconds for r in items)
        errors = statistics.median(r.postfix_errors for r in items)
        connections = statistics.median(r.connections for r in items)
        dropped = statistics.median(r.dropped for r in items)
        medians[name] = (seconds, errors)
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(items[-1].outcomes.items()))
        print(f"{name:8} {seconds:8.2f} {errors:15g} {connections:12g} {dropped:12g}  {outcomes}")
    (before_s, before_e), (after_s, after_e) = medians["before"], medians["after"]
    print(f"after/before: time x{after_s / before_s:.2f}, errors counted by Postfix "
          f"x{after_e / before_e if before_e else float('nan'):.2f}")


if __name__ == "__main__":
    main()
