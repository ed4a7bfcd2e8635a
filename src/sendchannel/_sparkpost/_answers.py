"""What SparkPost's answers mean: one table of rules (:data:`RULES`), read by :func:`answer_error`.

Each rule names the HTTP status, SparkPost's error codes or words of its message, and whether the answer
is to a transmission (``"send"``) or a read (``"read"``: listing the sending domains). The first rule that
fits decides; the table, as generated from the rules:

{table}

1902 and 5002 (recipients refused) are read by the channel, which attributes them to recipients.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from sendchannel import errors
from sendchannel._answers import Rule, first, table, when
from sendchannel._http import HttpAnswer

__all__ = ["RECIPIENT_CODES", "RULES", "answer_error", "describe", "errors_of"]

#: Codes that refuse the recipients rather than the message.
RECIPIENT_CODES = frozenset({"1902", "5002"})
#: 420 codes: SparkPost sending limits, by the word its message uses.
_LIMIT_CODES = {"2101": "hourly", "2102": "daily", "2103": "sandbox", "2105": "monthly"}
_LIMIT_WORD_RE = re.compile(r"\((hourly|daily|sandbox|monthly)\)", re.IGNORECASE)
#: SparkPost's API reference: "wait 1 to 5 seconds after receiving a 429 response".
DEFAULT_429_WAIT = 5.0

_NOTHING = "nothing in the transmission was sent"
_HOURLY = (
    "SparkPost's hourly sending limit for this account is spent ({shown}); " + _NOTHING + ". Try again "
    "after {resumes}, declare the plan's hourly rate with limits= so a Throttler keeps under it, or ask "
    "SparkPost for a higher limit."
)
_PERIODIC = (
    "SparkPost's {word} sending limit for this account is spent ({shown}); " + _NOTHING + ". It comes "
    "back with the next {period} (not before {resets}; a monthly limit follows the billing cycle and may "
    "come back later). Upgrade the plan or send through another channel until then."
)
_SANDBOX = (
    "SparkPost's sandbox allowance is spent ({shown}): the sandbox domain sends 5 messages for the lifetime "
    "of an account, and never more. Send from your own verified sending domain, without "
    "options={{'sandbox': True}}."
)
_REFUSED = "SparkPost refused the request ({shown}): "
_LATER = "; nothing was sent, try again later."


_REJECTED, _TRANSIENT = errors.MessageRejectedError, errors.TransientError


def _limit(error: type[errors.SendError], explain: str, code: str) -> tuple[Rule, Rule]:
    word = _LIMIT_CODES[code]
    return when(error, explain, reasons={code}), when(error, explain, code="420", text=rf"\({word}\)")


def _code(error: type[errors.SendError], code: str, meaning: str) -> Rule:
    return when(error, _REFUSED + meaning, reasons={code})


#: SparkPost's answers, most specific first.
RULES: tuple[Rule, ...] = (
    when(
        errors.PermanentError,
        "SparkPost refused the transmission ({shown}): its Idempotency-Key (the Message-ID {message_id}) "
        "was used in the last 24 hours for a different transmission, so it was not sent again. A changed "
        "message needs a new message_id (leave it out to have one generated).",
        code="409",
        reasons={"1600"},
    ),
    when(
        errors.TransientError,
        "SparkPost is still working on an earlier request with the same Idempotency-Key (the Message-ID "
        "{message_id}) ({shown}); nothing more was sent. Try again shortly: SparkPost then replays the "
        "first answer.",
        code="409",
        reasons={"1601"},
    ),
    *_limit(errors.ThrottledError, _HOURLY, "2101"),
    *_limit(errors.QuotaExceededError, _PERIODIC, "2102"),
    *_limit(errors.QuotaExceededError, _PERIODIC, "2105"),
    *_limit(errors.QuotaExceededError, _SANDBOX, "2103"),
    when(
        errors.QuotaExceededError,
        "SparkPost says a sending limit of this account is spent ({shown}); " + _NOTHING + ". Check the "
        "limits on the SparkPost dashboard.",
        code="420",
    ),
    when(
        errors.ThrottledError,
        "SparkPost asked to slow down ({shown}); nothing was sent. Wait {wait:g} seconds before the next "
        "request, and declare the account's limits with limits= so a Throttler spaces the sends.",
        code="429",
    ),
    when(
        errors.AuthenticationError,
        "SparkPost did not accept the API key ({shown}). It may be mistyped, deleted or made for the other "
        "region: US and EU accounts are separate (region='us' for app.sparkpost.com, region='eu' for "
        "app.eu.sparkpost.com).",
        code="401",
    ),
    when(
        errors.AuthenticationError,
        "SparkPost accepted the API key but not for {reading} ({shown}): the key lacks the 'Sending "
        "Domains: Read-only' permission. Add it under Account > API Keys in the SparkPost app; sending may "
        "still work without it.",
        code="403",
        situations={"read"},
    ),
    when(
        errors.AuthenticationError,
        "SparkPost accepted the API key but not for sending ({shown}): the key lacks the 'Transmissions: "
        "Read/Write' permission. Add it under Account > API Keys in the SparkPost app, or use a key that "
        "has it.",
        code="403",
    ),
    *(
        when(errors.AuthenticationError, explain, reasons={"1100"}, situations=situations)
        for explain, situations in (
            (
                "SparkPost accepted the API key but not for {reading} ({shown}): the key lacks the 'Sending "
                "Domains: Read-only' permission. Add it under Account > API Keys in the SparkPost app; "
                "sending may still work without it.",
                {"read"},
            ),
            (
                "SparkPost accepted the API key but not for sending ({shown}): the key lacks the "
                "'Transmissions: Read/Write' permission. Add it under Account > API Keys in the SparkPost "
                "app, or use a key that has it.",
                {"send"},
            ),
        )
    ),
    when(
        errors.SenderNotAllowedError,
        "SparkPost refused to send from {domain} ({shown}): the domain is restricted. Contact SparkPost "
        "support to have it authorised, or send from another verified domain.",
        reasons={"7000"},
        situations={"send"},
    ),
    when(
        errors.SenderNotAllowedError,
        "SparkPost refused to send as {sender} ({shown}): {domain} is not a configured and verified sending "
        "domain of this account. Add and verify {domain} under Sending Domains in the SparkPost app (a DKIM "
        "or CNAME record), or send from a domain that is verified.",
        reasons={"7001"},
        situations={"send"},
    ),
    when(
        errors.SenderNotAllowedError,
        "SparkPost refused the sending domain ({shown}).",
        reasons={"7000", "7001"},
    ),
    _code(_REJECTED, "1300", "SparkPost found data it does not accept in the transmission; the "
          "reply names the field."),
    _code(_REJECTED, "1305", "SparkPost could not read the transmission as UTF-8."),
    _code(_REJECTED, "1400", "SparkPost says a required field of the transmission is missing."),
    _code(_TRANSIENT, "1502", "SparkPost's servers are short of resources" + _LATER),
    _code(_TRANSIENT, "1900", "SparkPost's message generation is not available at the moment" + _LATER),
    _code(_REJECTED, "1901", "SparkPost could not generate the message from its MIME; check the "
          "content and attachments."),
    _code(_REJECTED, "1910", "message generation is not configured for this SparkPost account."),
    _code(_REJECTED, "3000", "SparkPost found template syntax it cannot parse in the message."),
    _code(_REJECTED, "3001", "SparkPost could not render the template syntax in the message."),
    _code(_REJECTED, "3002", "SparkPost does not accept one of the message's headers."),
    _code(_REJECTED, "3010", "SparkPost could not build the message's MIME."),
    _code(_REJECTED, "3020", "SparkPost could not parse the message's MIME."),
    when(
        errors.TransientError,
        "SparkPost is not accepting requests at the moment ({shown}); nothing was sent. Try again shortly.",
        code="503",
    ),
    when(
        errors.DeliveryUnknownError,
        "SparkPost answered {shown} after receiving the transmission, so it may or may not have been sent "
        "(Message-ID {message_id}). {unknown_advice}",
        code="5xx",
        situations={"send"},
    ),
    when(_TRANSIENT, "SparkPost failed to answer the request ({shown}); try again later.", code="5xx"),
    when(
        errors.PermanentError,
        "SparkPost answered {shown} for {where}: base_url must be the API root including /api/v1, like "
        "https://api.sparkpost.com/api/v1.",
        code="404",
    ),
    when(
        errors.MessageRejectedError,
        "The transmission is larger than SparkPost accepts ({shown}; content is limited to 20 MB); send "
        "large files as links instead of attachments.",
        code="413",
    ),
    when(
        errors.MessageRejectedError,
        "SparkPost refused the transmission ({shown}); the reply says what it did not accept.",
        code="400,422",
        situations={"send"},
    ),
)
_FALLBACK = when(
    errors.PermanentError,
    "SparkPost refused the request ({shown}); check the channel's base_url and options.",
)
__doc__ = (__doc__ or "").replace("{table}", table(RULES))
_KNOWN_CODES = frozenset(code for rule in RULES for code in rule.reasons or ())


def describe(error: Mapping[str, Any], redact: Callable[[str], str]) -> str:
    """One SparkPost error object as text: ``message: description (code)``, without secrets."""
    message = str(error.get("message") or "").strip()
    description = str(error.get("description") or "").strip()
    code = error.get("code")
    text = ": ".join(part for part in (message, description) if part) or "no message"
    if code is not None:
        text += f" ({code})"
    return redact(text)


def errors_of(body: object, redact: Callable[[str], str]) -> list[tuple[str | None, str]]:
    """The ``errors`` of a SparkPost answer as (code, text) pairs."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    return [
        (None if error.get("code") is None else str(error["code"]), describe(error, redact))
        for error in body["errors"]
        if isinstance(error, dict)
    ]


def _next_boundary(now: float, period: str) -> float:
    """The start of the next UTC hour, day or month after ``now`` (seconds since the epoch)."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    if period == "hourly":
        start = moment.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    elif period == "daily":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(days=1)
    else:
        days = calendar.monthrange(moment.year, moment.month)[1]
        first_day = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = first_day + datetime.timedelta(days=days)
    return start.timestamp()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def answer_error(
    answer: HttpAnswer,
    listed: list[tuple[str | None, str]],
    *,
    now: float,
    redact: Callable[[str], str],
    where: str,
    context: Mapping[str, str],
) -> errors.SendError:
    """The error for a SparkPost answer that is not a success.

    Args:
        answer: The answer.
        listed: Its ``errors`` as (code, text) pairs.
        now: The wall clock, for Retry-After dates and limit resets.
        redact: Removes the key from text.
        where: The URL, redacted.
        context: ``situation`` (``"send"`` or ``"read"``) and the words the explanations use:
            ``message_id``, ``sender``, ``domain``, ``reading``, ``unknown_advice``.
    """
    status = answer.status
    reply = "; ".join(text for _, text in listed) or redact(answer.reason)
    if not listed and answer.body and not answer.body.lstrip().startswith(b"{"):
        reply = f"{reply}: {redact(answer.text.strip())}".strip(": ")
    codes = [c for c, _ in listed if c is not None]
    known = next((c for c in codes if c in _KNOWN_CODES), None)
    code = known or next(iter(codes), None)
    shown = f"{status} {reply}".strip()
    if not listed and answer.is_page:
        # An HTML page (a proxy's or a load balancer's): its words, in parentheses, not its markup.
        shown = f"{status} {redact(answer.reason)} ({redact(answer.page_words())})"
    situation = context.get("situation", "send")
    rule = first(RULES, status, reply, reasons=codes, situation=situation) or _FALLBACK
    word = _LIMIT_CODES.get(code or "") or next(
        (m.group(1).lower() for m in [_LIMIT_WORD_RE.search(reply)] if m), ""
    )
    retry_after = answer.retry_after(now)
    fields: dict[str, Any] = {"shown": shown, "where": where, "word": word, **context}
    kwargs: dict[str, Any] = {"code": status, "enhanced_code": code, "reply": reply}
    if status == 429:
        retry_after = DEFAULT_429_WAIT if retry_after is None else retry_after
        fields["wait"] = retry_after
    if word == "hourly":
        resumes = _next_boundary(now, "hourly")
        fields["resumes"] = _iso(resumes)
        retry_after = resumes - now
    elif word in ("daily", "monthly") and rule.error is errors.QuotaExceededError:
        resets = _next_boundary(now, word)
        fields.update(resets=_iso(resets), period="day" if word == "daily" else "month")
        kwargs["resets_at"] = resets
        retry_after = resets - now
    if issubclass(rule.error, errors.TransientError) or "resets_at" in kwargs:
        kwargs["retry_after"] = retry_after
    return rule.error(rule.explain.format_map(_Fields(fields)), **kwargs)


class _Fields(dict[str, Any]):
    """Format fields; one an explanation names but the situation lacks reads as a plain phrase."""

    def __missing__(self, key: str) -> str:
        named = {"resumes": "the next hour", "resets": "the next reset", "period": "period"}
        return named.get(key, "of the request" if key == "message_id" else key)
