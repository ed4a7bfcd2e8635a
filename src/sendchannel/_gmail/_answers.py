"""What Google's error answers mean: one table of rules (:data:`RULES`), read by :func:`classify`.

Each rule names the HTTP status, Google's reason strings (``errors[].reason``, ``details[].reason``,
``status``) or words of its message; the first rule that fits decides. The table, as generated from the
rules:

{table}
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from googleapiclient.errors import HttpError

from sendchannel._answers import Rule, first, table, when
from sendchannel._http import one_line, parse_retry_after
from sendchannel.errors import (
    AuthenticationError,
    DeliveryUnknownError,
    MessageRejectedError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)

__all__ = ["RULES", "GoogleAnswer", "classify", "read_answer"]

_PACIFIC = "America/Los_Angeles"


@attrs.frozen
class GoogleAnswer:
    """What an error answer from Google said."""

    status: int
    reasons: tuple[str, ...]
    # Google's own words, unscrubbed: they can echo a token from the request, so they stay out of the repr
    # and reach an error message only through the channel's scrubber.
    text: str = attrs.field(repr=False)
    retry_after: float | None


_RETRY_AFTER_TEXT = re.compile(r"retry after (\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)", re.I)


def _seconds_until(moment: datetime.datetime, now: float) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - now)


def _retry_after_in_text(text: str, now: float) -> float | None:
    # Gmail's 429 for the sending limit says "User-rate limit exceeded. Retry after 2024-05-14T20:03:25.613Z".
    match = _RETRY_AFTER_TEXT.search(text)
    if match is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(match[1])
    except ValueError:
        return None
    return _seconds_until(moment, now)


def read_answer(exc: HttpError, now: float) -> GoogleAnswer:
    status = int(exc.resp.status)
    text = ""
    reasons: list[str] = []
    try:
        data = json.loads(exc.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # not JSON, or nested too deep to read
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        text = str(error.get("message") or "")
        for key in ("errors", "details"):
            items = error.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and item.get("reason"):
                    reasons.append(str(item["reason"]))
        if error.get("status"):
            reasons.append(str(error["status"]))
    elif isinstance(error, str):
        # The OAuth style: {"error": "invalid_token", "error_description": "..."}.
        reasons.append(error)
        text = str(data.get("error_description") or "") if isinstance(data, dict) else ""
    if not text:
        text = str(getattr(exc, "reason", "") or exc.resp.reason or "")
    retry_after = parse_retry_after(exc.resp.get("retry-after"), now)
    if retry_after is None:
        retry_after = _retry_after_in_text(text, now)
    reasons = [one_line(reason) for reason in reasons]
    return GoogleAnswer(status, tuple(dict.fromkeys(reasons)), one_line(text)[:500], retry_after)



def _next_pacific_midnight(now: float) -> float | None:
    """When Google's daily API quotas reset: the next midnight, Pacific time."""
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python builds without zoneinfo
        return None
    try:
        zone = ZoneInfo(_PACIFIC)
    except ZoneInfoNotFoundError:  # pragma: no cover - a system without a time-zone database
        return None
    local = datetime.datetime.fromtimestamp(now, zone)
    midnight = datetime.datetime.combine(local.date() + datetime.timedelta(days=1), datetime.time(), zone)
    return midnight.timestamp()


#: Which scopes each operation needs, for the remedy of an "insufficient scopes" answer.
_SCOPES_NEEDED = {
    "send": "the gmail.send scope",
    "profile": "the gmail.readonly (or gmail.metadata) scope",
    "send-as": "the gmail.settings.basic (or gmail.readonly) scope",
}



def _google(
    error: type[SendError],
    happened: str,
    remedy: str,
    *,
    statuses: Iterable[int] = (),
    reasons: Iterable[str] | None = None,
    text: str | None = None,
    any_5xx: bool = False,
) -> Rule:
    """A row of the table: what happened, Google's words (``{said}``), then the remedy."""
    code = "5xx" if any_5xx else ",".join(str(status) for status in statuses) or None
    return when(
        error,
        f"{happened} ({{said}}). {remedy}",
        code=code,
        reasons=reasons,
        text=None if text is None else re.escape(text),
    )


_DAILY_SENDING_LIMIT = (
    "Gmail's daily sending limit for {account} is used up",
    "Gmail counts the last 24 hours, so sending works again as older messages age out "
    "(resets_at says when, if Google said); spread the mail over more accounts or send less.",
)

#: Google's answers, most specific first; the first rule that matches decides.
RULES: tuple[Rule, ...] = (
    _google(QuotaExceededError, *_DAILY_SENDING_LIMIT, text="daily user sending quota exceeded"),
    _google(QuotaExceededError, *_DAILY_SENDING_LIMIT, text="daily user sending limit exceeded"),
    # The sending limit as the API reports it: 429 "User-rate limit exceeded. Retry after ... (Mail sending)".
    _google(QuotaExceededError, *_DAILY_SENDING_LIMIT, statuses={429, 403}, text="mail sending"),
    _google(
        QuotaExceededError,
        "The Google Cloud project's daily Gmail API quota is spent (sending for {account})",
        "It resets at midnight Pacific time; ask Google for a higher quota in the Cloud console.",
        reasons={"dailyLimitExceeded"},
    ),
    _google(
        ThrottledError,
        "Gmail asked the sender of {account} to slow down",
        "Wait retry_after seconds (when given) and send more slowly.",
        reasons={"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"},
    ),
    _google(
        ThrottledError,
        "Gmail answered 'too many requests' for {account}",
        "Wait retry_after seconds (when given) and send more slowly.",
        statuses={429},
    ),
    _google(
        AuthenticationError,
        "The Gmail grant for {account} does not allow this ({needed} is missing)",
        "The user must connect their Gmail account again and grant {needed}.",
        reasons={"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"},
    ),
    _google(
        AuthenticationError,
        "The Google Workspace domain of {account} does not allow this application to use Gmail",
        "Ask the domain's administrator to allow the application's OAuth client.",
        reasons={"domainPolicy"},
    ),
    _google(
        SenderNotAllowedError,
        "Gmail refused to act for {account}: the credentials belong to another account",
        "Use credentials granted by {account} itself (or, for a service account, subject={account}).",
        statuses={403},
        text="delegation denied",
    ),
    _google(
        AuthenticationError,
        "Gmail does not accept the access token for {account}, even after refreshing it",
        "The grant may have been revoked or lack the gmail.send scope: the user must connect their "
        "Gmail account again.",
        statuses={401},
    ),
    _google(
        AuthenticationError,
        "Gmail cannot be used for {account} with these credentials",
        "The account may have no Gmail service, or a service account needs domain-wide delegation "
        "and subject={account}.",
        statuses={400},
        reasons={"failedPrecondition", "FAILED_PRECONDITION"},
    ),
    _google(
        MessageRejectedError,
        "Gmail refused the message from {account}",
        "Fix what Google names (addresses, headers, size); sending it unchanged will fail the same way.",
        statuses={400, 413},
    ),
    _google(
        AuthenticationError,
        "Gmail forbade the request for {account}",
        "Check that the grant is for this account and that Gmail is enabled for it.",
        statuses={403},
    ),
    _google(
        TransientError,
        "Gmail timed out reading the request for {account}, so nothing was sent",
        "Sending again is safe.",
        statuses={408},
    ),
    _google(
        DeliveryUnknownError,
        "Google's front end gave up waiting for Gmail while sending for {account}, "
        "so the message may or may not have gone out",
        "Check the account's Sent folder before sending it again.",
        statuses={504},
    ),
    _google(
        TransientError,
        "Gmail failed for now while handling the request for {account}",
        "Try again later.",
        any_5xx=True,
    ),
    _google(
        MessageRejectedError,
        "Gmail refused the request for {account}",
        "Fix what Google names; sending it unchanged will fail the same way.",
    ),
)


__doc__ = (__doc__ or "").replace("{table}", table(RULES))


def classify(
    answer: GoogleAnswer, *, account: str, operation: str, now: float, scrub: Callable[[str], str]
) -> SendError:
    """The error for an error answer from Google, by the first rule of :data:`RULES` that fits."""
    rule = first(RULES, answer.status, answer.text, reasons=answer.reasons) or RULES[-1]
    error: type[SendError] = rule.error
    if error is DeliveryUnknownError and operation != "send":
        error = TransientError  # reading a profile or the aliases changes nothing: just try again
    reason = answer.reasons[0] if answer.reasons else None
    reply = scrub(answer.text)
    quoted = reply.rstrip(". ")
    said = f"{answer.status} {reason}: {quoted}" if reason else f"{answer.status}: {quoted}"
    needed = _SCOPES_NEEDED.get(operation, "the scope it needs")
    message = rule.explain.format(account=account, needed=needed, said=said)
    kwargs: dict[str, Any] = {
        "code": answer.status,
        "enhanced_code": reason,
        "retry_after": answer.retry_after,
        "reply": reply,
    }
    if error is QuotaExceededError:
        resets_at = None if answer.retry_after is None else now + answer.retry_after
        if resets_at is None and "dailyLimitExceeded" in answer.reasons:
            resets_at = _next_pacific_midnight(now)
        return QuotaExceededError(message, resets_at=resets_at, **kwargs)
    return error(message, **kwargs)
