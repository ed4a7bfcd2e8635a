"""pipeline: the usual stack, Retrying(Throttler(channel)), from simple arguments."""

from __future__ import annotations

from sendchannel._channel import Channel
from sendchannel._clock import Clock
from sendchannel._limits import Limits
from sendchannel._retry import _DEFAULT_POLICY, Retrying, RetryPolicy
from sendchannel._throttle import Throttler, ThrottleStore
from sendchannel.errors import ConfigurationError

__all__ = ["pipeline"]


def pipeline(
    channel: Channel,
    *,
    throttle: bool = True,
    store: ThrottleStore | None = None,
    limits: Limits | None = None,
    max_wait: float = 60.0,
    retry: RetryPolicy | None = _DEFAULT_POLICY,
    clock: Clock | None = None,
) -> Channel:
    """Wrap ``channel`` in the usual layers: ``Retrying(Throttler(channel))``.

    The throttler is inside the retry layer, so every attempt counts against the provider's limits,
    and a throttled attempt waits for the budget like any other. This is all a safe Office 365 sender
    needs::

        channel = pipeline(Office365Channel("alice@contoso.com", password=...), store=SqliteStore("quota.db"))

    Args:
        channel: The channel to send through.
        throttle: Keep sends inside the channel's limits (a :class:`~sendchannel.Throttler`);
            False leaves that layer out.
        store: Where the throttler keeps its ledger: a :class:`~sendchannel.MemoryStore` (the default,
            one process), :class:`~sendchannel.SqliteStore` (processes on one host) or
            :class:`~sendchannel.RedisStore` (a fleet).
        limits: The limits to keep to, when they differ from the channel's own (a tenant's or a plan's).
        max_wait: The longest the throttler waits for a permit before raising
            :class:`~sendchannel.errors.QuotaExceededError`.
        retry: The retry policy; None leaves the retry layer out.
        clock: The clock both layers read and sleep on (the system clock by default; a
            :class:`~sendchannel.testing.VirtualClock` in tests).

    Returns:
        The outermost layer, itself a Channel (``channel`` itself when both layers are left out).

    Raises:
        ConfigurationError: ``store``, ``limits`` or ``max_wait`` given with ``throttle=False``, where
            they would do nothing.
    """
    if throttle:
        # Without a store the throttler makes (and owns, and closes) its own MemoryStore.
        channel = Throttler(channel, limits=limits, max_wait=max_wait, clock=clock, store=store)
    else:
        unused = [
            name
            for name, given in (
                ("store", store is not None),
                ("limits", limits is not None),
                ("max_wait", max_wait != 60.0),
            )
            if given
        ]
        if unused:
            raise ConfigurationError(
                f"pipeline(throttle=False) has no throttler to pass {', '.join(unused)} to; "
                "drop them, or leave throttle=True"
            )
    if retry is not None:
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy or None, got {type(retry).__name__}; "
                "write retry=RetryPolicy(attempts=3)"
            )
        channel = Retrying(channel, retry, clock=clock)
    return channel
