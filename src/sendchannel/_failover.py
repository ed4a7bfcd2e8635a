"""FailoverChannel: send through the first channel that can take the message, moving on only when safe."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sendchannel._channel import Channel, Closing, check_message, is_idempotent
from sendchannel._clock import Clock, SystemClock
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._refusals import split_reply
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, union_of
from sendchannel.errors import (
    ConfigurationError,
    DeliveryUnknownError,
    InvalidMessageError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)

__all__ = ["FailoverChannel"]

logger = logging.getLogger("sendchannel")


def _most(values: list[int | None]) -> int | None:
    """The largest bound, or None (no bound) when any of them is unbounded."""
    if not values or any(value is None for value in values):
        return None
    return max(value for value in values if value is not None)


def _temporary(reply: str) -> bool:
    """Whether a per-recipient refusal was temporary (a 4xx reply), so another channel may try it."""
    code, _ = split_reply(reply)
    return code is not None and 400 <= code < 500


def _only(message: Message, owed: Sequence[str]) -> Message:
    """``message`` addressed to the recipients in ``owed`` only (same Message-ID, same content)."""
    wanted = {address.lower() for address in owed}
    fields = {}
    for field in ("to", "cc", "bcc"):
        formatted = getattr(message, field)
        parsed = message.parsed(field)
        fields[field] = tuple(
            text for text, address in zip(formatted, parsed, strict=True)
            if address.addr_spec.lower() in wanted
        )
    return message.evolve(**fields)


def _reason(error: SendError, recipient: str, channel: str) -> str:
    replies = {address.lower(): reply for address, reply in error.rejected.items()}
    reply = replies.get(recipient.lower()) or error.reply or str(error)
    return f"{channel}: {reply}"


class _Progress:
    """What one send through the failover has achieved so far.

    Recipients are kept in the form the message gives them, whatever case a channel reports them in.
    """

    def __init__(self, message: Message) -> None:
        self.message = message
        self.owed: list[str] = list(message.recipients)
        self.accepted: list[str] = []
        self.rejected: dict[str, str] = {}
        self.results: list[SendResult] = []
        self.attempts = 0
        self._canonical = {address.lower(): address for address in message.recipients}

    def _address(self, address: str) -> str:
        return self._canonical.get(address.lower(), address)

    def take(self, result: SendResult) -> None:
        """Record a send that succeeded for some recipients; keep owing those refused for now."""
        self.results.append(result)
        self.attempts += max(1, result.attempts)
        for address in result.accepted:
            canonical = self._address(address)
            self.accepted.append(canonical)
            self.rejected.pop(canonical, None)
        temporary = set()
        for address, reply in result.rejected.items():
            canonical = self._address(address)
            self.rejected[canonical] = f"{result.channel}: {reply}" if result.channel else reply
            if _temporary(reply):
                temporary.add(canonical)
        # Only recipients refused with a temporary reply are owed still. One the channel reported
        # neither way is not sent again either: it may have received the message.
        self.owed = [address for address in self.owed if address in temporary]

    def note(self, error: SendError, channel: str) -> None:
        """Record a failed attempt, and why each recipient still owed did not get the message there."""
        self.attempts += max(1, error.attempts)
        for address in self.owed:
            self.rejected[address] = _reason(error, address, channel)

    def result(self) -> SendResult:
        names = list(dict.fromkeys(result.channel for result in self.results))
        ids = [result.provider_id for result in self.results if result.provider_id]
        return SendResult(
            message_id=self.message.message_id,
            provider_id=",".join(ids) if ids else None,
            accepted=tuple(self.accepted),
            rejected=self.rejected,
            channel="+".join(names),
            attempts=self.attempts,
        )


class FailoverChannel(Closing):
    """A Channel that sends through the first of several channels that can take the message.

    Channels are tried in order, among those whose scope allows the sender and whose per-message
    limits fit the message. The next one is tried after a :class:`~sendchannel.errors.TransientError`
    (including :class:`~sendchannel.errors.ThrottledError`) or a
    :class:`~sendchannel.errors.QuotaExceededError`, never after a permanent error (it would fail the
    same way anywhere, or the message was at fault) and never after a
    :class:`~sendchannel.errors.DeliveryUnknownError` (the message may have gone out).

    A channel that says its quota is spent is skipped until its ``resets_at`` (or for its ``retry_after``,
    or for ``quota_pause`` seconds when it said neither); one that throttled with a ``retry_after`` is
    skipped for that long.

    No recipient gets the message twice. When a channel accepts some recipients and refuses others, the
    next channel gets a copy (same Message-ID and content) addressed only to the recipients refused with
    a temporary (4xx) reply; permanent refusals are not tried elsewhere. Once any recipient has accepted
    the message, the send *succeeds*: later failures for the others, transient or not, are reported in
    ``SendResult.rejected`` rather than raised, because an error would invite a retry of the whole
    message, and the accepted recipients would get it twice. The one exception is a
    DeliveryUnknownError, which is raised, its text naming the recipients that had accepted.

    The scope is the union of the channels' scopes. The limits have no rates (put a
    :class:`~sendchannel.Throttler` around each channel: each has its own budget), and the per-message
    bounds of the most permissive channel.

    Args:
        channels: The channels to try, in order of preference.
        clock: Where the time of quota resets is read (the system clock by default).
        quota_pause: Seconds to skip a channel that said its quota is spent without saying until when.

    Raises:
        ConfigurationError: When no channel is given.

    Example::

        office = Office365Channel("alice@contoso.com", password="...")
        sparkpost = SparkpostChannel("KEY", domains=["contoso.com"])
        channel = FailoverChannel([office, sparkpost])
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        clock: Clock | None = None,
        quota_pause: float = 900.0,
    ) -> None:
        members = tuple(channels)
        if not members:
            raise ConfigurationError(
                "FailoverChannel needs at least one channel; pass them in order of preference, "
                "e.g. FailoverChannel([office365, sparkpost])"
            )
        if not quota_pause >= 0:
            raise ConfigurationError(f"quota_pause must be 0 seconds or more, got {quota_pause!r}")
        #: The channels, in order of preference.
        self.channels: tuple[Channel, ...] = members
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.quota_pause = float(quota_pause)
        self.name = f"failover({','.join(channel.name for channel in members)})"
        # channel index -> (skipped until this time, the kind of error that paused it)
        self._paused: dict[int, tuple[float, type[SendError]]] = {}
        self._union_of: tuple[CredentialScope, ...] = ()
        self._scope: CredentialScope | None = None

    @property
    def idempotent(self) -> bool:
        """True when every channel is idempotent: a repeat after an unknown outcome then reaches a provider
        that delivers the message once, whichever channel it goes through."""
        return all(is_idempotent(channel) for channel in self.channels)

    @property
    def scope(self) -> CredentialScope:
        """The union of the channels' scopes: a sender any of them may send as."""
        scopes = tuple(channel.scope for channel in self.channels)
        if self._scope is None or scopes != self._union_of:
            self._scope = union_of(scopes)
            self._union_of = scopes
        return self._scope

    @scope.setter
    def scope(self, value: CredentialScope) -> None:
        raise AttributeError(
            "a FailoverChannel's scope is the union of its channels' scopes; change theirs instead"
        )

    @property
    def limits(self) -> Limits:
        """No rates (each channel keeps its own), and the most permissive per-message bounds."""
        limits = [channel.limits for channel in self.channels]
        return Limits(
            max_recipients_per_message=_most([lim.max_recipients_per_message for lim in limits]),
            max_message_bytes=_most([lim.max_message_bytes for lim in limits]),
        )

    @limits.setter
    def limits(self, value: Limits) -> None:
        raise AttributeError(
            "a FailoverChannel's limits come from its channels; set the limits of each channel instead"
        )

    def paused_until(self, channel: Channel) -> float | None:
        """Until when ``channel`` is skipped (a spent quota or a throttle), or None when it is not."""
        pause = self._paused.get(self.channels.index(channel))
        return pause[0] if pause is not None and pause[0] > self.clock.now() else None

    def _pause(self, index: int, error: SendError) -> None:
        now = self.clock.now()
        if isinstance(error, QuotaExceededError):
            if error.resets_at is not None:
                until = error.resets_at
            elif error.retry_after is not None:
                until = now + error.retry_after
            else:
                until = now + self.quota_pause
        elif isinstance(error, ThrottledError) and error.retry_after:
            until = now + error.retry_after
        else:
            return
        current = self._paused.get(index)
        if until > now and (current is None or until >= current[0]):
            self._paused[index] = (until, type(error))

    def _skipped(self, index: int, channel: Channel) -> SendError | None:
        """The error standing for a channel that is paused, without asking it, or None when it is not."""
        pause = self._paused.get(index)
        now = self.clock.now()
        if pause is None or pause[0] <= now:
            return None
        until, kind = pause
        if issubclass(kind, QuotaExceededError):
            return QuotaExceededError(
                f"{channel.name} said its quota is spent; it is skipped until it resets "
                f"(in {until - now:.0f} s).",
                channel=channel.name,
                resets_at=until,
                retry_after=until - now,
            )
        return ThrottledError(
            f"{channel.name} asked to slow down; it is skipped for another {until - now:.0f} s.",
            channel=channel.name,
            retry_after=until - now,
        )

    async def send(self, message: Message) -> SendResult:
        """Send ``message`` through the first channel that takes it.

        Returns:
            The result: ``accepted`` gathers every recipient that accepted, through whichever channel;
            ``channel`` names the channels that did (``"office365+sparkpost"`` when the message was
            split); ``attempts`` counts every attempt on every channel.

        Raises:
            SenderNotAllowedError: No channel's scope allows the sender (nothing was sent).
            InvalidMessageError: The message breaks the per-message limits of every channel that
                allows its sender (nothing was sent).
            QuotaExceededError: Every channel is out of quota; ``resets_at`` is the earliest reset.
            TransientError: Every channel failed or was skipped and at least one failed transiently
                (the last such error; retrying later may succeed).
            PermanentError: A channel refused for good; no other channel was tried after it.
            DeliveryUnknownError: A channel lost the message's outcome; no other channel was tried.
        """
        if not self.scope.allows(message.sender):
            raise SenderNotAllowedError(self.scope.explain(message.sender), channel=self.name)
        progress = _Progress(message)
        transient: SendError | None = None
        quota: list[QuotaExceededError] = []
        too_big: InvalidMessageError | None = None
        for index, channel in enumerate(self.channels):
            if not channel.scope.allows(message.sender):
                continue
            owed = message if len(progress.owed) == len(message.recipients) else _only(message, progress.owed)
            try:
                check_message(channel, owed)
            except InvalidMessageError as exc:
                too_big = too_big or exc
                continue
            skipped = self._skipped(index, channel)
            if isinstance(skipped, QuotaExceededError):
                quota.append(skipped)
                continue
            if skipped is not None:
                transient = transient or skipped
                continue
            try:
                result = await channel.send(owed)
            except DeliveryUnknownError as exc:
                progress.note(exc, channel.name)
                if progress.accepted:
                    raise self._unknown_after_partial(exc, progress) from exc
                raise
            except QuotaExceededError as exc:
                self._pause(index, exc)
                progress.note(exc, channel.name)
                quota.append(exc)
                self._log_moving_on(channel, message, exc)
                continue
            except SendError as exc:
                progress.note(exc, channel.name)
                if not (isinstance(exc, TransientError) or exc.transient):
                    if progress.accepted:
                        return progress.result()
                    raise
                self._pause(index, exc)
                transient = exc
                self._log_moving_on(channel, message, exc)
                continue
            progress.take(result)
            if not progress.owed:
                return progress.result()
        if progress.accepted:
            return progress.result()
        if transient is not None:
            transient.attempts = max(1, progress.attempts)
            raise transient
        if quota:
            earliest = min(quota, key=lambda error: error.resets_at or float("inf"))
            earliest.attempts = max(1, progress.attempts)
            raise earliest
        if too_big is not None:
            raise too_big
        raise SenderNotAllowedError(  # pragma: no cover - the union allowed the sender, so some member does
            self.scope.explain(message.sender), channel=self.name
        )

    def _unknown_after_partial(
        self, error: DeliveryUnknownError, progress: _Progress
    ) -> DeliveryUnknownError:
        accepted = ", ".join(progress.accepted)
        unknown = DeliveryUnknownError(
            f"{error} Before that, {accepted} had accepted the message through "
            f"{'+'.join(dict.fromkeys(r.channel for r in progress.results))}; do not send it to them again.",
            code=error.code,
            enhanced_code=error.enhanced_code,
            retry_after=error.retry_after,
            channel=error.channel,
            rejected=error.rejected,
            reply=error.reply,
        )
        unknown.attempts = progress.attempts
        return unknown

    def _log_moving_on(self, channel: Channel, message: Message, error: SendError) -> None:
        logger.warning(
            "failover: channel=%s message_id=%s error=%s: %s; trying the next channel",
            channel.name,
            message.message_id,
            type(error).__name__,
            error,
        )

    async def verify(self) -> None:
        """Verify every channel in turn (a broken backup is worth knowing about before it is needed).

        Raises:
            SendError: The first channel's failure to verify; its ``channel`` names it.
        """
        for channel in self.channels:
            await channel.verify()

    async def aclose(self) -> None:
        """Close every channel, even when one fails to close (the first failure is raised at the end)."""
        failure: BaseException | None = None
        for channel in self.channels:
            try:
                await channel.aclose()
            except Exception as exc:  # noqa: BLE001 - close the others, then raise the first
                failure = failure or exc
        if failure is not None:
            raise failure

    def __repr__(self) -> str:
        return f"<FailoverChannel {self.name!r} scope={self.scope}>"
