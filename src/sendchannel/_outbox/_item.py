"""OutboxItem: where one queued message stands."""

from __future__ import annotations

import datetime
from typing import Literal

import attrs

from sendchannel._result import SendResult

__all__ = ["FINISHED", "STATUSES", "OutboxItem", "Status", "from_timestamp"]

Status = Literal["queued", "sending", "sent", "failed", "unknown", "cancelled"]

#: Every status an item can have, in the order an item goes through them.
STATUSES: tuple[Status, ...] = ("queued", "sending", "sent", "failed", "unknown", "cancelled")

#: The statuses an item never leaves (``purge`` removes items in them).
FINISHED: tuple[Status, ...] = ("sent", "failed", "unknown", "cancelled")


@attrs.frozen
class OutboxItem:
    """One message in an :class:`~sendchannel.Outbox`, as the database last recorded it.

    Args:
        id: The item's number in the outbox (assigned by ``put``).
        message_id: The message's Message-ID.
        owner: Whose message it is (routes it through the directory), or None.
        status: ``"queued"`` (waiting, or claimed by a worker that has not handed it over yet),
            ``"sending"`` (handed to the provider; the outcome is not recorded yet), ``"sent"``,
            ``"failed"`` (a permanent error, or the retry policy's attempts ran out), ``"unknown"`` (the
            provider may or may not have it: never sent again; see the Outbox docs) or ``"cancelled"``.
        attempts: How many times it was handed to a provider.
        send_at: When it was asked to go (UTC).
        next_attempt_at: The earliest time a worker takes it next (UTC); after a transient failure or a
            spent budget, later than ``send_at``.
        error: The last error's class name and message (``"ThrottledError: 421 ..."``), or None.
        result: The provider's :class:`~sendchannel.SendResult` once sent, else None.
    """

    id: int
    message_id: str
    owner: str | None
    status: Status
    attempts: int
    send_at: datetime.datetime
    next_attempt_at: datetime.datetime
    error: str | None = None
    result: SendResult | None = None

    @property
    def finished(self) -> bool:
        """Whether the item has its final outcome (sent, failed, unknown or cancelled)."""
        return self.status in FINISHED


def from_timestamp(seconds: float) -> datetime.datetime:
    """A UTC datetime for seconds since the epoch."""
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
