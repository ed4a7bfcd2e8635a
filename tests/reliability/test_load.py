"""Load: 50,000 messages through send_all(pipeline(...)), every one accounted for, nothing sent twice.

Over a FakeChannel that fails at random (seeded) on a VirtualClock, and over a real SMTP server in another
process that refuses, throttles and drops connections now and then. The report must agree with what the
provider received, message by message, and the throttle's sliding-window bound must hold over the run.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path

import pytest

from sendchannel import (
    BulkReport,
    DeliveryUnknownError,
    Limits,
    Outcome,
    Rate,
    RetryPolicy,
    SendError,
    SmtpChannel,
    pipeline,
    send_all,
)
from sendchannel.testing import VirtualClock
from tests.reliability._load import (
    FaultMix,
    ProgressLog,
    RandomFaultChannel,
    agreement,
    batch,
    fault_server,
    window_excess,
)

MESSAGES = 50_000
SEED = 20261126


@pytest.mark.slow
async def test_50000_messages_over_a_faulty_fake_each_get_one_outcome_that_agrees_with_the_outbox() -> None:
    """50,000 messages over a fake failing at random: one outcome each, in input order; "sent" is in the
    outbox once, "failed" never, "unknown" at most once; the limits hold in every window of the run."""
    rates = (Rate(100, 60.0), Rate(9_000, 3_600.0, "recipients"))
    clock = VirtualClock(start=1_700_000_000.0)
    messages = batch(MESSAGES, SEED)
    fake = RandomFaultChannel(
        SEED, FaultMix(), latency=0.2, clock=clock, limits=Limits(rates=rates), name="faulty"
    )
    fake.refuse(messages)
    channel = pipeline(fake, clock=clock, retry=RetryPolicy(attempts=5, initial=1.0, maximum=30.0))
    progress = ProgressLog()
    state = random.getstate()
    random.seed(SEED)  # the retry layer's jitter
    started = time.perf_counter()
    try:
        report = await send_all(channel, messages, concurrency=8, progress=progress)
    finally:
        random.setstate(state)
    elapsed = time.perf_counter() - started

    assert messages == [outcome.message for outcome in report.outcomes]
    assert {m.message_id: 1 for m in messages} == dict(progress.seen)
    result = agreement(report, [m.message_id for m in fake.outbox])
    assert () == result.disagreements
    assert () == result.duplicates
    assert () == result.strangers
    assert MESSAGES == result.sent + result.failed + result.unknown
    assert {str(rate): 0 for rate in rates} == window_excess(fake.arrivals, rates)
    for outcome in report.sent:
        assert outcome.result is not None
        assert outcome.message.message_id == outcome.result.message_id
        assert [r for r in outcome.message.recipients if "refused" not in r] == list(outcome.result.accepted)
    for outcome in report.unknown:
        assert isinstance(outcome.error, DeliveryUnknownError)
    assert all(isinstance(outcome.error, SendError) for outcome in report.failed)
    # Every kind of fault happened, and so did every outcome.
    assert all(fake.faults[kind] > 0 for kind in ("transient", "connection_lost", "throttled", "quota",
                                                   "permanent", "unknown")), fake.faults
    assert result.unknown_delivered > 0
    assert result.unknown - result.unknown_delivered > 0
    failures = collections.Counter(type(outcome.error).__name__ for outcome in report.failed)
    print(
        f"\nfake load: {MESSAGES} messages, {result.sent} sent, {result.failed} failed "
        f"({dict(failures)}), {result.unknown} unknown ({result.unknown_delivered} delivered); "
        f"{len(fake.attempts)} attempts; faults {dict(fake.faults)}; virtual time "
        f"{clock.now() - 1_700_000_000.0:.0f} s; wall {elapsed:.1f} s, {MESSAGES / elapsed:,.0f} msg/s"
    )


@pytest.mark.slow
async def test_50000_messages_to_a_faulty_smtp_server_each_get_one_outcome_that_agrees_with_its_log(
    tmp_path: Path,
) -> None:
    """50,000 messages through a pooled SmtpChannel to a real SMTP server (another process) that refuses
    recipients, answers 4xx and 421, and drops connections after DATA: one outcome each; every "sent" is in
    the server's log once, "failed" never, "unknown" at most once; no Message-ID twice."""
    log = tmp_path / "received.log"
    messages = batch(MESSAGES, SEED)
    progress = ProgressLog()
    with fault_server(SEED, log) as server:
        smtp = SmtpChannel(
            "127.0.0.1", server.port, tls="none", pool_size=8, local_hostname="load.localhost", timeout=30.0
        )
        channel = pipeline(
            smtp,
            limits=Limits(rates=(Rate(100_000, 60.0),)),
            retry=RetryPolicy(attempts=5, initial=0.05, maximum=0.5),
        )
        started = time.perf_counter()
        cpu = time.process_time()
        async with channel:
            report = await send_all(channel, messages, concurrency=16, progress=progress)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    faults = server.faults

    assert messages == [outcome.message for outcome in report.outcomes]
    assert {m.message_id: 1 for m in messages} == dict(progress.seen)
    result = agreement(report, server.received())
    assert () == result.disagreements
    assert () == result.duplicates
    assert () == result.strangers
    assert MESSAGES == result.sent + result.failed + result.unknown
    for outcome in report.unknown:
        assert isinstance(outcome.error, DeliveryUnknownError)
    assert all(isinstance(outcome.error, SendError) for outcome in report.failed)
    for outcome in report.sent:
        assert outcome.result is not None
        assert outcome.message.message_id == outcome.result.message_id
        assert all("refused" in r or "busy" in r or "4.3.0" in reason
                   for r, reason in outcome.result.rejected.items())
    # Every kind of fault happened, and so did every outcome.
    assert all(faults.get(kind, 0) > 0 for kind in (
        "rcpt_451", "mail_421", "data_451", "data_421", "data_taken_then_dropped", "data_dropped"
    )), faults
    assert result.unknown_delivered > 0
    assert result.unknown - result.unknown_delivered > 0
    failures = collections.Counter(type(outcome.error).__name__ for outcome in report.failed)
    print(
        f"\nsmtp load: {MESSAGES} messages, {result.sent} sent, {result.failed} failed "
        f"({dict(failures)}), {result.unknown} unknown ({result.unknown_delivered} delivered); "
        f"server faults {faults}; connections {smtp._pool.opened}; "
        f"wall {elapsed:.1f} s, {MESSAGES / elapsed:,.0f} msg/s; CPU client {cpu:.1f} s, server "
        f"{server.cpu:.1f} s"
    )


async def test_a_batch_cancelled_midway_accounts_for_every_message_against_the_server_log(
    tmp_path: Path,
) -> None:
    """Cancel send_all while 16 sends are in flight to the faulty SMTP server: through progress every
    message gets exactly one outcome, and the server's log agrees (a skipped message never arrived)."""
    messages = batch(5_000, SEED + 1)
    outcomes: dict[str, Outcome] = {}
    progress = ProgressLog()
    thousand = asyncio.Event()

    def record(outcome: Outcome) -> None:
        progress(outcome)
        outcomes[outcome.message.message_id] = outcome
        if len(outcomes) >= 1_000:
            thousand.set()

    with fault_server(SEED + 1, tmp_path / "received.log") as server:
        smtp = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=8, local_hostname="load.localhost")
        channel = pipeline(smtp, retry=RetryPolicy(attempts=5, initial=0.05, maximum=0.5))
        async with channel:
            task = asyncio.create_task(send_all(channel, messages, concurrency=16, progress=record))
            await thousand.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    assert {m.message_id: 1 for m in messages} == dict(progress.seen)
    report = BulkReport(outcomes[m.message_id] for m in messages)
    result = agreement(report, server.received())
    assert () == result.disagreements
    assert () == result.duplicates
    assert () == result.strangers
    assert 0 < progress.statuses["skipped"] < 4_000
    assert 5_000 == sum(progress.statuses.values())
    print(f"\ncancelled: {dict(progress.statuses)}; the server's log agrees")
