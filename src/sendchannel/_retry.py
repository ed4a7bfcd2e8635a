"""The retry layer: RetryPolicy says what is worth trying again and how long to wait; Retrying does it.

Built on tenacity, which no signature shows: when the attempts run out, the last
:class:`~sendchannel.errors.SendError` itself is raised (with ``attempts`` set), never a wrapper.
"""

from __future__ import annotations

import logging
import math
import random
from types import TracebackType

import attrs

from sendchannel._channel import Channel, Closing, is_idempotent
from sendchannel._clock import Clock, SystemClock
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope
from sendchannel.errors import DeliveryUnknownError, SendError, TransientError

__all__ = ["RetryPolicy", "Retrying", "is_testing", "set_testing"]

logger = logging.getLogger("sendchannel")


def _check_attempts(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RetryPolicy.attempts must be a whole number of at least 1, got {value!r}")


def _check_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(
            f"RetryPolicy.{attribute.name} must be a number of seconds, 0 or more, got {value!r}"
        )


def _check_multiplier(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise ValueError(
            f"RetryPolicy.multiplier must be 1 or more (1 waits the same each time), got {value!r}"
        )


def _check_max_elapsed(
    instance: object, attribute: object, value: float | None
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"RetryPolicy.max_elapsed must be a number of seconds above 0, or None for no bound, "
            f"got {value!r}"
        )


def _to_float(value: float) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _to_optional_float(value: float | None) -> float | None:
    return None if value is None else _to_float(value)


@attrs.frozen
class RetryPolicy:
    """What to retry and how long to wait between attempts: a value, shared freely.

    Transient failures (:class:`~sendchannel.errors.TransientError`, which includes
    :class:`~sendchannel.errors.ThrottledError` and :class:`~sendchannel.errors.ConnectionLostError`)
    are retried. Permanent failures, spent quotas and invalid messages are not: another attempt would
    fail the same way. A :class:`~sendchannel.errors.DeliveryUnknownError` is not retried, because the
    message may already have gone out, unless the channel is idempotent (``channel.idempotent``: the
    provider delivers the same message once, as SparkPost's Idempotency-Key does) or ``retry_ambiguous`` is
    set.

    The wait after the n-th failed attempt is drawn uniformly between 0 and
    ``min(maximum, initial * multiplier ** (n - 1))`` ("full jitter", so that many senders failing
    together do not come back together), or is exactly that ceiling when ``jitter`` is off. It is never
    shorter than the ``retry_after`` the provider asked for.

    Args:
        attempts: The most attempts in all, the first one included (1 means never retry).
        initial: The ceiling of the first wait, in seconds.
        maximum: The largest ceiling any wait grows to, in seconds (a provider's ``retry_after`` may
            still ask for longer).
        multiplier: How much the ceiling grows after each failed attempt.
        jitter: Draw each wait at random below its ceiling (full jitter) instead of waiting the ceiling.
        max_elapsed: Seconds from the first attempt after which no new attempt starts: when the next
            wait would end later than that, the last error is raised at once. None for no bound.
        retry_ambiguous: Retry a DeliveryUnknownError too. Only for messages whose duplicates do no
            harm: the recipient may get the message twice.

    Raises:
        ValueError: When a field is out of range (the text names it).
    """

    attempts: int = attrs.field(default=5, validator=_check_attempts)
    initial: float = attrs.field(default=1.0, converter=_to_float, validator=_check_seconds)
    maximum: float = attrs.field(default=60.0, converter=_to_float, validator=_check_seconds)
    multiplier: float = attrs.field(default=2.0, converter=_to_float, validator=_check_multiplier)
    jitter: bool = True
    max_elapsed: float | None = attrs.field(
        default=300.0, converter=_to_optional_float, validator=_check_max_elapsed
    )
    retry_ambiguous: bool = False

    def is_retryable(self, error: BaseException, *, idempotent: bool = False) -> bool:
        """Whether this policy retries ``error`` (attempts and time left aside).

        A DeliveryUnknownError is retried from an ``idempotent`` channel (the provider delivers the same
        message once, whatever happened to the first attempt), or when ``retry_ambiguous`` is set.
        """
        if isinstance(error, DeliveryUnknownError):
            return idempotent or self.retry_ambiguous
        return isinstance(error, TransientError)

    def ceiling(self, failed_attempts: int) -> float:
        """The longest backoff after ``failed_attempts`` failed attempts (before jitter and retry_after)."""
        if failed_attempts < 1:
            raise ValueError("failed_attempts counts from 1")
        try:
            grown = self.initial * self.multiplier ** (failed_attempts - 1)
        except OverflowError:
            grown = math.inf
        return min(self.maximum, grown)

    def backoff(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """A wait before the next attempt after ``failed_attempts`` failures: jittered, at least retry_after.

        Under :func:`sendchannel.testing.set_testing` every wait is zero.
        """
        if _testing.active:
            return 0.0
        ceiling = self.ceiling(failed_attempts)
        wait = random.uniform(0.0, ceiling) if self.jitter else ceiling
        return max(wait, retry_after or 0.0)


_DEFAULT_POLICY = RetryPolicy()


# -- the testing switch ----------------------------------------------------------------------------


@attrs.define
class _TestingMode:
    active: bool = False
    attempts: int | None = None


_testing = _TestingMode()


def set_testing(testing: bool, *, attempts: int | None = None) -> _TestingContext:
    """Switch every retry layer in the process into (or out of) testing mode.

    In testing mode no retry layer waits between attempts, whatever the policy or the provider's
    ``retry_after`` says, so a test suite that exercises failures runs at full speed. With ``attempts``,
    every policy is also capped at that many attempts (``attempts=1`` turns retrying off).

    Call it once in a ``conftest.py``, or use the return value as a context manager that restores the
    previous mode on exit::

        with set_testing(True, attempts=2):
            ...

    Args:
        testing: Turn testing mode on (True) or off (False).
        attempts: Cap every policy at this many attempts while testing mode is on; None keeps each
            policy's own number.

    Raises:
        ValueError: When ``attempts`` is below 1.
    """
    if attempts is not None and (isinstance(attempts, bool) or attempts < 1):
        raise ValueError(f"attempts must be at least 1, got {attempts!r}")
    previous = _TestingMode(_testing.active, _testing.attempts)
    _testing.active = bool(testing)
    _testing.attempts = attempts if testing else None
    return _TestingContext(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` has switched retrying into testing mode."""
    return _testing.active


class _TestingContext:
    """What :func:`set_testing` returns: leaving its ``with`` block restores the previous mode."""

    def __init__(self, previous: _TestingMode) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _testing.active = self._previous.active
        _testing.attempts = self._previous.attempts


# -- the retry layer -------------------------------------------------------------------------------


class _Call:
    """The state of one ``Retrying.send``: when it started, the waits drawn, the attempts counted.

    Tenacity's hooks receive a RetryCallState; these methods are those hooks, bound to this call, reading
    time from the layer's clock rather than tenacity's.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        clock: Clock,
        channel_name: str,
        message_id: str,
        *,
        idempotent: bool = False,
    ) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.clock = clock
        self.channel_name = channel_name
        self.message_id = message_id
        self.started = clock.now()
        self.attempts = 0
        self.waits: dict[int, float] = {}
        limit = policy.attempts
        if _testing.active and _testing.attempts is not None:
            limit = min(limit, _testing.attempts)
        self.attempt_limit = limit

    def _error(self, state: object) -> BaseException | None:
        outcome = getattr(state, "outcome", None)
        if outcome is None or not outcome.failed:
            return None
        error: BaseException | None = outcome.exception()
        return error

    def retry(self, state: object) -> bool:
        error = self._error(state)
        return error is not None and self.policy.is_retryable(error, idempotent=self.idempotent)

    def wait(self, state: object) -> float:
        number: int = getattr(state, "attempt_number", 1)
        if number not in self.waits:
            error = self._error(state)
            retry_after = error.retry_after if isinstance(error, SendError) else None
            self.waits[number] = self.policy.backoff(number, retry_after)
        return self.waits[number]

    def stop(self, state: object) -> bool:
        number: int = getattr(state, "attempt_number", 1)
        if number >= self.attempt_limit:
            return True
        if self.policy.max_elapsed is None:
            return False
        ends = self.clock.now() - self.started + self.wait(state)
        return ends > self.policy.max_elapsed

    def before_sleep(self, state: object) -> None:
        number: int = getattr(state, "attempt_number", 1)
        error = self._error(state)
        logger.info(
            "retrying: channel=%s message_id=%s attempt=%d wait=%.3fs error=%s: %s",
            self.channel_name,
            self.message_id,
            number,
            self.waits.get(number, 0.0),
            type(error).__name__,
            error,
        )

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(float(seconds))


class Retrying(Closing):
    """A Channel that retries another channel's transient failures, as its :class:`RetryPolicy` says.

    Each attempt is a full ``send`` on the wrapped channel, so put a
    :class:`~sendchannel.Throttler` *inside* it (``Retrying(Throttler(channel))``, which
    :func:`~sendchannel.pipeline` builds) to count every attempt against the provider's limits.

    Waits go through ``clock``, so a :class:`~sendchannel.testing.VirtualClock` makes them take no real
    time; :func:`sendchannel.testing.set_testing` makes them zero for a whole test suite. Cancelling a
    send cancels the attempt or the wait in progress at once.

    Args:
        channel: The channel to send through.
        policy: What to retry, how often, and how long to wait.
        clock: Where time comes from and waits happen (the system clock by default).

    Example::

        channel = Retrying(SmtpChannel("smtp.example.com"), RetryPolicy(attempts=3))
        result = await channel.send(message)
        print(result.attempts)
    """

    def __init__(
        self, channel: Channel, policy: RetryPolicy = _DEFAULT_POLICY, *, clock: Clock | None = None
    ) -> None:
        if not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"policy must be a RetryPolicy, got {type(policy).__name__}; "
                "write Retrying(channel, RetryPolicy(attempts=3))"
            )
        #: The channel each attempt goes through.
        self.channel = channel
        #: The policy in force.
        self.policy = policy
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.name = channel.name

    @property
    def scope(self) -> CredentialScope:
        """The wrapped channel's scope."""
        return self.channel.scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        self.channel.scope = value

    @property
    def limits(self) -> Limits:
        """The wrapped channel's limits."""
        return self.channel.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self.channel.limits = value

    @property
    def idempotent(self) -> bool:
        """Whether the wrapped channel is idempotent; if so, an unknown outcome is retried (same message)."""
        return is_idempotent(self.channel)

    async def send(self, message: Message) -> SendResult:
        """Send ``message``, trying again after transient failures.

        Returns:
            The wrapped channel's result, with ``attempts`` counting every attempt made.

        Raises:
            SendError: The last attempt's error, with ``attempts`` set, when the error is not worth
                retrying or the attempts or time ran out.
            InvalidMessageError: When the message cannot be sent through the channel (never retried).
        """
        import tenacity

        call = _Call(self.policy, self.clock, self.name, message.message_id, idempotent=self.idempotent)

        async def attempt() -> SendResult:
            try:
                result = await self.channel.send(message)
            except SendError as exc:
                call.attempts += max(1, exc.attempts)
                raise
            except BaseException:
                call.attempts += 1
                raise
            call.attempts += max(1, result.attempts)
            return result

        controller = tenacity.AsyncRetrying(
            sleep=call.sleep,
            stop=call.stop,
            wait=call.wait,
            retry=call.retry,
            before_sleep=call.before_sleep,
            reraise=True,
        )
        try:
            result: SendResult = await controller(attempt)
        except SendError as exc:
            exc.attempts = call.attempts
            raise
        return attrs.evolve(result, attempts=call.attempts)

    async def verify(self) -> None:
        """Verify the wrapped channel once (not retried: it answers whether the channel works now)."""
        await self.channel.verify()

    async def aclose(self) -> None:
        """Close the wrapped channel."""
        await self.channel.aclose()

    def __repr__(self) -> str:
        return f"<Retrying {self.channel!r} attempts={self.policy.attempts}>"
