"""Throttler on a VirtualClock: the sliding-window guarantee, fairness, pauses, and what a failure costs."""

from __future__ import annotations

import asyncio
import math
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendchannel import (
    Channel,
    ConfigurationError,
    ConnectionLostError,
    CredentialScope,
    DeliveryUnknownError,
    InvalidMessageError,
    Limits,
    MemoryStore,
    Message,
    QuotaExceededError,
    Rate,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendResult,
    ThrottledError,
    Throttler,
)
from sendchannel._throttle import DEFAULT_PAUSE
from sendchannel.testing import FakeChannel, VirtualClock
from sendchannel.testing._store_conformance import sliding_window_excess
from tests.throttle import strategies
from tests.throttle.helpers import LoggingChannel, message

# Times on the VirtualClock are exact up to float rounding of sums like ``slot + per``.
ROUNDING = 1e-9

OFFICE_365 = Limits(
    rates=(Rate.per_minute(30), Rate.per_day(10_000, "recipients")), max_recipients_per_message=500
)


def excess_over(log: list[tuple[float, int]], rates: tuple[Rate, ...] | list[Rate]) -> dict[Rate, int]:
    """For each rate, how far its busiest window went over (the throttler's guarantee: all zero)."""
    return {
        rate: sliding_window_excess(
            [(at, rate.cost(recipients)) for at, recipients in log], rate.count, rate.per, tolerance=ROUNDING
        )
        for rate in rates
    }


# -- the guarantee, for any limits ---------------------------------------------------------------------------


@given(
    rates=strategies.rate_sets,
    arrivals=strategies.arrivals,
    max_wait=st.sampled_from([math.inf, 0.0, 3.0, 30.0]),
)
def test_no_window_of_any_rate_ever_holds_more_than_its_count(
    rates: list[Rate], arrivals: list[tuple[float, int]], max_wait: float
) -> None:
    """For arbitrary limits, arrival times and recipient counts, every sliding window stays within count."""
    most_recipients = min((r.count for r in rates if r.unit == "recipients"), default=6)

    async def simulate() -> tuple[list[tuple[float, int]], list[float | None], int]:
        clock = VirtualClock()
        channel = LoggingChannel(limits=Limits(rates=rates), clock=clock)
        throttler = Throttler(channel, clock=clock, max_wait=max_wait)
        waits_refused: list[float | None] = []

        async def sender(at: float, recipients: int) -> None:
            await clock.sleep(at)
            try:
                await throttler.send(message(min(recipients, most_recipients)))
            except QuotaExceededError as exc:
                waits_refused.append(exc.retry_after)

        await asyncio.gather(*(sender(at, n) for at, n in arrivals))
        return channel.log, waits_refused, len(channel.attempts)

    log, waits_refused, attempts = asyncio.run(simulate())
    refused = len(waits_refused)
    assert all(wait is not None and wait > max_wait for wait in waits_refused)
    assert dict.fromkeys(rates, 0) == excess_over(log, rates)
    assert len(arrivals) == len(log) + refused
    assert len(log) == attempts
    if max_wait == math.inf:
        assert 0 == refused


@given(
    rates=strategies.rate_sets,
    recipients=st.integers(1, 4),
    senders=st.integers(1, 5),
)
@settings(max_examples=60)
def test_saturated_senders_get_at_least_99_percent_of_the_limit(
    rates: list[Rate], recipients: int, senders: int
) -> None:
    """Under steady demand the throttler leaves no quota idle: it sends at the rate of the tightest limit."""
    recipients = min([recipients, *(r.count for r in rates if r.unit == "recipients")])
    horizon = 100 * max(rate.per for rate in rates)
    # The most messages a sliding window of each rate admits, as a rate in messages a second.
    limit = min((rate.count // rate.cost(recipients)) / rate.per for rate in rates)

    async def simulate() -> list[tuple[float, int]]:
        clock = VirtualClock()
        channel = LoggingChannel(limits=Limits(rates=rates), clock=clock)
        throttler = Throttler(channel, clock=clock, max_wait=math.inf)

        async def sender() -> None:
            while clock.now() < horizon:
                await throttler.send(message(recipients))

        await asyncio.gather(*(sender() for _ in range(senders)))
        return channel.log

    log = asyncio.run(simulate())
    sent_in_horizon = sum(1 for at, _ in log if at < horizon)
    assert sent_in_horizon >= 0.99 * limit * horizon, (sent_in_horizon, limit * horizon)
    assert dict.fromkeys(rates, 0) == excess_over(log, rates)


# -- Office 365, a simulated day -----------------------------------------------------------------------------


async def test_a_simulated_day_of_office_365_traffic_stays_within_both_limits() -> None:
    """Two simulated days, 8 workers, 1-60 recipients a message: 30 a minute and 10,000 a day both hold."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=OFFICE_365, clock=clock, name="office365")
    throttler = Throttler(channel, clock=clock, max_wait=math.inf)
    chooser = random.Random(4)
    two_days = 2 * 86_400.0

    async def worker() -> None:
        while clock.now() < two_days:
            await throttler.send(message(chooser.randint(1, 60)))
            await clock.sleep(chooser.expovariate(1 / 20))

    await asyncio.gather(*(worker() for _ in range(8)))

    assert dict.fromkeys(OFFICE_365.rates, 0) == excess_over(channel.log, OFFICE_365.rates)
    # Work-conserving: the first day's recipients fall short of 10,000 by less than one message.
    first_day = sum(n for at, n in channel.log if at < 86_400)
    assert 10_000 - 60 < first_day <= 10_000
    # ...and so does the second day's (the window slides: day two reuses what day one's sends free).
    second_day = sum(n for at, n in channel.log if 86_400 <= at < 2 * 86_400)
    assert 10_000 - 60 < second_day <= 10_000


async def test_office_365_daily_recipients_spent_raises_quota_exceeded_with_the_reset_time() -> None:
    """With max_wait=60, once the day's recipients are spent a send fails at once with resets_at."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=OFFICE_365, clock=clock, name="office365")
    throttler = Throttler(channel, clock=clock, max_wait=60.0)
    for _ in range(20):  # 20 x 500 recipients = the day's 10,000, 30 a minute allows it
        await throttler.send(message(500))
    first_send = channel.log[0][0]
    sends_before = len(channel.attempts)
    now = clock.now()

    with pytest.raises(QuotaExceededError) as caught:
        await throttler.send(message(1))

    assert now == clock.now()  # raised at once
    assert sends_before == len(channel.attempts)
    assert first_send + 86_400 == caught.value.resets_at
    assert first_send + 86_400 - now == caught.value.retry_after
    assert "10000 recipients per day" in str(caught.value)


# -- a Channel like any other --------------------------------------------------------------------------------


async def test_throttler_is_a_channel_with_the_wrapped_channels_name_scope_and_limits() -> None:
    """Name, scope and limits are the wrapped channel's; limits= overrides the limits it keeps."""
    scope = CredentialScope.per_address("alice@contoso.com")
    channel = FakeChannel(scope=scope, limits=OFFICE_365, name="office365")
    throttler = Throttler(channel)
    own = Limits(rates=(Rate.per_minute(5),))
    overridden = Throttler(channel, limits=own)

    assert isinstance(throttler, Channel)
    assert ("office365", scope, OFFICE_365) == (throttler.name, throttler.scope, throttler.limits)
    assert own == overridden.limits
    async with throttler as entered:
        assert entered is throttler
    assert channel.closed


async def test_the_default_key_is_the_channel_name_and_its_credential_identity() -> None:
    """Per-address: the mailbox, lower-cased; a credential_id attribute wins; unrestricted: '*'."""
    mailbox = FakeChannel(scope=CredentialScope.per_address("Alice@Contoso.com", "team@contoso.com"))
    mailbox.name = "office365"
    domain = FakeChannel(scope=CredentialScope.per_domain("Contoso.com"), name="sparkpost")
    named = FakeChannel(name="smtp")
    named.credential_id = "mailer@smtp.example.com"  # type: ignore[attr-defined]

    assert "office365:alice@contoso.com" == Throttler(mailbox).key
    assert "sparkpost:contoso.com" == Throttler(domain).key
    assert "smtp:mailer@smtp.example.com" == Throttler(named).key
    assert "fake:*" == Throttler(FakeChannel()).key
    assert "mine" == Throttler(FakeChannel(), key="mine").key


async def test_two_channel_objects_for_one_credential_share_one_budget() -> None:
    """Throttlers over different channel objects with the same identity and store draw on one budget."""
    clock = VirtualClock()
    store = MemoryStore()
    limits = Limits(rates=(Rate(2, 60),))
    scope = CredentialScope.per_address("alice@contoso.com")
    first = LoggingChannel(scope=scope, limits=limits, clock=clock)
    second = LoggingChannel(scope=scope, limits=limits, clock=clock)
    throttlers = [Throttler(c, store=store, clock=clock, max_wait=math.inf) for c in (first, second)]

    await asyncio.gather(*(t.send(message(sender="alice@contoso.com")) for t in throttlers * 2))

    assert [0.0, 0.0, 60.0, 60.0] == sorted(at for at, _ in first.log + second.log)


async def test_waiting_sends_go_in_the_order_they_asked() -> None:
    """FIFO: with one send a minute, ten concurrent senders go in the order they called send."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock, max_wait=math.inf)
    messages = [Message("a@example.com", ["b@example.com"], subject=str(i)) for i in range(10)]

    await asyncio.gather(*(throttler.send(m) for m in messages))

    assert [str(i) for i in range(10)] == [m.subject for m in channel.outbox]
    assert [60.0 * i for i in range(10)] == [at for at, _ in channel.log]


async def test_a_send_takes_message_and_recipient_permits_together() -> None:
    """A 40-recipient message under Office 365's limits takes 1 message and 40 recipient permits at once."""
    clock = VirtualClock()
    limits = Limits(rates=(Rate(30, 60), Rate(100, 86_400, "recipients")))
    channel = LoggingChannel(limits=limits, clock=clock)
    throttler = Throttler(channel, clock=clock, max_wait=60.0)
    await throttler.send(message(40))
    await throttler.send(message(40))

    with pytest.raises(QuotaExceededError):
        await throttler.send(message(40))  # 120 recipients would break the day's 100
    for _ in range(20):
        await throttler.send(message(1))  # the refused send took no message permit

    assert 22 == len(channel.log)
    assert {0.0} == {at for at, _ in channel.log}


# -- max_wait ---------------------------------------------------------------------------------------------


async def test_a_permit_further_than_max_wait_raises_at_once_and_records_nothing() -> None:
    """QuotaExceededError comes at once with retry_after/resets_at; the next send gets the same slot."""
    clock = VirtualClock(start=1000.0)
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock, max_wait=10.0)
    await throttler.send(message())
    await clock.sleep(5)

    with pytest.raises(QuotaExceededError) as caught:
        await throttler.send(message())

    assert 1005.0 == clock.now()
    assert 55.0 == caught.value.retry_after
    assert 1060.0 == caught.value.resets_at
    assert "fake" == caught.value.channel
    assert 1 == len(channel.attempts)
    patient = Throttler(channel, store=throttler.store, clock=clock, max_wait=60.0)
    await patient.send(message())
    assert [1000.0, 1060.0] == [at for at, _ in channel.log]


@pytest.mark.parametrize("max_wait", [-1.0, float("nan"), "60", True])
def test_max_wait_must_be_a_number_of_seconds(max_wait: object) -> None:
    """A bad max_wait is refused when the throttler is built, naming the remedy."""
    with pytest.raises(ConfigurationError, match="max_wait"):
        Throttler(FakeChannel(), max_wait=max_wait)  # type: ignore[arg-type]


def test_key_must_be_a_non_empty_string() -> None:
    """An empty key is refused when the throttler is built."""
    with pytest.raises(ConfigurationError, match="key"):
        Throttler(FakeChannel(), key="")


# -- what the provider says ---------------------------------------------------------------------------------


async def test_a_throttled_error_pauses_the_key_for_every_sender_and_is_raised_again() -> None:
    """ThrottledError(retry_after=30) pauses the key in the store: another throttler waits too."""
    clock = VirtualClock()
    store = MemoryStore()
    limits = Limits(rates=(Rate(100, 60),))
    first = LoggingChannel(limits=limits, clock=clock)
    second = LoggingChannel(limits=limits, clock=clock)
    throttler = Throttler(first, store=store, clock=clock)
    other = Throttler(second, store=store, clock=clock)
    first.throttle_next(30.0)

    with pytest.raises(ThrottledError):
        await throttler.send(message())
    await other.send(message())

    assert [30.0] == [at for at, _ in second.log]


async def test_a_throttled_error_without_retry_after_pauses_for_the_default() -> None:
    """A ThrottledError that gives no retry_after pauses the key for DEFAULT_PAUSE seconds."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(100, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock)
    channel.throttle_next(None)

    with pytest.raises(ThrottledError):
        await throttler.send(message())
    await throttler.send(message())

    assert [0.0, DEFAULT_PAUSE] == [at for at, _ in channel.log]


async def test_pauses_hold_even_without_rates() -> None:
    """A channel that declares no rates is still paused when its provider asks to slow down."""
    clock = VirtualClock()
    channel = LoggingChannel(clock=clock)
    throttler = Throttler(channel, clock=clock)
    channel.throttle_next(12.0)

    with pytest.raises(ThrottledError):
        await throttler.send(message())
    await throttler.send(message())

    assert [0.0, 12.0] == [at for at, _ in channel.log]


async def test_a_provider_quota_error_pauses_the_key_until_it_resets() -> None:
    """QuotaExceededError(resets_at=...) from the provider: other sends fail at once with that resets_at."""
    clock = VirtualClock(start=500.0)
    channel = LoggingChannel(limits=Limits(rates=(Rate(100, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock, max_wait=60.0)
    channel.fail_next(QuotaExceededError("daily quota spent", code=554, resets_at=500.0 + 7200))

    with pytest.raises(QuotaExceededError, match="daily quota spent"):
        await throttler.send(message())
    with pytest.raises(QuotaExceededError) as caught:
        await throttler.send(message())

    assert 500.0 + 7200 == caught.value.resets_at
    assert 1 == len(channel.attempts)


async def test_a_send_woken_inside_a_pause_it_did_not_see_waits_for_the_pause_to_end() -> None:
    """A send that reserved its slot before the key was paused does not go inside the pause."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 10),)), clock=clock, latency=1.0)
    throttler = Throttler(channel, clock=clock, max_wait=math.inf)
    channel.throttle_next(30.0)

    first = asyncio.ensure_future(throttler.send(message()))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(throttler.send(message()))  # reserves the slot at 10 before the pause
    await asyncio.gather(first, second, return_exceptions=True)

    assert isinstance(first.exception(), ThrottledError)
    assert [0.0, 31.0] == [at for at, _ in channel.log]


# -- what a failed attempt costs -----------------------------------------------------------------------------


async def test_an_attempt_that_never_reached_the_provider_gives_its_permit_back() -> None:
    """ConnectionLostError means nothing was handed over: the next send need not wait."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock)
    channel.fail_next(ConnectionLostError("connection refused"))

    with pytest.raises(ConnectionLostError):
        await throttler.send(message())
    await throttler.send(message())

    assert [0.0, 0.0] == [at for at, _ in channel.log]


@pytest.mark.parametrize(
    "error",
    [
        RecipientsRefusedError("all refused", rejected={"b@example.com": "550 5.1.1 no such user"}),
        DeliveryUnknownError("connection dropped after DATA"),
        ThrottledError("slow down", retry_after=0.0),
    ],
)
async def test_an_attempt_that_reached_the_provider_keeps_its_permit(error: Exception) -> None:
    """A refusal, an unknown outcome or a throttled answer counts against the limits like a success."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock)
    channel.fail_next(error)  # type: ignore[arg-type]

    with pytest.raises(type(error)):
        await throttler.send(message())
    await throttler.send(message())

    assert [0.0, 60.0] == [at for at, _ in channel.log]


async def test_a_send_cancelled_while_waiting_gives_its_slot_back() -> None:
    """Cancelling a waiting send frees its slot for the next one."""
    clock = VirtualClock()
    channel = LoggingChannel(limits=Limits(rates=(Rate(1, 60),)), clock=clock)
    throttler = Throttler(channel, clock=clock, max_wait=math.inf)
    await throttler.send(message())
    waiting = asyncio.ensure_future(throttler.send(message()))
    await clock.sleep(10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await throttler.send(message())

    assert [0.0, 60.0] == [at for at, _ in channel.log]


# -- checks before any permit is taken -------------------------------------------------------------------


async def test_a_sender_outside_the_scope_is_refused_before_any_permit_is_taken() -> None:
    """SenderNotAllowedError comes first: the budget is untouched."""
    clock = VirtualClock()
    channel = LoggingChannel(
        scope=CredentialScope.per_address("alice@contoso.com"),
        limits=Limits(rates=(Rate(1, 60),)),
        clock=clock,
    )
    throttler = Throttler(channel, clock=clock)

    with pytest.raises(SenderNotAllowedError):
        await throttler.send(message(sender="mallory@contoso.com"))
    await throttler.send(message(sender="alice@contoso.com"))

    assert [0.0] == [at for at, _ in channel.log]


async def test_a_message_larger_than_a_whole_window_is_refused() -> None:
    """A message to more recipients than a recipients rate allows in a window can never go."""
    channel = FakeChannel(limits=Limits(rates=(Rate(10, 60, "recipients"),)))

    with pytest.raises(InvalidMessageError, match="split it"):
        await Throttler(channel).send(message(11))

    assert [] == channel.attempts


# -- verify, close, repr ---------------------------------------------------------------------------------


async def test_verify_reaches_the_store_and_the_channel() -> None:
    """verify() passes through to the channel (which fails here as scripted for its verify)."""

    class Unreachable(FakeChannel):
        async def verify(self) -> None:
            raise ConnectionLostError("cannot connect", channel=self.name)

    with pytest.raises(ConnectionLostError, match="cannot connect"):
        await Throttler(Unreachable()).verify()
    await Throttler(FakeChannel()).verify()


def test_repr_names_the_key_limits_and_store() -> None:
    """The repr says which budget, which limits and which store."""
    throttler = Throttler(FakeChannel(limits=Limits(rates=(Rate(30, 60),))), store=MemoryStore())

    text = repr(throttler)

    assert "key='fake:*'" in text
    assert "30 messages per minute" in text
    assert "MemoryStore" in text


# -- memory -------------------------------------------------------------------------------------------------


class _NullChannel:
    """A channel that keeps and logs nothing, so that memory measured is the throttler's alone."""

    name = "null"
    scope = CredentialScope.unrestricted()
    limits = Limits(rates=(Rate(50, 10), Rate(500, 60, "recipients")))

    async def send(self, message: Message) -> SendResult:
        return SendResult(message_id=message.message_id, accepted=message.recipients, channel=self.name)

    async def verify(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> _NullChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


@pytest.mark.no_secret_sweep
async def test_memory_stays_flat_once_the_windows_are_full() -> None:
    """The ledger holds what the windows hold: 8,000 more sends allocate no more than a few deque blocks."""
    clock = VirtualClock()
    throttler = Throttler(_NullChannel(), clock=clock, max_wait=math.inf)
    mail = message(3)
    tracemalloc.start()
    try:

        async def send(times: int) -> None:
            for _ in range(times):
                await throttler.send(mail)

        def held() -> int:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*sendchannel/_throttle/*")]
            )
            return sum(stat.size for stat in snapshot.statistics("filename"))

        await send(1_000)  # more than either window holds (50 and 166 sends)
        after_first = held()
        await send(8_000)
        after_more = held()
    finally:
        tracemalloc.stop()
    # Kept sends would take some 900 kB; a window may straddle one more 64-entry deque block.
    assert after_more <= after_first + 4_096, (after_first, after_more)


def test_something_that_is_not_a_channel_is_refused() -> None:
    """Throttler(obj) names what a Channel needs when obj is not one."""
    with pytest.raises(ConfigurationError, match="Throttler wraps a Channel"):
        Throttler(object())  # type: ignore[arg-type]
