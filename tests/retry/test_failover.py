"""FailoverChannel between an Office 365-like mailbox (per-address) and a SparkPost-like domain."""

from __future__ import annotations

import asyncio

import pytest

from sendchannel import (
    AuthenticationError,
    Channel,
    ConfigurationError,
    ConnectionLostError,
    CredentialScope,
    DeliveryUnknownError,
    FailoverChannel,
    InvalidMessageError,
    Limits,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    Retrying,
    RetryPolicy,
    ScopeKind,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import FakeChannel
from tests.retry.conftest import RecordingClock, message, office365_like, sparkpost_like

ALICE = "alice@contoso.com"  # the Office 365 mailbox
BOB = "bob@contoso.com"  # another address at the SparkPost domain


@pytest.fixture
def office(clock: RecordingClock) -> FakeChannel:
    return office365_like(clock)


@pytest.fixture
def sparkpost(clock: RecordingClock) -> FakeChannel:
    return sparkpost_like(clock)


@pytest.fixture
def failover(office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock) -> FailoverChannel:
    return FailoverChannel([office, sparkpost], clock=clock)


def from_alice(*to: str) -> object:
    return message(*(to or ("customer@example.net",)), sender=ALICE)


def recipients_of(channel: FakeChannel) -> list[tuple[str, ...]]:
    return [sent.recipients for sent in channel.outbox]


# -- what it is ------------------------------------------------------------------------------------------


def test_failover_is_a_channel_named_after_its_channels(failover: FailoverChannel) -> None:
    assert isinstance(failover, Channel)
    assert "failover(office365,sparkpost)" == failover.name
    assert "<FailoverChannel 'failover(office365,sparkpost)' scope=per-address: alice@contoso.com + " \
        "per-domain: contoso.com>" == repr(failover)


def test_its_scope_is_the_union_of_its_channels_scopes(failover: FailoverChannel) -> None:
    scope = failover.scope
    assert scope.allows(ALICE)
    assert scope.allows(BOB)
    assert not scope.allows("eve@fabrikam.com")
    assert not scope.shareable  # part of it belongs to one mailbox
    assert ScopeKind.PER_ADDRESS == scope.kind
    assert (ALICE, "contoso.com") == scope.identities


def test_its_scope_follows_changes_to_a_channels_scope(
    failover: FailoverChannel, sparkpost: FakeChannel
) -> None:
    sparkpost.scope = CredentialScope.per_domain("contoso.com", "fabrikam.com")
    assert failover.scope.allows("eve@fabrikam.com")


def test_its_scope_and_limits_cannot_be_set_directly(failover: FailoverChannel) -> None:
    with pytest.raises(AttributeError, match="union of its channels"):
        failover.scope = CredentialScope.unrestricted()
    with pytest.raises(AttributeError, match="set the limits of each channel"):
        failover.limits = Limits()


def test_its_limits_leave_rates_to_each_channel_and_take_the_most_permissive_bounds(
    failover: FailoverChannel,
) -> None:
    # Office 365 takes 500 recipients and 35 MB; the SparkPost-like fake declares no recipient bound.
    expected = Limits(max_recipients_per_message=None, max_message_bytes=35 * 1024 * 1024)
    assert expected == failover.limits


def test_its_limits_bound_recipients_when_every_channel_does(clock: RecordingClock) -> None:
    small = FakeChannel(limits=Limits(max_recipients_per_message=100), name="a")
    large = FakeChannel(limits=Limits(max_recipients_per_message=500), name="b")
    assert Limits(max_recipients_per_message=500) == FailoverChannel([small, large]).limits


def test_it_needs_at_least_one_channel() -> None:
    with pytest.raises(ConfigurationError, match="needs at least one channel"):
        FailoverChannel([])


def test_a_negative_quota_pause_is_refused(office: FakeChannel) -> None:
    with pytest.raises(ConfigurationError, match="quota_pause"):
        FailoverChannel([office], quota_pause=-1.0)


# -- choosing a channel -------------------------------------------------------------------------------


async def test_the_first_channel_sends_when_it_can(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    sent = from_alice()
    result = await failover.send(sent)
    assert "office365" == result.channel
    assert 1 == result.attempts
    assert [sent] == office.outbox
    assert [] == sparkpost.attempts


async def test_a_sender_only_the_second_channel_allows_goes_straight_to_it(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    sent = message(sender=BOB)
    result = await failover.send(sent)
    assert "sparkpost" == result.channel
    assert [] == office.attempts
    assert [sent] == sparkpost.outbox


async def test_a_sender_no_channel_allows_is_refused_before_anything_is_sent(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    with pytest.raises(SenderNotAllowedError, match=r"None of the credentials may send as eve@fabrikam\.com"):
        await failover.send(message(sender="eve@fabrikam.com"))
    assert [] == office.attempts
    assert [] == sparkpost.attempts


@pytest.mark.parametrize(
    "error",
    [
        TransientError("451 4.3.0 try later", code=451),
        ConnectionLostError("connection reset before DATA"),
        ThrottledError("432 4.3.2 Concurrent connections limit exceeded", code=432),
        QuotaExceededError("554 5.2.0 SubmissionQuotaExceededException", code=554),
    ],
)
async def test_the_next_channel_is_tried_after_a_transient_throttle_or_quota_error(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel, error: SendError
) -> None:
    office.fail_next(error)
    sent = from_alice()
    result = await failover.send(sent)
    assert "sparkpost" == result.channel
    assert 2 == result.attempts
    assert [] == office.outbox
    assert [sent] == sparkpost.outbox


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("550 5.0.0 no"),
        AuthenticationError("535 5.7.3 Authentication unsuccessful"),
        SenderNotAllowedError("550 5.7.60 SMTP; Client does not have permissions to send as this sender"),
        RecipientsRefusedError("550 5.1.1 unknown", rejected={"customer@example.net": "550 5.1.1 unknown"}),
        MessageRejectedError("554 5.6.0 content rejected"),
        DeliveryUnknownError("timeout after the end of DATA"),
    ],
)
async def test_no_other_channel_is_tried_after_a_permanent_error_or_an_unknown_outcome(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel, error: SendError
) -> None:
    office.fail_next(error)
    with pytest.raises(type(error)) as raised:
        await failover.send(from_alice())
    assert error is raised.value
    assert [] == sparkpost.attempts


async def test_a_message_too_large_for_the_first_channel_goes_to_the_next(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    many = [f"customer{n}@example.net" for n in range(600)]  # Office 365 takes 500
    result = await failover.send(from_alice(*many))
    assert "sparkpost" == result.channel
    assert [] == office.attempts
    assert 600 == len(result.accepted)


async def test_a_message_too_large_for_every_channel_is_refused_before_sending(
    clock: RecordingClock,
) -> None:
    first = FakeChannel(limits=Limits(max_recipients_per_message=1), name="a")
    second = FakeChannel(limits=Limits(max_recipients_per_message=2), name="b")
    with pytest.raises(InvalidMessageError, match="3 recipients, but a accepts at most 1"):
        await FailoverChannel([first, second]).send(message("x@a.example", "y@a.example", "z@a.example"))
    assert [] == first.attempts + second.attempts


async def test_when_every_channel_fails_transiently_the_last_error_is_raised_with_attempts_counted(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.fail_next(ConnectionLostError("reset"))
    last = TransientError("503 try later", code=503)
    sparkpost.fail_next(last)
    with pytest.raises(TransientError) as raised:
        await failover.send(from_alice())
    assert last is raised.value
    assert 2 == raised.value.attempts


async def test_a_transient_failure_beats_a_spent_quota_so_a_retry_layer_tries_again(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.fail_next(QuotaExceededError("spent", resets_at=86_400.0))
    sparkpost.fail_next(TransientError("503 try later", code=503))
    with pytest.raises(TransientError):
        await failover.send(from_alice())


async def test_when_every_channel_is_out_of_quota_the_earliest_reset_is_raised(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.fail_next(QuotaExceededError("daily quota spent", resets_at=7_200.0))
    sparkpost.fail_next(QuotaExceededError("hourly plan limit", resets_at=3_600.0))
    with pytest.raises(QuotaExceededError) as raised:
        await failover.send(from_alice())
    assert 3_600.0 == raised.value.resets_at
    assert 2 == raised.value.attempts


# -- remembering spent quotas and throttles -------------------------------------------------------------


async def test_a_channel_out_of_quota_is_skipped_until_its_reset(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock
) -> None:
    office.fail_next(QuotaExceededError("554 5.2.0 quota", resets_at=3_600.0))
    await failover.send(from_alice())
    await failover.send(from_alice())
    assert 1 == len(office.attempts)
    assert 3_600.0 == failover.paused_until(office)
    assert 2 == len(sparkpost.outbox)

    clock.advance(3_600.0)
    assert failover.paused_until(office) is None
    result = await failover.send(from_alice())
    assert "office365" == result.channel


async def test_a_spent_quota_without_a_reset_time_is_skipped_for_retry_after(
    failover: FailoverChannel, office: FakeChannel, clock: RecordingClock
) -> None:
    office.fail_next(QuotaExceededError("spent", retry_after=600.0))
    await failover.send(from_alice())
    assert 600.0 == failover.paused_until(office)


async def test_a_spent_quota_saying_nothing_of_when_is_skipped_for_quota_pause(
    office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock
) -> None:
    failover = FailoverChannel([office, sparkpost], clock=clock, quota_pause=120.0)
    office.fail_next(QuotaExceededError("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceeded"))
    await failover.send(from_alice())
    assert 120.0 == failover.paused_until(office)


async def test_a_throttle_with_retry_after_is_remembered_and_a_lone_throttled_channel_stays_retryable(
    office: FakeChannel, clock: RecordingClock
) -> None:
    failover = FailoverChannel([office], clock=clock)
    office.throttle_next(retry_after=30.0)
    with pytest.raises(ThrottledError):
        await failover.send(from_alice())
    # Skipped without being asked, with a ThrottledError a retry layer will wait out:
    with pytest.raises(ThrottledError) as raised:
        await failover.send(from_alice())
    assert 30.0 == raised.value.retry_after
    assert 1 == len(office.attempts)


async def test_every_channel_skipped_for_quota_raises_at_once_without_sending(
    office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock
) -> None:
    failover = FailoverChannel([office, sparkpost], clock=clock)
    office.fail_next(QuotaExceededError("spent", resets_at=500.0))
    sparkpost.fail_next(QuotaExceededError("spent", resets_at=900.0))
    with pytest.raises(QuotaExceededError):
        await failover.send(from_alice())
    with pytest.raises(QuotaExceededError, match="skipped until it resets") as raised:
        await failover.send(from_alice())
    assert 500.0 == raised.value.resets_at
    assert 1 == len(office.attempts)
    assert 1 == len(sparkpost.attempts)


async def test_office365_rates_overflow_to_sparkpost_and_come_back_after_the_minute(
    clock: RecordingClock,
) -> None:
    """30 messages a minute through the mailbox; the rest of a burst of 45 goes through SparkPost."""
    office = office365_like(clock, enforce_limits=True)
    sparkpost = sparkpost_like(clock, enforce_limits=True)
    failover = FailoverChannel([office, sparkpost], clock=clock)
    results = [await failover.send(from_alice(f"c{n}@example.net")) for n in range(45)]
    assert ["office365"] * 30 + ["sparkpost"] * 15 == [r.channel for r in results]
    # The throttle was remembered: the mailbox was asked once after its budget ran out, not 15 times.
    assert 31 == len(office.attempts)
    clock.advance(60.0)
    assert "office365" == (await failover.send(from_alice())).channel


async def test_office365_daily_recipient_quota_is_remembered_until_it_resets(clock: RecordingClock) -> None:
    office = office365_like(clock, enforce_limits=True)
    sparkpost = sparkpost_like(clock, enforce_limits=True)
    failover = FailoverChannel([office, sparkpost], clock=clock)
    big = [f"c{n}@example.net" for n in range(500)]
    channels = []
    for _ in range(22):  # 20 x 500 recipients spend the 10,000 a day
        channels.append((await failover.send(from_alice(*big))).channel)
        clock.advance(2.0)
    assert ["office365"] * 20 + ["sparkpost"] * 2 == channels
    assert 21 == len(office.attempts)
    assert failover.paused_until(office) is not None


# -- partial refusals: never twice to the same recipient ----------------------------------------------


async def test_after_a_partial_refusal_only_recipients_refused_for_now_go_to_the_next_channel(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("carol@example.net", reply="452 4.5.3 Too many recipients")
    office.reject_recipients("dave@example.net", reply="550 5.1.1 User unknown")
    sent = from_alice("bob@example.net", "carol@example.net", "dave@example.net")
    result = await failover.send(sent)
    assert [("bob@example.net", "carol@example.net", "dave@example.net")] == recipients_of(office)
    assert [("carol@example.net",)] == recipients_of(sparkpost)
    assert sent.message_id == sparkpost.outbox[0].message_id
    assert ("bob@example.net", "carol@example.net") == result.accepted
    assert {"dave@example.net": "office365: 550 5.1.1 User unknown"} == dict(result.rejected)
    assert "office365+sparkpost" == result.channel
    assert 2 == result.attempts
    assert result.provider_id is not None
    assert 2 == len(result.provider_id.split(","))


async def test_the_copy_for_the_owed_recipients_keeps_their_fields(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("cc@example.net", "hidden@example.net", reply="450 4.2.1 try later")
    sent = message("to@example.net", sender=ALICE).evolve(
        cc=["Cc Person <cc@example.net>"], bcc=["hidden@example.net"]
    )
    await failover.send(sent)
    copy = sparkpost.outbox[0]
    assert ((), ("Cc Person <cc@example.net>",), ("hidden@example.net",)) == (copy.to, copy.cc, copy.bcc)
    assert (sent.subject, sent.text, sent.message_id) == (copy.subject, copy.text, copy.message_id)


async def test_a_partial_result_followed_by_a_transient_failure_is_a_success_not_an_error(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    """Raising would make a retry layer send the whole message again, to bob a second time."""
    office.reject_recipients("carol@example.net", reply="452 4.5.3 Too many recipients")
    sparkpost.fail_next(TransientError("503 try later", code=503, reply="503 try later"))
    result = await failover.send(from_alice("bob@example.net", "carol@example.net"))
    assert ("bob@example.net",) == result.accepted
    assert {"carol@example.net": "sparkpost: 503 try later"} == dict(result.rejected)


async def test_under_a_retry_layer_a_partly_delivered_message_is_not_sent_again(
    office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock
) -> None:
    channel = Retrying(FailoverChannel([office, sparkpost], clock=clock), RetryPolicy(), clock=clock)
    office.reject_recipients("carol@example.net", reply="452 4.5.3 Too many recipients")
    sparkpost.fail_next(TransientError, times=5)
    await channel.send(from_alice("bob@example.net", "carol@example.net"))
    assert 1 == len(office.outbox)
    assert [] == clock.waits


async def test_a_partial_result_followed_by_a_permanent_error_reports_the_rest_as_refused(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("carol@example.net", reply="451 4.7.1 greylisted")
    sparkpost.fail_next(
        RecipientsRefusedError("refused", rejected={"carol@example.net": "550 5.7.1 suppressed"})
    )
    result = await failover.send(from_alice("bob@example.net", "carol@example.net"))
    assert {"carol@example.net": "sparkpost: 550 5.7.1 suppressed"} == dict(result.rejected)


async def test_a_partial_result_followed_by_an_unknown_outcome_raises_it_naming_who_accepted(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("carol@example.net", reply="452 4.5.3 Too many recipients")
    sparkpost.fail_next(DeliveryUnknownError("the connection dropped after the POST", code=None))
    with pytest.raises(DeliveryUnknownError, match=r"bob@example\.net had accepted the message") as raised:
        await failover.send(from_alice("bob@example.net", "carol@example.net"))
    assert 2 == raised.value.attempts


async def test_temporary_refusals_left_after_the_last_channel_are_reported(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    for channel in (office, sparkpost):
        channel.reject_recipients("carol@example.net", reply="450 4.2.1 mailbox busy")
    result = await failover.send(from_alice("bob@example.net", "carol@example.net"))
    assert ("bob@example.net",) == result.accepted
    assert {"carol@example.net": "sparkpost: 450 4.2.1 mailbox busy"} == dict(result.rejected)


async def test_a_recipient_accepted_by_the_second_channel_is_no_longer_listed_as_refused(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("Carol@Example.net", reply="452 4.5.3 Too many recipients")
    result = await failover.send(from_alice("bob@example.net", "carol@example.net"))
    assert ("bob@example.net", "carol@example.net") == result.accepted
    assert {} == dict(result.rejected)


async def test_all_recipients_refused_for_now_fails_over_the_whole_message(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel
) -> None:
    office.reject_recipients("bob@example.net", reply="450 4.2.1 try later")
    sent = from_alice("bob@example.net")
    result = await failover.send(sent)
    assert [sent] == sparkpost.outbox
    assert "sparkpost" == result.channel


# -- verify, close, concurrency ---------------------------------------------------------------------------


class _Broken(FakeChannel):
    async def verify(self) -> None:
        raise AuthenticationError("535 5.7.3 Authentication unsuccessful", channel=self.name)

    async def aclose(self) -> None:
        await super().aclose()
        raise OSError("socket already gone")


async def test_verify_checks_every_channel_and_raises_the_first_failure(office: FakeChannel) -> None:
    broken = _Broken(name="backup")
    with pytest.raises(AuthenticationError) as raised:
        await FailoverChannel([office, broken]).verify()
    assert "backup" == raised.value.channel


async def test_aclose_closes_every_channel_even_when_one_fails(office: FakeChannel) -> None:
    broken = _Broken(name="backup")
    last = FakeChannel(name="last")
    with pytest.raises(OSError, match="socket already gone"):
        async with FailoverChannel([broken, office, last]):
            pass
    assert [True, True, True] == [broken.closed, office.closed, last.closed]


async def test_concurrent_sends_share_what_the_failover_learnt(
    failover: FailoverChannel, office: FakeChannel, sparkpost: FakeChannel, clock: RecordingClock
) -> None:
    office.latency = sparkpost.latency = 1.0
    office.fail_next(QuotaExceededError("spent", resets_at=1_000.0))
    first = await failover.send(from_alice())
    results = await asyncio.gather(*(failover.send(from_alice(f"c{n}@example.net")) for n in range(10)))
    assert "sparkpost" == first.channel
    assert {"sparkpost"} == {r.channel for r in results}
    assert 1 == len(office.attempts)
