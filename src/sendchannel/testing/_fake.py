"""FakeChannel: a channel for tests that keeps what it sent and fails on cue like a real provider."""

from __future__ import annotations

import collections
import itertools
import threading
import urllib.parse
from typing import Any

from sendchannel._channel import BaseChannel, check_message
from sendchannel._clock import Clock, SystemClock
from sendchannel._limits import HOUR, Limits
from sendchannel._message import Message
from sendchannel._providers import Provider
from sendchannel._refusals import all_refused_error
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel.errors import QuotaExceededError, SendError, ThrottledError

__all__ = ["FakeChannel", "memory_channel"]

_ids = itertools.count(1)


class _Fault:
    __slots__ = ("delivered", "error", "times")

    def __init__(self, error: SendError | type[SendError], times: int, delivered: bool) -> None:
        self.error = error
        self.times = times
        self.delivered = delivered


class FakeChannel(BaseChannel):
    """A channel that sends nothing and remembers everything, for users' test suites.

    It checks the scope and per-message limits before "sending", exactly as a real channel does, keeps
    each message it accepted in :attr:`outbox` and every call of :meth:`send` in :attr:`attempts`, and
    fails on cue: :meth:`fail_next`, :meth:`reject_recipients`, :meth:`throttle_next`. With
    ``enforce_limits=True`` it also answers like a provider whose rate limits were exceeded.

    Args:
        scope: Which senders it accepts (any by default).
        limits: Its limits (per-message checks always apply; rates only with ``enforce_limits``).
        name: The channel name reported in results and errors.
        clock: The clock for ``latency`` and ``enforce_limits`` (a ``VirtualClock`` in tests).
        latency: Seconds each send takes, slept on the clock.
        enforce_limits: Raise ThrottledError (windows under an hour) or QuotaExceededError (longer
            windows) when a send would go over a rate in ``limits``, as the provider would.

    Example::

        channel = FakeChannel()
        await channel.send(Message("a@example.com", ["b@example.com"], subject="Hi"))
        assert channel.outbox[0].subject == "Hi"
    """

    def __init__(
        self,
        scope: CredentialScope | None = None,
        limits: Limits | None = None,
        name: str = "fake",
        *,
        clock: Clock | None = None,
        latency: float = 0.0,
        enforce_limits: bool = False,
    ) -> None:
        self.name = name
        self.scope = scope if scope is not None else CredentialScope.unrestricted()
        self.limits = limits if limits is not None else Limits()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.latency = latency
        self.enforce_limits = enforce_limits
        #: The messages accepted, in order.
        self.outbox: list[Message] = []
        #: Every message given to :meth:`send`, failed ones included, in order.
        self.attempts: list[Message] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._refusals: dict[str, str] = {}
        self._ledger: list[tuple[float, int]] = []
        self.closed = False

    # -- scripting -------------------------------------------------------------------------------

    def fail_next(
        self, error: SendError | type[SendError], times: int = 1, *, delivered: bool = False
    ) -> None:
        """Make the next ``times`` sends raise ``error`` (an instance, or a class built with a stock text).

        Args:
            error: What to raise.
            times: How many sends fail this way.
            delivered: Put the message in the outbox before raising, as when a connection drops after the
                provider took the message (pair it with DeliveryUnknownError to test for duplicates).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Fault(error, times, delivered))

    def throttle_next(self, retry_after: float | None, times: int = 1) -> None:
        """Make the next ``times`` sends raise ThrottledError asking to wait ``retry_after`` seconds."""
        error = ThrottledError(
            f"{self.name} asked to slow down (421 4.7.0 try again later)",
            code=421,
            enhanced_code="4.7.0",
            retry_after=retry_after,
            channel=self.name,
        )
        self.fail_next(error, times)

    def reject_recipients(self, *addresses: str, reply: str = "550 5.1.1 mailbox unavailable") -> None:
        """Refuse these recipients with ``reply`` from now on; the others are still accepted.

        When every recipient of a send is refused, the send raises as a real channel would
        (RecipientsRefusedError, or a TransientError when every reply was 4xx).
        """
        for address in addresses:
            self._refusals[address.lower()] = reply

    def clear(self) -> None:
        """Forget the outbox, the attempts, the scripted faults and the refusals."""
        self.outbox.clear()
        self.attempts.clear()
        self._faults.clear()
        self._refusals.clear()
        self._ledger.clear()

    # -- Channel -----------------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        """Record the attempt, check and "send" the message, or fail as scripted."""
        self.attempts.append(message)
        return await super().send(message)

    async def _send(self, message: Message) -> SendResult:
        if self.closed:
            raise RuntimeError(f"{self.name} is closed; open a new channel")
        if self.latency:
            await self.clock.sleep(self.latency)
        if self._faults:
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            if fault.delivered:
                self.outbox.append(message)
            error = fault.error
            raise error(f"{self.name} failed as scripted", channel=self.name) if isinstance(
                error, type
            ) else error
        recipients = message.recipients
        rejected = {r: self._refusals[r.lower()] for r in recipients if r.lower() in self._refusals}
        accepted = tuple(r for r in recipients if r.lower() not in self._refusals)
        if not accepted:
            raise all_refused_error(rejected, channel=self.name)
        if self.enforce_limits:
            self._take(len(accepted))
        self.outbox.append(message)
        return SendResult(
            message_id=message.message_id,
            provider_id=f"{self.name}-{next(_ids)}",
            accepted=accepted,
            rejected=rejected,
            channel=self.name,
        )

    def _take(self, recipients: int) -> None:
        now = self.clock.now()
        longest = max((rate.per for rate in self.limits.rates), default=0.0)
        self._ledger = [(t, n) for t, n in self._ledger if t > now - longest]
        for rate in self.limits.rates:
            window = [(t, n) for t, n in self._ledger if t > now - rate.per]
            used = sum(rate.cost(n) for _, n in window)
            if used + rate.cost(recipients) > rate.count:
                # The earliest moment enough of the window has expired for this send.
                free = used + rate.cost(recipients) - rate.count
                for t, n in window:
                    free -= rate.cost(n)
                    if free <= 0:
                        wait = t + rate.per - now
                        break
                else:  # pragma: no cover - a single send larger than the rate
                    wait = rate.per
                if rate.per >= HOUR:
                    raise QuotaExceededError(
                        f"{self.name}: the limit of {rate} is spent until it resets",
                        code=554,
                        channel=self.name,
                        retry_after=wait,
                        resets_at=now + wait,
                    )
                raise ThrottledError(
                    f"{self.name}: over the limit of {rate}; slow down",
                    code=421,
                    enhanced_code="4.7.0",
                    channel=self.name,
                    retry_after=wait,
                )
        self._ledger.append((now, recipients))

    def check(self, message: Message) -> None:
        """Run the scope and per-message checks alone (raises as :meth:`send` would, sends nothing)."""
        check_message(self, message)

    async def aclose(self) -> None:
        """Mark the channel closed; later sends raise RuntimeError."""
        self.closed = True

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def like(cls, provider: type, identity: str | None = None, **overrides: Any) -> FakeChannel:
        """A fake with a provider class's scope kind, limits and name.

        Args:
            provider: A channel class such as ``Office365Channel`` (its ``scope_kind``,
                ``default_limits`` and ``provider_name`` class attributes are read; a
                ``scope_kind_for(identity)`` class method, where the provider has one, decides the kind).
            identity: The address (per-address) or domain (per-domain) the scope covers; defaults to
                ``"fake@example.com"`` or ``"example.com"``.
            overrides: FakeChannel's own arguments (``scope=``, ``limits=``, ``name=``, ...).
        """
        kind: ScopeKind = getattr(provider, "scope_kind", ScopeKind.UNRESTRICTED)
        kind_for = getattr(provider, "scope_kind_for", None)
        if callable(kind_for):  # a provider whose kind depends on the identity (Graph: mailbox or domain)
            kind = kind_for(identity)
        provider_name = getattr(provider, "provider_name", None)
        if "scope" not in overrides:
            if kind is ScopeKind.PER_ADDRESS:
                scope = CredentialScope.per_address(identity or "fake@example.com", provider=provider_name)
            elif kind is ScopeKind.PER_DOMAIN:
                scope = CredentialScope.per_domain(identity or "example.com", provider=provider_name)
            else:
                scope = CredentialScope.unrestricted(provider=provider_name)
            overrides["scope"] = scope
        overrides.setdefault("limits", getattr(provider, "default_limits", Limits()))
        class_name = getattr(provider, "name", None)
        overrides.setdefault(
            "name", f"fake-{class_name if isinstance(class_name, str) else provider.__name__.lower()}"
        )
        return cls(**overrides)

    def __repr__(self) -> str:
        return f"<FakeChannel {self.name!r} scope={self.scope} sent={len(self.outbox)}>"


# -- memory:// ---------------------------------------------------------------------------------------

_memory: dict[str, FakeChannel] = {}
_memory_lock = threading.Lock()


class _MemoryChannel(FakeChannel):
    """A FakeChannel shared by the whole process: like a server, it stays open when one user closes it."""

    async def aclose(self) -> None:
        """Do nothing: other code in the process may still be sending through this channel."""


def memory_channel(name: str = "default") -> FakeChannel:
    """The process-wide FakeChannel that ``memory://NAME`` URLs give (``memory://`` is ``"default"``).

    Code configured with a ``memory://`` URL sends into it, and a test inspects it here (the
    ``fake_channel`` fixture is ``memory_channel()``, emptied around each test). Since it is shared,
    closing it (``aclose()``, ``async with``) leaves it open for the rest of the process.
    """
    with _memory_lock:
        channel = _memory.get(name)
        if channel is None:
            channel = _memory[name] = _MemoryChannel(
                name=f"memory:{name}" if name != "default" else "memory"
            )
        return channel


def _from_url(url: urllib.parse.SplitResult, **overrides: Any) -> FakeChannel:
    netloc = url.netloc
    if url.password is not None:  # a password has no use here, and the name shows up in reprs and logs
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    name = netloc or url.path.strip("/") or "default"
    channel = memory_channel(name)
    for key, value in overrides.items():
        if key not in ("scope", "limits", "latency", "enforce_limits", "clock"):
            raise TypeError(f"memory:// takes no option {key!r}")
        setattr(channel, key, value)
    return channel


#: memory:// URLs: a FakeChannel per name, shared by everything in the process that names it.
MEMORY = Provider(
    scheme="memory",
    factory="sendchannel.testing._fake:_from_url",
    title="memory (a FakeChannel, for tests)",
)


def _reset_memory_channels() -> None:
    with _memory_lock:
        for channel in _memory.values():
            channel.clear()
            channel.closed = False


