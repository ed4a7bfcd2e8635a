"""The rule for a send whose every recipient was refused, shared by all channels.

When at least one recipient is accepted the send succeeds and ``SendResult.rejected`` lists the others.
When all are refused: if every refusal was temporary (4xx) the channel raises a TransientError (a
ThrottledError for "too many recipients" and 4.7.x replies), otherwise RecipientsRefusedError. A wait
named in a refusal ("450 4.2.1 Mailbox busy, try again in 2 minutes") becomes the error's
``retry_after``, wherever the reply came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from sendchannel.errors import RecipientsRefusedError, SendError, ThrottledError, TransientError

__all__ = ["all_refused_error", "longest_wait", "split_reply", "wait_named_in"]

_REPLY_RE = re.compile(r"\s*(?P<code>[2-5]\d\d)(?:[ -](?P<enhanced>[245]\.\d{1,3}\.\d{1,3})\b)?")


def split_reply(reply: str) -> tuple[int | None, str | None]:
    """The reply code and RFC 3463 enhanced code at the start of an SMTP-style reply, when present."""
    match = _REPLY_RE.match(reply)
    if match is None:
        return None, None
    return int(match["code"]), match["enhanced"]


_WAIT_RE = re.compile(
    r"(?:try again|retry|wait)\D{0,20}?(\d+)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def wait_named_in(text: str) -> float | None:
    """Seconds of a wait a reply's text asks for ("try again in 2 minutes": 120.0), or None."""
    match = _WAIT_RE.search(text)
    if match is None:
        return None
    seconds = float(match[1]) * _UNIT_SECONDS[match[2][0].lower()]
    return seconds if math.isfinite(seconds) else None  # 400 digits are not a wait


def longest_wait(texts: Iterable[str]) -> float | None:
    """The longest wait named in any of ``texts``, or None when none names one."""
    return max((w for w in map(wait_named_in, texts) if w is not None), default=None)


def _throttling(code: int | None, enhanced: str | None, reply: str) -> bool:
    return (enhanced or "").startswith("4.7.") or (
        code == 452 and "too many recipients" in reply.lower()
    ) or (enhanced or "") == "4.5.3"


def all_refused_error(
    rejected: Mapping[str, str], *, channel: str | None = None, server: str | None = None
) -> SendError:
    """The error for a send whose every recipient (the keys of ``rejected``) was refused.

    Its ``retry_after`` is the longest wait named in the refusals, if any names one.

    Args:
        rejected: Each refused recipient and the reply that refused it.
        channel: The channel's name, for the error's ``channel``.
        server: Who refused (``"smtp.example.com:587"``, ``"SparkPost"``), named in the message.
    """
    parsed = {rcpt: split_reply(reply) for rcpt, reply in rejected.items()}
    count = len(rejected)
    first_recipient, first_reply = next(iter(rejected.items()))
    code, enhanced = parsed[first_recipient]
    if server is None:
        subject = "The recipient was refused" if count == 1 else f"All {count} recipients were refused"
    elif count == 1:
        subject = f"{server} refused the recipient"
    else:
        subject = f"{server} refused all {count} recipients"
    if all(c is not None and 400 <= c < 500 for c, _ in parsed.values()):
        kind: type[TransientError] = TransientError
        if any(_throttling(c, e, rejected[r]) for r, (c, e) in parsed.items()):
            kind = ThrottledError
        return kind(
            f"{subject} for now ({first_recipient}: {first_reply}); "
            "the server may accept them later, so try again.",
            code=code,
            enhanced_code=enhanced,
            retry_after=longest_wait(rejected.values()),
            channel=channel,
            rejected=rejected,
            reply=first_reply,
        )
    return RecipientsRefusedError(
        f"{subject} ({first_recipient}: {first_reply}); check the addresses.",
        code=code,
        enhanced_code=enhanced,
        channel=channel,
        rejected=rejected,
        reply=first_reply,
    )
