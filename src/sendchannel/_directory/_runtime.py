"""An entry's live side in one process: its channel, built once and reused, and the layers around it."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import attrs

from sendchannel._channel import Channel
from sendchannel._clock import Clock
from sendchannel._directory import _overrides
from sendchannel._directory._entry import NEEDS_RECONNECT, OK, PAUSED, Record
from sendchannel._directory._layers import Guard, Observed
from sendchannel._retry import Retrying
from sendchannel._throttle import Throttler
from sendchannel.errors import AuthenticationError, QuotaExceededError, SendError

if TYPE_CHECKING:
    from sendchannel._directory._directory import ChannelDirectory

__all__ = ["Runtime"]

logger = logging.getLogger("sendchannel.directory")


class Runtime:
    """One entry's channel in this process, with its throttlers and pipelines (built on first use)."""

    def __init__(
        self,
        directory: ChannelDirectory,
        record: Record,
        channel: Channel,
        url: str,
        overrides: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.record = record
        self.channel = channel
        self._url = url
        self._overrides = overrides
        self._mark = _overrides.fingerprint(overrides)
        #: Whether an override can change as it is used (refreshed OAuth tokens), so must be written back.
        self.refreshable = self._mark is not None
        self.key = record.identity
        self.clock: Clock = directory.clock
        self.observed = Observed(channel, self)
        self._guards: dict[tuple[float, bool], Guard] = {}
        self.in_flight = 0
        #: Replaced (credentials rewritten by another process) or disconnected: close once idle.
        self.retired = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Runtime entry={self.record.id} key={self.key!r}>"

    def guard(self, max_wait: float, retry: bool) -> Guard:
        """The entry's pipeline for this ``max_wait`` and retry choice, built once."""
        guard = self._guards.get((max_wait, retry))
        if guard is None:
            directory = self.directory
            throttler = Throttler(
                self.observed,
                store=directory.throttle_store,
                key=self.key,
                max_wait=max_wait,
                clock=directory.clock,
            )
            pipeline: Channel = throttler
            if retry and directory.retry is not None:
                pipeline = Retrying(throttler, directory.retry, clock=directory.clock)
            guard = self._guards[(max_wait, retry)] = Guard(pipeline, self)
        return guard

    # -- health ---------------------------------------------------------------------------------------------

    async def credentials_refused(self, error: AuthenticationError) -> None:
        """The provider refused the credentials: the entry needs reconnecting, for every process."""
        text = str(error).rstrip()
        reason = f"{text}{'' if text.endswith('.') else '.'} {self.record.owner} must reconnect it."
        await self.directory._change_state(self, NEEDS_RECONNECT, reason, None)

    async def quota_spent(self, error: QuotaExceededError) -> None:
        """The provider said the quota is spent until ``resets_at``: pause the entry until then."""
        await self.directory._change_state(self, PAUSED, str(error), error.resets_at)

    async def pause_over(self) -> None:
        """A paused entry's reset time has passed: it is ok again."""
        await self.directory._change_state(self, OK, None, None)

    # -- refreshed credentials ------------------------------------------------------------------------------

    async def write_back(self) -> None:
        """Store the overrides again, encrypted, if the provider's client refreshed them in place."""
        if _overrides.fingerprint(self._overrides) == self._mark:
            return
        try:
            encoded = _overrides.encode(self._overrides)
            # Read after encoding: serializing a token cache is what marks it unchanged.
            self._mark = _overrides.fingerprint(self._overrides)
            plain = json.dumps({"url": self._url, "overrides": encoded}).encode()
            blob = self.directory.secrets.encrypt(plain)
            version = await self.directory.store.update_secret(
                self.record.id, blob, expected_version=self.record.secret_version
            )
        except (SendError, ValueError) as exc:
            logger.warning(
                "directory: could not store refreshed credentials of entry %s: %s", self.record.id, exc
            )
            return
        if version is not None:
            self.record = attrs.evolve(self.record, secret_version=version, secret=blob)
            logger.info("directory: stored refreshed credentials of entry %s", self.record.id)

    async def close(self) -> None:
        """Close the provider's channel (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.channel.aclose()
        except Exception as exc:  # noqa: BLE001 - closing must not fail the caller
            logger.warning("directory: closing the channel of entry %s failed: %s", self.record.id, exc)
