"""send_all and BulkReport: one outcome per message, in input order, also when cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sendchannel import (
    BulkReport,
    DeliveryUnknownError,
    Message,
    Outcome,
    PermanentError,
    Retrying,
    RetryPolicy,
    SendResult,
    send_all,
)
from sendchannel.testing import FakeChannel
from tests.retry.conftest import RecordingClock, message


def batch(count: int) -> list[Message]:
    return [message(f"user{n}@example.com", subject=f"#{n}") for n in range(count)]


class _Tracking(FakeChannel):
    """A fake that keeps how many sends were in flight at most, and raises a bug on subject "boom"."""

    def __init__(self, clock: RecordingClock, latency: float = 1.0) -> None:
        super().__init__(clock=clock, latency=latency)
        self.in_flight = 0
        self.most_in_flight = 0

    async def _send(self, message: Message) -> SendResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if message.subject == "boom":
                await self.clock.sleep(self.latency)
                raise KeyError("a bug in a plugin channel")
            return await super()._send(message)
        finally:
            self.in_flight -= 1


async def test_every_message_is_sent_and_reported_in_input_order(clock: RecordingClock) -> None:
    messages = batch(20)
    channel = FakeChannel(clock=clock, latency=1.0)
    report = await send_all(channel, messages)
    assert messages == [outcome.message for outcome in report.outcomes]
    assert ["sent"] * 20 == [outcome.status for outcome in report.outcomes]
    assert [m.message_id for m in messages] == [o.result.message_id for o in report.outcomes if o.result]
    assert 20 == len(report.sent)
    assert 20 == len(channel.outbox)
    assert 3.0 == clock.now()  # 20 messages, 8 at a time, 1 s each


async def test_sends_run_concurrency_at_a_time(clock: RecordingClock) -> None:
    channel = _Tracking(clock)
    await send_all(channel, batch(10), concurrency=3)
    assert 3 == channel.most_in_flight
    assert 4.0 == clock.now()


async def test_progress_is_called_once_per_message_as_it_settles(clock: RecordingClock) -> None:
    messages = batch(5)
    delays = {m.message_id: float(5 - n) for n, m in enumerate(messages)}
    seen: list[tuple[float, Outcome]] = []

    class Slow(FakeChannel):
        async def _send(self, message: Message) -> SendResult:
            await clock.sleep(delays[message.message_id])
            return await super()._send(message)

    report = await send_all(Slow(), messages, progress=lambda o: seen.append((clock.now(), o)))
    # The last message finishes first: progress follows settling; the report follows input order.
    assert [1.0, 2.0, 3.0, 4.0, 5.0] == [when for when, _ in seen]
    assert list(reversed(messages)) == [outcome.message for _, outcome in seen]
    assert messages == [outcome.message for outcome in report.outcomes]


async def test_failures_unknown_outcomes_and_bugs_each_get_their_status(clock: RecordingClock) -> None:
    channel = _Tracking(clock)
    permanent = PermanentError("550 5.7.1 rejected")
    unknown = DeliveryUnknownError("timeout after DATA")
    messages = [*batch(3), message(subject="boom"), *batch(2)]
    channel.fail_next(permanent)
    channel.fail_next(unknown)
    report = await send_all(channel, messages, concurrency=1)
    assert ["failed", "unknown", "sent", "failed", "sent", "sent"] == [o.status for o in report.outcomes]
    assert [permanent, unknown, None] == [o.error for o in report.outcomes[:3]]
    assert isinstance(report.outcomes[3].error, KeyError)
    assert (report.outcomes[0], report.outcomes[3]) == report.failed
    assert (report.outcomes[1],) == report.unknown
    assert 3 == len(report.sent)
    assert 3 == len(channel.outbox)


async def test_a_bug_in_the_channel_is_logged_and_does_not_stop_the_batch(
    clock: RecordingClock, caplog: pytest.LogCaptureFixture
) -> None:
    channel = _Tracking(clock)
    boom = message(subject="boom")
    with caplog.at_level(logging.ERROR, logger="sendchannel"):
        report = await send_all(channel, [boom, *batch(3)])
    assert ["failed", "sent", "sent", "sent"] == [o.status for o in report.outcomes]
    assert [f"send_all: fake raised KeyError for message_id={boom.message_id}"] == [
        r.getMessage() for r in caplog.records
    ]


async def test_a_failing_progress_callback_is_logged_and_the_batch_goes_on(
    clock: RecordingClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Outcome] = []

    def progress(outcome: Outcome) -> None:
        calls.append(outcome)
        raise ValueError("the progress bar broke")

    with caplog.at_level(logging.ERROR, logger="sendchannel"):
        report = await send_all(FakeChannel(), batch(3), progress=progress)
    assert 3 == len(report.sent)
    assert 3 == len(calls)
    assert 3 == sum("progress callback raised" in r.getMessage() for r in caplog.records)


async def test_retried_failures_through_a_retry_layer_end_sent(clock: RecordingClock) -> None:
    fake = FakeChannel(clock=clock)
    fake.throttle_next(retry_after=10.0, times=3)
    report = await send_all(Retrying(fake, RetryPolicy(), clock=clock), batch(4))
    assert ["sent"] * 4 == [o.status for o in report.outcomes]
    assert 7 == sum(o.result.attempts for o in report.outcomes if o.result)
    assert 4 == len(fake.outbox)


async def test_an_empty_batch_gives_an_empty_report() -> None:
    report = await send_all(FakeChannel(), [])
    assert BulkReport(()) == report
    assert 0 == len(report)


async def test_messages_may_be_any_iterable_read_once(clock: RecordingClock) -> None:
    messages = batch(3)
    report = await send_all(FakeChannel(), iter(messages))
    assert messages == [o.message for o in report.outcomes]


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "8"])
async def test_a_bad_concurrency_is_refused_before_anything_is_sent(concurrency: object) -> None:
    channel = FakeChannel()
    with pytest.raises(ValueError, match="concurrency must be a whole number of at least 1"):
        await send_all(channel, batch(2), concurrency=concurrency)  # type: ignore[arg-type]
    assert [] == channel.attempts


async def test_something_other_than_a_message_is_refused_before_anything_is_sent() -> None:
    channel = FakeChannel()
    with pytest.raises(TypeError, match=r"messages\[1\] is a str, not a sendchannel Message"):
        await send_all(channel, [message(), "bob@example.com"])  # type: ignore[list-item]
    assert [] == channel.attempts


def test_report_lists_each_status_and_reads_as_a_summary() -> None:
    sent, failed, unknown, skipped = (message(f"{s}@example.com") for s in "abcd")
    result = SendResult(sent.message_id, accepted=("a@example.com",))
    report = BulkReport(
        [
            Outcome(sent, "sent", result=result),
            Outcome(failed, "failed", error=PermanentError("no")),
            Outcome(unknown, "unknown", error=DeliveryUnknownError("?")),
            Outcome(skipped, "skipped"),
        ]
    )
    assert [[sent], [failed], [unknown], [skipped]] == [
        [o.message for o in group] for group in (report.sent, report.failed, report.unknown, report.skipped)
    ]
    assert "4 messages: 1 sent, 1 failed, 1 unknown, 1 skipped" == str(report)


# -- cancellation ------------------------------------------------------------------------------------------


async def test_cancelled_it_lets_sends_in_flight_finish_and_reports_the_rest_skipped(
    clock: RecordingClock,
) -> None:
    channel = FakeChannel(clock=clock, latency=10.0)
    messages = batch(6)
    seen: list[Outcome] = []
    task = asyncio.create_task(send_all(channel, messages, concurrency=2, progress=seen.append))
    await clock.sleep(15.0)  # messages 0 and 1 are sent; 2 and 3 are in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 20.0 == clock.now()  # the sends in flight were allowed to settle
    assert messages[:4] == channel.outbox
    assert ["sent"] * 4 + ["skipped"] * 2 == [o.status for o in seen]
    assert messages == [o.message for o in seen]


async def test_cancelled_before_any_send_settles_every_message_is_accounted_for(
    clock: RecordingClock,
) -> None:
    channel = FakeChannel(clock=clock, latency=10.0)
    messages = batch(4)
    seen: list[Outcome] = []
    task = asyncio.create_task(send_all(channel, messages, concurrency=1, progress=seen.append))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first send has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ["sent", "skipped", "skipped", "skipped"] == [o.status for o in seen]
    assert messages[:1] == channel.outbox


async def test_cancelled_twice_it_cancels_the_sends_in_flight_and_reports_them_unknown(
    clock: RecordingClock,
) -> None:
    channel = FakeChannel(clock=clock, latency=10.0)
    messages = batch(3)
    seen: list[Outcome] = []
    task = asyncio.create_task(send_all(channel, messages, concurrency=2, progress=seen.append))
    await clock.sleep(5.0)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 5.0 == clock.now()
    assert [] == channel.outbox
    statuses = {o.message.message_id: o.status for o in seen}
    assert ["unknown", "unknown", "skipped"] == [statuses[m.message_id] for m in messages]
    assert 3 == len(seen)


async def test_a_timeout_around_send_all_cancels_it_the_same_way() -> None:
    """asyncio.timeout uses the event loop's real clock: 0.05 s into a batch of 0.03 s sends."""
    channel = FakeChannel(latency=0.03)
    seen: list[Outcome] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await send_all(channel, batch(10), concurrency=1, progress=seen.append)
    assert 10 == len(seen)
    statuses = [o.status for o in seen]
    assert {"sent", "skipped"} == set(statuses)
    assert statuses.count("sent") == len(channel.outbox)
    assert sorted(statuses, key=["sent", "skipped"].index) == statuses
