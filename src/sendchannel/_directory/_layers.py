"""The layers the directory puts around each entry's channel.

For an entry, ``send`` goes through::

    _Guard ─> Retrying ─> Throttler ─> _Observed ─> the provider's channel

- ``_Observed`` (inside the throttler, so it sees the provider's own answers only, never the throttler's
  "budget spent") records health: an ``AuthenticationError`` marks the entry ``needs_reconnect``, a
  ``QuotaExceededError`` with ``resets_at`` marks it ``paused``; after every call it writes back
  credentials that the provider's client refreshed in place.
- ``_Guard`` (outside everything) answers at once, without contacting the provider or taking a permit,
  for an entry that needs reconnecting or is paused.
- ``_Failover`` tries the next fitting entry, as FailoverChannel does, and also after an
  AuthenticationError (nothing was sent).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from sendchannel._channel import Channel, Closing
from sendchannel._directory._entry import NEEDS_RECONNECT, PAUSED
from sendchannel._failover import FailoverChannel
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope
from sendchannel.errors import AuthenticationError, QuotaExceededError, TransientError

if TYPE_CHECKING:
    from sendchannel._directory._runtime import Runtime

__all__ = ["Failover", "Guard", "Observed"]


class Observed(Closing):
    """The provider's channel, with its authentication and quota answers recorded in the directory."""

    def __init__(self, channel: Channel, runtime: Runtime) -> None:
        self._channel = channel
        self._runtime = runtime
        self.name = channel.name

    @property
    def scope(self) -> CredentialScope:
        """The provider channel's scope."""
        return self._channel.scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        self._channel.scope = value

    @property
    def limits(self) -> Limits:
        """The provider channel's limits."""
        return self._channel.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._channel.limits = value

    @property
    def idempotent(self) -> bool:
        """Whether the provider recognises a repeated send (passed through)."""
        return bool(getattr(self._channel, "idempotent", False))

    async def send(self, message: Message) -> SendResult:
        """Send through the provider; record what its answer says about the credential."""
        try:
            return await self._channel.send(message)
        except AuthenticationError as exc:
            await self._runtime.credentials_refused(exc)
            raise
        except QuotaExceededError as exc:
            if exc.resets_at is not None:
                await self._runtime.quota_spent(exc)
            raise
        finally:
            if self._runtime.refreshable:
                await self._runtime.write_back()

    async def verify(self) -> None:
        """Verify through the provider, recording a refusal as a send would."""
        try:
            await self._channel.verify()
        except AuthenticationError as exc:
            await self._runtime.credentials_refused(exc)
            raise
        finally:
            if self._runtime.refreshable:
                await self._runtime.write_back()

    async def aclose(self) -> None:
        """Nothing: the directory closes the provider's channel when the entry goes."""

    def __repr__(self) -> str:
        return f"<directory entry {self._runtime.record.id} channel={self._channel!r}>"


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Guard(Closing):
    """An entry's pipeline that refuses at once while the entry needs reconnecting or is paused.

    It has ``credential_id`` (the entry's throttle budget key) and passes ``idempotent`` through.
    """

    def __init__(self, pipeline: Channel, runtime: Runtime) -> None:
        self._pipeline = pipeline
        self._runtime = runtime
        self.name = pipeline.name
        #: The throttle budget this entry's sends count against (one per credential).
        self.credential_id = runtime.key
        #: Whether the provider recognises a repeated send of the same message.
        self.idempotent = bool(getattr(pipeline, "idempotent", False)) or runtime.observed.idempotent

    @property
    def scope(self) -> CredentialScope:
        """The entry's scope."""
        return self._pipeline.scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        self._pipeline.scope = value

    @property
    def limits(self) -> Limits:
        """The entry's limits."""
        return self._pipeline.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._pipeline.limits = value

    @property
    def entry_id(self) -> str:
        """The directory entry this channel sends through."""
        return self._runtime.record.id

    async def send(self, message: Message) -> SendResult:
        """Send through the entry's pipeline, unless the entry is known to be unusable now.

        Raises:
            AuthenticationError: The entry needs reconnecting (nothing was sent; the message says who).
            QuotaExceededError: The entry is paused until its quota resets (``resets_at``).
        """
        runtime = self._runtime
        record = runtime.record
        if record.state == NEEDS_RECONNECT:
            raise AuthenticationError(
                f"Not sent: the directory entry {record.id} ({record.url}) needs reconnecting since "
                f"{_when(record.since)}: {record.reason}",
                channel=self.name,
            )
        if record.state == PAUSED and record.paused_until is not None:
            now = runtime.clock.now()
            if record.paused_until > now:
                raise QuotaExceededError(
                    f"Not sent: the directory entry {record.id} ({record.url}) is paused until "
                    f"{_when(record.paused_until)}: {record.reason}",
                    channel=self.name,
                    resets_at=record.paused_until,
                    retry_after=record.paused_until - now,
                )
            await runtime.pause_over()
        runtime.in_flight += 1
        try:
            return await self._pipeline.send(message)
        finally:
            runtime.in_flight -= 1
            if runtime.retired and not runtime.in_flight:
                await runtime.close()

    async def verify(self) -> None:
        """Verify the entry's channel (and its throttle store)."""
        await self._pipeline.verify()

    async def aclose(self) -> None:
        """Nothing: the directory owns the entry's channel."""

    def __repr__(self) -> str:
        return f"<directory channel entry={self._runtime.record.id} key={self.credential_id!r}>"


class _Unusable(TransientError):
    """An entry refused its credentials: for the failover, a reason to try the next entry."""

    def __init__(self, original: AuthenticationError) -> None:
        super().__init__(str(original), channel=original.channel)
        self.original = original


class _Member(Closing):
    """A Guard as a FailoverChannel member: its AuthenticationError lets the failover move on."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self.name = guard.name
        self.scope = guard.scope
        self.limits = guard.limits

    async def send(self, message: Message) -> SendResult:
        try:
            return await self._guard.send(message)
        except AuthenticationError as exc:
            raise _Unusable(exc) from None

    async def verify(self) -> None:
        await self._guard.verify()


class Failover(Closing):
    """Several fitting entries in routing order: the next is tried after a transient error, a spent
    quota, or refused credentials (nothing was sent), as :class:`~sendchannel.FailoverChannel` does."""

    def __init__(self, guards: list[Guard], clock: Any) -> None:
        self._guards = guards
        self._failover = FailoverChannel([_Member(guard) for guard in guards], clock=clock)
        self.name = self._failover.name
        #: The first entry's budget key.
        self.credential_id = guards[0].credential_id
        #: True when every entry's provider recognises a repeated send.
        self.idempotent = all(guard.idempotent for guard in guards)

    @property
    def scope(self) -> CredentialScope:
        """The union of the entries' scopes."""
        return self._failover.scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        self._failover.scope = value

    @property
    def limits(self) -> Limits:
        """The most permissive per-message bounds of the entries."""
        return self._failover.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._failover.limits = value

    async def send(self, message: Message) -> SendResult:
        """Send through the first entry that takes the message."""
        try:
            return await self._failover.send(message)
        except _Unusable as exc:
            raise exc.original from None

    async def verify(self) -> None:
        """Verify every entry."""
        for guard in self._guards:
            await guard.verify()

    async def aclose(self) -> None:
        """Nothing: the directory owns the entries' channels."""

    def __repr__(self) -> str:
        return f"<directory failover {[guard.entry_id for guard in self._guards]}>"
