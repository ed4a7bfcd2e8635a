"""send_all: send a batch concurrently and account for every message, also when cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Literal

import attrs

from sendchannel._channel import Channel
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel.errors import DeliveryUnknownError, SendError

__all__ = ["BulkReport", "Outcome", "send_all"]

logger = logging.getLogger("sendchannel")

Status = Literal["sent", "failed", "unknown", "skipped"]


@attrs.frozen
class Outcome:
    """What became of one message of a batch.

    Args:
        message: The message, as given.
        status: ``"sent"`` (``result`` is set), ``"failed"`` (``error`` says why; nothing went out, or
            the provider refused it), ``"unknown"`` (it may or may not have gone out: do not simply send
            it again), or ``"skipped"`` (the batch was cancelled before it was started).
        result: The channel's result when it was sent.
        error: The exception when it failed or its outcome is unknown.
    """

    message: Message
    status: Status
    result: SendResult | None = None
    error: BaseException | None = None


def _outcomes(value: Iterable[Outcome]) -> tuple[Outcome, ...]:
    return tuple(value)


@attrs.frozen
class BulkReport:
    """Every message of a batch with its outcome, in input order.

    Args:
        outcomes: One outcome per input message, in input order.
    """

    outcomes: tuple[Outcome, ...] = attrs.field(converter=_outcomes)

    def _with(self, status: Status) -> tuple[Outcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.status == status)

    @property
    def sent(self) -> tuple[Outcome, ...]:
        """The outcomes of the messages sent."""
        return self._with("sent")

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """The outcomes of the messages that failed."""
        return self._with("failed")

    @property
    def unknown(self) -> tuple[Outcome, ...]:
        """The outcomes of the messages that may or may not have gone out."""
        return self._with("unknown")

    @property
    def skipped(self) -> tuple[Outcome, ...]:
        """The outcomes of the messages never started.

        ``send_all`` reports skipped messages through ``progress`` only, since a cancelled call returns no
        report; this is for reports built from those outcomes.
        """
        return self._with("skipped")

    def __len__(self) -> int:
        return len(self.outcomes)

    def __str__(self) -> str:
        counts = ", ".join(
            f"{len(self._with(status))} {status}" for status in ("sent", "failed", "unknown", "skipped")
        )
        return f"{len(self.outcomes)} messages: {counts}"


def _check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1, got {concurrency!r}")


async def send_all(
    channel: Channel,
    messages: Iterable[Message],
    *,
    concurrency: int = 8,
    progress: Callable[[Outcome], object] | None = None,
) -> BulkReport:
    """Send every message through ``channel``, ``concurrency`` at a time, and say what became of each.

    Every message ends with exactly one outcome and none is sent twice: a
    :class:`~sendchannel.errors.SendError` gives ``"failed"`` (``"unknown"`` for a
    :class:`~sendchannel.errors.DeliveryUnknownError`), and any other exception from the channel gives
    ``"failed"`` too, without stopping the batch. Put retrying and throttling in ``channel``
    (:func:`~sendchannel.pipeline`); ``send_all`` sends each message once.

    When ``send_all`` is cancelled it starts no new send, lets the sends in flight settle, reports each
    message never started through ``progress`` as ``"skipped"``, then re-raises the cancellation. So
    through ``progress`` every message gets exactly one outcome in every case. (Cancelled a second time
    while it waits for the sends in flight, it cancels them; their outcomes are ``"unknown"``.)

    Args:
        channel: Where to send.
        messages: The messages, in the order their outcomes are reported (read once, up front).
        concurrency: How many sends may be in flight at once.
        progress: Called with each message's :class:`Outcome` as it settles (a progress bar, a log);
            an exception it raises is logged and does not stop the batch.

    Returns:
        The outcomes, in input order.

    Raises:
        ValueError: When ``concurrency`` is not a whole number of at least 1 (nothing is sent).
        asyncio.CancelledError: When cancelled, after the sends in flight settled.
    """
    _check_concurrency(concurrency)
    items = list(messages)
    for index, message in enumerate(items):
        if not isinstance(message, Message):
            raise TypeError(f"messages[{index}] is a {type(message).__name__}, not a sendchannel Message")
    outcomes: list[Outcome | None] = [None] * len(items)
    pending = iter(range(len(items)))
    stopping = False

    def settle(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        if progress is None:
            return
        try:
            progress(outcome)
        except Exception:
            logger.exception("send_all: the progress callback raised; the batch goes on")

    async def send_one(index: int) -> None:
        message = items[index]
        try:
            result = await channel.send(message)
        except DeliveryUnknownError as exc:
            settle(index, Outcome(message, "unknown", error=exc))
        except SendError as exc:
            settle(index, Outcome(message, "failed", error=exc))
        except asyncio.CancelledError as exc:
            # Only when send_all was cancelled twice: the send was interrupted, so it may have gone out.
            settle(index, Outcome(message, "unknown", error=exc))
            raise
        except Exception as exc:
            logger.exception(
                "send_all: %s raised %s for message_id=%s",
                channel.name,
                type(exc).__name__,
                message.message_id,
            )
            settle(index, Outcome(message, "failed", error=exc))
        else:
            settle(index, Outcome(message, "sent", result=result))

    async def worker() -> None:
        while not stopping:
            index = next(pending, None)
            if index is None:
                return
            await send_one(index)

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        if workers:
            # asyncio.wait, unlike gather, leaves the workers running when this task is cancelled.
            await asyncio.wait(workers)
    except asyncio.CancelledError:
        stopping = True
        await _drain(workers)
        for index in range(len(items)):
            if outcomes[index] is None:
                settle(index, Outcome(items[index], "skipped"))
        raise
    for task in workers:
        failure = task.exception()
        if failure is not None:  # pragma: no cover - send_one settles every exception it can catch
            raise failure
    return BulkReport(outcome for outcome in outcomes if outcome is not None)


async def _drain(workers: list[asyncio.Task[None]]) -> None:
    """Wait for the sends in flight; cancelled again meanwhile, cancel them and wait for that instead."""
    try:
        await asyncio.wait(workers)
    except asyncio.CancelledError:
        for task in workers:
            task.cancel()
        while not all(task.done() for task in workers):
            try:
                await asyncio.wait(workers)
            except asyncio.CancelledError:
                continue
