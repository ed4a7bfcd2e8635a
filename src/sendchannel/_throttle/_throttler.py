"""Throttler: a Channel that keeps the channel it wraps inside its provider's sliding-window limits."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from typing import TypeVar

from sendchannel._address import try_parse_address
from sendchannel._channel import Channel, Closing, check_message, is_idempotent
from sendchannel._clock import Clock, SystemClock
from sendchannel._limits import Limits, Rate
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._throttle._memory import MemoryStore
from sendchannel._throttle._store import Reservation, ThrottleStore
from sendchannel.errors import (
    ConfigurationError,
    ConnectionLostError,
    InvalidMessageError,
    QuotaExceededError,
    SendError,
    ThrottledError,
)

__all__ = ["DEFAULT_PAUSE", "Throttler", "check_max_wait", "default_key"]

logger = logging.getLogger("sendchannel.throttle")

T = TypeVar("T")

#: Seconds a key is paused when the provider asks to slow down without saying for how long.
DEFAULT_PAUSE = 5.0

# A real clock's sleep may end a hair before its deadline; sleep again unless it is closer than this.
_CLOSE_ENOUGH = 1e-9

# Errors that say the message never reached the provider: the send gives its permits back.
_NOT_SENT = (ConnectionLostError, InvalidMessageError, ConfigurationError)


def check_max_wait(max_wait: object) -> float:
    """``max_wait`` in seconds as a float: a number, 0 or more (``math.inf`` for no bound).

    The Throttler's check, for those that take a ``max_wait`` to build throttlers with later (the directory).

    Raises:
        ConfigurationError: Not a number (a bool is not one), negative, or NaN.
    """
    if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not max_wait >= 0:
        raise ConfigurationError(
            f"max_wait must be a number of seconds, 0 or more (math.inf for no bound), got {max_wait!r}"
        )
    return float(max_wait)


class Throttler(Closing):
    """A Channel that sends through ``channel`` no faster than its limits allow, sharing one budget per key.

    For every :class:`~sendchannel.Rate` of the limits, in every window of ``rate.per`` seconds, the sends
    it lets through take at most ``rate.count`` messages or recipients (a sliding window, not a token
    bucket). A send takes its permits from every rate at once, or from none. Under steady demand it sends
    at the limit, and waiting sends go in the order they asked. Throttlers, processes and machines that use
    one store and one key share one budget.

    Each attempt that reaches the provider counts, whether it succeeded or failed; an attempt that the
    channel says never reached it (``ConnectionLostError``, ``InvalidMessageError``) gives its permits
    back. When the provider asks to slow down (``ThrottledError``) the key is paused in the store for the
    error's ``retry_after`` (:data:`DEFAULT_PAUSE` seconds when it gives none); a ``QuotaExceededError``
    pauses it until its ``resets_at`` (or for its ``retry_after``). Either way the error is raised again.

    Args:
        channel: The channel to send through.
        store: Where the budget is kept: a new :class:`MemoryStore` by default (this throttler alone);
            pass one shared store to share budgets between throttlers, processes or machines.
        limits: The limits to keep (default: ``channel.limits``, the provider's documented ones).
        key: The budget's name in the store (default ``"{channel.name}:{identity}"``, see
            :func:`default_key`).
        max_wait: The longest a send waits for its permits, in seconds (``math.inf`` for no bound). When
            the next permit is further away, ``send`` raises ``QuotaExceededError`` at once and records
            nothing.
        clock: Gives ``now()`` and ``async sleep(seconds)``; the real clock by default. A
            ``sendchannel.testing.VirtualClock`` makes a day of throttled traffic take milliseconds.

    Raises:
        ConfigurationError: ``channel`` is not a Channel, ``max_wait`` is negative or not a number, or
            ``key`` is empty.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        store: ThrottleStore | None = None,
        limits: Limits | None = None,
        key: str | None = None,
        max_wait: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(channel, Channel):
            raise ConfigurationError(
                f"Throttler wraps a Channel (an object with name, scope, limits, send, verify and aclose), "
                f"got {type(channel).__name__}"
            )
        wait = check_max_wait(max_wait)
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(f"key must be a non-empty string, got {key!r}")
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a sendchannel.Limits, got {type(limits).__name__}")
        self._channel = channel
        #: The wrapped channel's name.
        self.name = channel.name
        self._owns_store = store is None
        self._store: ThrottleStore = MemoryStore() if store is None else store
        self._limits = limits
        #: The budget's name in the store.
        self.key = key if key is not None else default_key(channel)
        #: The longest a send waits for its permits, in seconds.
        self.max_wait = wait
        #: The clock that times the waits.
        self.clock: Clock = SystemClock() if clock is None else clock
        self._rates_for: Limits | None = None
        self._rates: tuple[Rate, ...] = ()
        # A pause this throttler learnt of (it set it itself): a send woken inside it asks again.
        self._paused_until = -math.inf

    # -- Channel attributes: the wrapped channel's --------------------------------------------------------

    @property
    def idempotent(self) -> bool:
        """Whether the wrapped channel is idempotent (passed through, for a Retrying outside)."""
        return is_idempotent(self._channel)

    @property
    def scope(self) -> CredentialScope:
        """The wrapped channel's credential scope."""
        return self._channel.scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        self._channel.scope = value

    @property
    def limits(self) -> Limits:
        """The limits this throttler keeps: those it was given, else the wrapped channel's."""
        return self._channel.limits if self._limits is None else self._limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._limits = value

    @property
    def channel(self) -> Channel:
        """The wrapped channel."""
        return self._channel

    @property
    def store(self) -> ThrottleStore:
        """Where the budget is kept."""
        return self._store

    # -- sending ---------------------------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        """Wait for permits from every rate, then send through the wrapped channel.

        Raises:
            SenderNotAllowedError: The scope does not cover the sender (checked before taking permits).
            InvalidMessageError: The message breaks a per-message limit, or has more recipients than a
                rate allows in a whole window.
            QuotaExceededError: The next permit is further away than ``max_wait`` (``retry_after`` and
                ``resets_at`` say when it comes); nothing was sent or recorded.
            ConnectionLostError: The store cannot be reached; nothing was sent.
            SendError: Whatever the wrapped channel raised.
        """
        check_message(self, message)
        costs = self._costs(len(message.recipients))
        token = await self._take(costs)
        try:
            return await self._channel.send(message)
        except ThrottledError as exc:
            await self._pause(DEFAULT_PAUSE if exc.retry_after is None else exc.retry_after, exc)
            raise
        except QuotaExceededError as exc:
            if exc.resets_at is not None:
                await self._pause(exc.resets_at - self.clock.now(), exc)
            elif exc.retry_after is not None:
                await self._pause(exc.retry_after, exc)
            raise
        except _NOT_SENT:
            await self._give_back(costs, token)
            raise

    async def next_permit(self, message: Message | None = None) -> float:
        """Seconds until a send of ``message`` would get its permits (0.0: now); waits for nothing.

        It records nothing and takes nothing: the answer is what :meth:`send` would wait for at this
        moment, pauses included, for ``message`` (its recipients count against ``"recipients"`` rates), or
        for a message of one recipient when ``message`` is None. Another sender may take the permit
        first, so the answer is a forecast: a durable queue uses it to put a message back until then
        rather than hold a worker on a long wait.

        Raises:
            InvalidMessageError: The message has more recipients than a rate ever allows at once.
            ConnectionLostError: The store cannot be reached.
        """
        recipients = 1 if message is None else len(message.recipients)
        costs = self._costs(recipients)
        reservation = await self._call_store(
            self._store.next_permit(self.key, costs, now=self.clock.now)
        )
        now = self.clock.now()
        return max(0.0, reservation.at - now, self._paused_until - now)

    def _costs(self, recipients: int) -> list[tuple[Rate, int]]:
        costs = [(rate, rate.cost(recipients)) for rate in self._current_rates()]
        for rate, units in costs:
            if units > rate.count:
                raise InvalidMessageError(
                    f"The message has {recipients} recipients, but the limit of {rate} never allows that "
                    "many at once; split it into several messages."
                )
        return costs

    async def _take(self, costs: list[tuple[Rate, int]]) -> str | None:
        """Reserve a slot, sleep until it, and return its token."""
        clock = self.clock
        while True:
            try:
                reservation = await self._store.reserve(
                    self.key, costs, now=clock.now, max_wait=self.max_wait
                )
            except SendError as exc:
                if exc.channel is None:
                    exc.channel = self.name
                raise
            if not reservation.granted:
                raise self._too_far(reservation)
            try:
                await self._sleep_until(reservation.at)
            except BaseException:
                # Cancelled while waiting: the slot was never used.
                await self._give_back(costs, reservation.token)
                raise
            if clock.now() >= self._paused_until:
                return reservation.token
            # The key was paused while this send waited (or before the store heard of the pause): give the
            # slot back and ask again once the pause is over.
            await self._give_back(costs, reservation.token)
            await self._sleep_until(self._paused_until)

    async def _sleep_until(self, deadline: float) -> None:
        clock = self.clock
        wait = deadline - clock.now()
        while wait > _CLOSE_ENOUGH:
            await clock.sleep(wait)
            wait = deadline - clock.now()

    def _too_far(self, reservation: Reservation) -> QuotaExceededError:
        now = self.clock.now()
        wait = max(0.0, reservation.at - now)
        if reservation.limited_by is not None:
            cause = f"the limit of {reservation.limited_by} is used up"
        else:
            cause = "the budget is paused after the provider asked to slow down, or earlier sends are queued"
        return QuotaExceededError(
            f"{self.name} cannot send for {self.key} now: {cause}, and the next permit is {wait:.1f} s away, "
            f"longer than max_wait ({self.max_wait:g} s). Nothing was sent; try again after "
            f"{wait:.1f} s, or raise max_wait.",
            retry_after=wait,
            resets_at=now + wait,
            channel=self.name,
        )

    async def _pause(self, seconds: float, cause: SendError) -> None:
        if seconds <= 0:
            return
        self._paused_until = max(self._paused_until, self.clock.now() + seconds)
        logger.info(
            "throttle: pausing key=%s for %.1f s after %s from %s", self.key, seconds, type(cause).__name__,
            self.name,
        )
        try:
            await self._call_store(self._store.pause(self.key, seconds, now=self.clock.now))
        except SendError as exc:
            # The provider's error is what the caller must see; the store's failure is logged.
            logger.warning("throttle: could not pause key=%s in the store: %s", self.key, exc)

    async def _give_back(self, costs: list[tuple[Rate, int]], token: str | None) -> None:
        if token is None:
            return
        try:
            await self._call_store(self._store.release(self.key, costs, token))
        except SendError as exc:
            # Keeping a permit that was not used is the safe side of a failure.
            logger.warning("throttle: could not give back a permit for key=%s: %s", self.key, exc)

    async def _call_store(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except SendError as exc:
            if exc.channel is None:
                exc.channel = self.name
            raise

    def _current_rates(self) -> tuple[Rate, ...]:
        limits = self.limits
        if limits is not self._rates_for:
            self._rates = distinct_rates(limits.rates)
            self._rates_for = limits
        return self._rates

    # -- the rest of the Channel protocol -------------------------------------------------------------------

    async def verify(self) -> None:
        """Check that the store and the wrapped channel can be reached, sending nothing.

        Raises:
            SendError: The store or the provider cannot be reached, or the credentials were rejected.
        """
        await self._call_store(self._store.verify())
        await self._channel.verify()

    async def aclose(self) -> None:
        """Close the wrapped channel (and the store, when the throttler made its own)."""
        try:
            await self._channel.aclose()
        finally:
            if self._owns_store:
                await self._store.aclose()

    def __repr__(self) -> str:
        return (
            f"<Throttler key={self.key!r} limits={self.limits} store={self._store!r} "
            f"channel={self._channel!r}>"
        )


def default_key(channel: Channel) -> str:
    """The budget a channel's credential has by default: ``"{channel.name}:{identity}"``.

    The identity is the channel's ``credential_id`` attribute when it has one (a provider channel whose
    credential is not named by its scope sets it: never to a secret), else the first identity of its
    scope, lower-cased (the mailbox of a per-address credential, the first domain of a per-domain one),
    else ``"*"`` for an unrestricted scope: then every channel of that name shares one budget, which is
    safe but may be stricter than needed; pass ``key=`` to tell them apart.
    """
    identity = getattr(channel, "credential_id", None)
    if not isinstance(identity, str) or not identity:
        scope = channel.scope
        if not scope.identities:
            identity = "*"
        elif scope.kind is ScopeKind.PER_ADDRESS:
            parsed = try_parse_address(scope.identities[0])
            identity = (parsed.addr_spec if parsed is not None else scope.identities[0]).lower()
        else:
            identity = scope.identities[0].lower()
    return f"{channel.name}:{identity}"


def distinct_rates(rates: tuple[Rate, ...]) -> tuple[Rate, ...]:
    """The rates with one per window ``(per, unit)``: where two share a window, the stricter one."""
    strictest: dict[tuple[float, str], Rate] = {}
    for rate in rates:
        window = (rate.per, rate.unit)
        if window not in strictest or rate.count < strictest[window].count:
            strictest[window] = rate
    return tuple(strictest.values())
