"""FakeChannel: keeps what it sent, checks like a real channel, fails on cue."""

from __future__ import annotations

import logging

import pytest

from sendchannel import (
    BaseChannel,
    CredentialScope,
    DeliveryUnknownError,
    InvalidMessageError,
    Limits,
    Message,
    QuotaExceededError,
    Rate,
    RecipientsRefusedError,
    ScopeKind,
    SenderNotAllowedError,
    SendResult,
    ThrottledError,
    TransientError,
    channel_from_url,
)
from sendchannel.testing import FakeChannel, VirtualClock, memory_channel


def message(*to: str, sender: str = "app@example.com", **fields: object) -> Message:
    return Message(sender, list(to or ["bob@example.com"]), subject="Hi", **fields)  # type: ignore[arg-type]


async def test_outbox_keeps_sent_messages_in_order_with_results() -> None:
    channel = FakeChannel()
    first, second = message(), message("carol@example.com")
    result = await channel.send(first)
    await channel.send(second)
    assert [first, second] == channel.outbox
    assert SendResult(first.message_id, result.provider_id, ("bob@example.com",), {}, "fake") == result


async def test_scope_is_checked_before_sending_and_counted_as_an_attempt() -> None:
    channel = FakeChannel(scope=CredentialScope.per_address("app@example.com", provider="Office 365"))
    stranger = message(sender="eve@example.com")
    with pytest.raises(SenderNotAllowedError, match="Office 365 credentials belong to one mailbox") as info:
        await channel.send(stranger)
    assert "fake" == info.value.channel
    assert [] == channel.outbox
    assert [stranger] == channel.attempts


async def test_per_message_limits_are_checked_before_sending() -> None:
    channel = FakeChannel(limits=Limits(max_recipients_per_message=2, max_message_bytes=2000))
    with pytest.raises(InvalidMessageError, match="3 recipients, but fake accepts at most 2"):
        await channel.send(message("a@x.com", "b@x.com", "c@x.com"))
    with pytest.raises(InvalidMessageError, match="bytes, but fake accepts at most 2,000"):
        await channel.send(message(text="x" * 3000))
    assert [] == channel.outbox


async def test_fail_next_raises_the_given_error_the_given_number_of_times() -> None:
    channel = FakeChannel()
    channel.fail_next(TransientError("busy", code=451), times=2)
    for _ in range(2):
        with pytest.raises(TransientError, match="busy"):
            await channel.send(message())
    await channel.send(message())
    assert 3 == len(channel.attempts)
    assert 1 == len(channel.outbox)


async def test_fail_next_with_a_class_and_delivered_simulates_a_lost_reply() -> None:
    channel = FakeChannel()
    channel.fail_next(DeliveryUnknownError, delivered=True)
    sent = message()
    with pytest.raises(DeliveryUnknownError, match="failed as scripted"):
        await channel.send(sent)
    assert [sent] == channel.outbox


async def test_throttle_next_asks_to_wait() -> None:
    channel = FakeChannel()
    channel.throttle_next(12.5)
    with pytest.raises(ThrottledError) as info:
        await channel.send(message())
    assert (12.5, 421) == (info.value.retry_after, info.value.code)


async def test_partial_refusal_succeeds_for_the_others() -> None:
    channel = FakeChannel()
    channel.reject_recipients("BAD@example.com")
    result = await channel.send(message("good@example.com", "bad@example.com"))
    assert ("good@example.com",) == result.accepted
    assert {"bad@example.com": "550 5.1.1 mailbox unavailable"} == dict(result.rejected)


async def test_all_refused_raises_like_a_real_channel() -> None:
    channel = FakeChannel()
    channel.reject_recipients("a@example.com")
    channel.reject_recipients("b@example.com", reply="452 4.5.3 too many recipients")
    with pytest.raises(RecipientsRefusedError) as info:
        await channel.send(message("a@example.com", "b@example.com"))
    assert {"a@example.com", "b@example.com"} == set(info.value.rejected)
    with pytest.raises(ThrottledError):
        await channel.send(message("b@example.com"))
    channel.reject_recipients("c@example.com", reply="450 4.2.1 mailbox busy")
    with pytest.raises(TransientError) as transient:
        await channel.send(message("c@example.com"))
    assert type(transient.value) is TransientError
    assert [] == channel.outbox


async def test_clear_forgets_everything() -> None:
    channel = FakeChannel()
    channel.fail_next(TransientError("x"))
    channel.reject_recipients("bob@example.com")
    channel.clear()
    await channel.send(message())
    assert 1 == len(channel.outbox)


async def test_enforced_limits_answer_like_the_provider() -> None:
    clock = VirtualClock(1000.0)
    limits = Limits((Rate(2, 60), Rate(3, 86_400)))
    channel = FakeChannel(limits=limits, clock=clock, enforce_limits=True)
    await channel.send(message())
    await channel.send(message())
    with pytest.raises(ThrottledError) as throttled:
        await channel.send(message())
    assert 60.0 == throttled.value.retry_after
    clock.advance(60)
    await channel.send(message())
    with pytest.raises(QuotaExceededError) as quota:
        await channel.send(message())
    assert quota.value.resets_at == 1000.0 + 86_400


async def test_latency_is_slept_on_the_clock() -> None:
    clock = VirtualClock()
    channel = FakeChannel(clock=clock, latency=2.0)
    await channel.send(message())
    assert 2.0 == clock.now()


async def test_closed_channel_refuses_to_send() -> None:
    async with FakeChannel() as channel:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(message())


def test_like_copies_scope_kind_limits_and_name() -> None:
    class Provider(BaseChannel):
        name = "mailbox"
        scope_kind = ScopeKind.PER_ADDRESS
        provider_name = "Mailbox"
        default_limits = Limits(Rate.per_minute(30), max_recipients_per_message=500)

        async def _send(self, message: Message) -> SendResult:  # pragma: no cover
            raise NotImplementedError

    fake = FakeChannel.like(Provider)
    assert CredentialScope.per_address("fake@example.com") == fake.scope
    assert Provider.default_limits == fake.limits
    assert "fake-mailbox" == fake.name
    assert "Mailbox credentials" in fake.scope.explain("x@example.com")
    assert CredentialScope.per_address("me@x.com") == FakeChannel.like(Provider, "me@x.com").scope

    class Domain(Provider):
        scope_kind = ScopeKind.PER_DOMAIN

    assert CredentialScope.per_domain("example.com") == FakeChannel.like(Domain).scope
    custom = FakeChannel.like(Domain, scope=CredentialScope.unrestricted(), name="x")
    assert (CredentialScope.unrestricted(), "x") == (custom.scope, custom.name)
    assert CredentialScope.unrestricted() == FakeChannel.like(object).scope


async def test_memory_urls_give_shared_named_fakes() -> None:
    default = channel_from_url("memory://")
    assert default is memory_channel()
    assert channel_from_url("memory://audit") is memory_channel("audit")
    assert default is not memory_channel("audit")
    with pytest.raises(TypeError, match="no option"):
        channel_from_url("memory://", password="x")


async def test_closing_a_memory_channel_leaves_it_open_for_the_rest_of_the_process() -> None:
    async with channel_from_url("memory://shared-by-all") as channel:
        await channel.send(message())
    sent = await channel_from_url("memory://shared-by-all").send(message())
    assert 2 == len(memory_channel("shared-by-all").outbox)
    assert sent.message_id == memory_channel("shared-by-all").outbox[-1].message_id


async def test_each_send_is_logged_without_the_body(caplog: pytest.LogCaptureFixture) -> None:
    channel = FakeChannel()
    caplog.set_level(logging.DEBUG, logger="sendchannel")
    sent = message(text="the secret body")
    await channel.send(sent)
    channel.fail_next(TransientError("busy"))
    with pytest.raises(TransientError):
        await channel.send(sent)
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sendchannel"]
    assert [level for level, _ in records] == [logging.DEBUG, logging.WARNING]
    assert all(sent.message_id in text and "channel=fake" in text for _, text in records)
    assert all("secret body" not in text for _, text in records)


async def test_plugin_fixtures_in_this_suite(
    fake_channel: FakeChannel, outbox: list[Message], virtual_clock: VirtualClock
) -> None:
    """The fixtures work in our own suite too: memory:// sends land in ``outbox``."""
    await channel_from_url("memory://").send(message())
    assert [fake_channel.outbox[0]] == outbox
    await virtual_clock.sleep(10)
    assert 10.0 == virtual_clock.now()
