"""A worker process for the outbox's crash tests.

``python -m tests.outbox._worker_process DATABASE_URL PORT THROTTLE_DB MODE`` runs ``Outbox.run`` on
DATABASE_URL, sending through an SmtpChannel to 127.0.0.1:PORT inside :data:`RATE` (a throttle ledger in
the SQLite file THROTTLE_DB that every worker shares), until nothing is due or leased. MODE ``idempotent``
declares the channel idempotent (the server plays a provider that honours the Message-ID as a key).
"""

from __future__ import annotations

import asyncio
import sys

from sendchannel import Limits, Outbox, Rate, RetryPolicy, SmtpChannel, SqliteStore, pipeline

#: The bound the throttler keeps across every worker (checked at the server). Two-second windows, so the
#: check at the server can allow for half a second between a permit and its message's arrival on a loaded
#: machine and still be exact (see JITTER in test_crash.py).
RATE = Rate(400, 2.0)
LEASE = 2.0
RETRY = RetryPolicy(attempts=6, initial=0.05, maximum=0.2, max_elapsed=None)


async def main(database: str, port: int, throttle_db: str, mode: str) -> None:
    smtp = SmtpChannel("127.0.0.1", port, tls="none", limits=Limits(rates=(RATE,)), timeout=10.0)
    if mode == "idempotent":
        smtp.idempotent = True  # type: ignore[attr-defined]
    store = SqliteStore(throttle_db)
    channel = pipeline(smtp, store=store, max_wait=1.0, retry=None)
    async with Outbox(database, channel=channel, lease=LEASE, retry=RETRY) as outbox:
        await outbox.run(concurrency=8, until_empty=True)
    await channel.aclose()
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
