"""SparkPost's Idempotency-Key: a send whose outcome is unknown is repeated safely, and delivered once."""

from __future__ import annotations

import pytest

from sendchannel import (
    DeliveryUnknownError,
    FailoverChannel,
    Message,
    PermanentError,
    Retrying,
    RetryPolicy,
    SparkpostChannel,
    Throttler,
    TransientError,
)
from sendchannel.testing import FakeChannel, VirtualClock
from tests.sparkpost.server import IDEMPOTENCY_WINDOW, Answer, SparkpostServer, error_body

POLICY = RetryPolicy(attempts=3, initial=0.5, jitter=False)


def message(text: str = "Hello.\n") -> Message:
    return Message("app@example.com", ["bob@example.net"], subject="Hi", text=text)


async def test_a_connection_dropped_after_the_post_is_retried_and_delivered_exactly_once(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """SparkPost handled the transmission and the answer was lost; Retrying repeats it with the same key,
    SparkPost replays the first answer, and the recipient gets one copy."""
    server.script(Answer(action="deliver-then-drop"))
    retrying = Retrying(channel, POLICY, clock=VirtualClock())

    result = await retrying.send(message())

    assert 2 == len(server.received)
    assert 1 == len(server.delivered)
    assert 2 == result.attempts
    assert ("bob@example.net",) == result.accepted
    keys = {request.headers["idempotency-key"] for request in server.received}
    assert {result.message_id} == keys


async def test_a_replayed_answer_is_a_normal_result_and_sends_nothing_again(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    sent = message()
    first = await channel.send(sent)
    again = await channel.send(sent)

    assert first.provider_id == again.provider_id
    assert 1 == len(server.delivered)


async def test_the_same_message_id_with_another_body_is_a_permanent_error_that_says_why(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    sent = message()
    await channel.send(sent)

    with pytest.raises(PermanentError, match="used in the last 24 hours for a different") as caught:
        await channel.send(sent.evolve(text="Changed.\n"))

    assert "1600" == caught.value.enhanced_code
    assert 1 == len(server.delivered)


async def test_a_key_still_in_flight_is_a_transient_error(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(409, error_body("a request with this idempotency key is in progress", "1601")))

    with pytest.raises(TransientError, match="still working on an earlier request") as caught:
        await channel.send(message())

    assert "1601" == caught.value.enhanced_code


async def test_after_24_hours_the_key_is_forgotten_and_the_message_goes_out_again(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    sent = message()
    start = server.clock()
    await channel.send(sent)
    server.clock = lambda: start + IDEMPOTENCY_WINDOW + 1

    await channel.send(sent)

    assert 2 == len(server.delivered)


async def test_retrying_repeats_an_unknown_outcome_only_for_an_idempotent_channel() -> None:
    plain = FakeChannel()
    plain.fail_next(DeliveryUnknownError("the connection dropped after the request"))
    with pytest.raises(DeliveryUnknownError) as caught:
        await Retrying(plain, POLICY, clock=VirtualClock()).send(message())
    assert 1 == caught.value.attempts

    keyed = FakeChannel()
    keyed.idempotent = True  # type: ignore[attr-defined]
    keyed.fail_next(DeliveryUnknownError("the connection dropped after the request"))
    result = await Retrying(keyed, POLICY, clock=VirtualClock()).send(message())
    assert 2 == result.attempts
    assert [result.message_id] * 2 == [m.message_id for m in keyed.attempts]


async def test_the_layers_pass_idempotent_through(channel: SparkpostChannel) -> None:
    assert SparkpostChannel.idempotent
    assert Throttler(channel).idempotent
    assert Retrying(Throttler(channel)).idempotent
    assert FailoverChannel([channel, Throttler(channel)]).idempotent
    assert not FailoverChannel([channel, FakeChannel()]).idempotent
    assert not Retrying(FakeChannel()).idempotent


async def test_an_idempotency_answer_to_a_read_still_explains_itself(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """A 409 1601 to verify() (no message, so no Message-ID to name) is still a readable TransientError."""
    server.script(Answer(409, error_body("a request with this idempotency key is in progress", "1601")))

    with pytest.raises(TransientError, match="still working on an earlier request") as caught:
        await channel.verify()

    assert "{" not in str(caught.value)
