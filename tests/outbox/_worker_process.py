"""A worker process for the outbox's crash tests.

``python -m tests.outbox._worker_process DATABASE_URL PORT THROTTLE_DB MODE`` runs ``Outbox.run`` on
DATABASE_URL until nothing is due or leased, inside :data:`RATE` (a throttle ledger in the SQLite file
THROTTLE_DB that every worker shares). MODE ``plain`` sends through an SmtpChannel to the SMTP log server on
127.0.0.1:PORT; MODE ``idempotent`` through a SparkpostChannel (idempotent: every transmission carries its
Message-ID as the Idempotency-Key) to the SparkPost double on 127.0.0.1:PORT.
"""

from __future__ import annotations

import asyncio
import sys

from sendchannel import (
    BaseChannel,
    Limits,
    Outbox,
    Rate,
    RetryPolicy,
    SmtpChannel,
    SparkpostChannel,
    SqliteStore,
    pipeline,
)
from tests.sparkpost.server import API_KEY

#: The bound the throttler keeps across every worker (checked at the server). Two-second windows, so the
#: check at the server can allow for half a second between a permit and its message's arrival on a loaded
#: machine and still be exact (see JITTER in test_crash.py).
RATE = Rate(400, 2.0)
LEASE = 2.0
RETRY = RetryPolicy(attempts=6, initial=0.05, maximum=0.2, max_elapsed=None)
#: The sending domain the SparkPost double's account has verified (the crash test's sender is at it).
DOMAIN = "example.com"


def provider(port: int, mode: str) -> BaseChannel:
    """The channel to the test's server: SMTP (``plain``) or SparkPost (``idempotent``), both inside RATE."""
    limits = Limits(rates=(RATE,))
    if mode == "idempotent":
        base_url = f"http://127.0.0.1:{port}/api/v1"
        return SparkpostChannel(API_KEY, domains=[DOMAIN], base_url=base_url, limits=limits, timeout=10.0)
    if mode == "plain":
        return SmtpChannel("127.0.0.1", port, tls="none", limits=limits, timeout=10.0)
    raise SystemExit(f"unknown mode {mode!r}: plain or idempotent")


async def main(database: str, port: int, throttle_db: str, mode: str) -> None:
    store = SqliteStore(throttle_db)
    channel = pipeline(provider(port, mode), store=store, max_wait=1.0, retry=None)
    async with Outbox(database, channel=channel, lease=LEASE, retry=RETRY) as outbox:
        await outbox.run(concurrency=8, until_empty=True)
    await channel.aclose()
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
