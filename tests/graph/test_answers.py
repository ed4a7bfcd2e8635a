"""Every answer of Graph's table, as the double writes it, becomes the error DESIGN.md names, with a message
that names the cause and the remedy; and every rule of the table is reached by one of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from sendchannel import (
    AuthenticationError,
    Message,
    MessageRejectedError,
    Office365GraphChannel,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel._graph._answers import GRAPH_RULES
from tests import sentinels
from tests.graph.conftest import ALICE
from tests.graph.server import (
    ACCESS_DENIED,
    BAD_GATEWAY,
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    MAILBOX_CONCURRENCY,
    MAILBOX_FULL,
    MESSAGE_TOO_BIG,
    NOT_REST_ENABLED,
    REQUEST_TOO_LARGE,
    SEND_AS_DENIED,
    SUBMISSION_QUOTA,
    TOO_MANY_REQUESTS,
    TOO_MANY_REQUESTS_NO_WAIT,
    UNAVAILABLE,
    Answer,
    GraphDouble,
    error,
)


@dataclass(frozen=True)
class Row:
    id: str
    answer: Answer
    expected: type[SendError]
    says: str
    retry_after: float | None = None
    times: int = 1


ROWS = [
    Row("429-retry-after", TOO_MANY_REQUESTS, ThrottledError, r"asked to slow down.*Throttler", 7.0),
    Row("429-without-retry-after", TOO_MANY_REQUESTS_NO_WAIT, ThrottledError, r"asked to slow down"),
    Row("429-retry-after-http-date", error(429, "TooManyRequests", "Too many requests.",
        **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ThrottledError, r"slow down", 0.0),
    Row("503-retry-after", UNAVAILABLE, ThrottledError, r"busy and asked to wait", 12.0),
    Row("503-without-retry-after", error(503, "ServiceUnavailable", "Service unavailable."), TransientError,
        r"failed for now.*try again later"),
    Row("mailbox-concurrency", MAILBOX_CONCURRENCY, ThrottledError, r"4 requests at once a mailbox"),
    Row("send-as-denied", SEND_AS_DENIED, SenderNotAllowedError, r"does not let alice@contoso\.com send as"),
    Row("401-also-after-a-fresh-token", INVALID_TOKEN, AuthenticationError,
        r"refused the access token.*also after a fresh token.*sign in again", times=2),
    Row("403-access-denied", ACCESS_DENIED, AuthenticationError,
        r"no consent for Mail\.Send.*RBAC for Applications"),
    Row("403-AccessDenied", error(403, "AccessDenied", "Either the scp or roles claim need to be present"),
        AuthenticationError, r"An admin grants Mail\.Send"),
    Row("mailbox-not-enabled-for-rest", NOT_REST_ENABLED, PermanentError,
        r"unlicensed, inactive, soft-deleted or hosted on-premises"),
    Row("mailbox-full", MAILBOX_FULL, PermanentError, r"is full.*Sent Items"),
    Row("message-size-exceeded", MESSAGE_TOO_BIG, MessageRejectedError, r"too large.*35 MB"),
    Row("413", REQUEST_TOO_LARGE, MessageRejectedError, r"capped at 4 MB"),
    Row("400", BAD_REQUEST, MessageRejectedError, r"refused the message.*recipients"),
    Row("submission-quota", SUBMISSION_QUOTA, QuotaExceededError, r"sending limit.*10,000 recipients"),
    Row("submission-quota-in-text", error(429, "ErrorSubmissionQuota",
        "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"), QuotaExceededError,
        r"sending limit"),
    Row("500", INTERNAL_ERROR, TransientError, r"failed for now"),
    Row("502-html-page", Answer(502, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        headers={"Content-Type": "text/html"}), TransientError, r"failed for now \(502 502 Bad Gateway\)"),
    Row("502", BAD_GATEWAY, TransientError, r"failed for now"),
    Row("504-plain-text", Answer(504, raw=b"upstream timed out", headers={"Content-Type": "text/plain"}),
        TransientError, r"failed for now \(504 upstream timed out\)"),
    Row("unknown-mailbox", error(404, "ErrorInvalidUser", "The requested user 'x' is invalid."),
        SenderNotAllowedError, r"no mailbox alice@contoso\.com"),
    Row("other-4xx", error(409, "ErrorIrresolvableConflict", "Conflict."), PermanentError,
        r"refused the request"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_each_answer_becomes_its_error_with_cause_and_remedy(
    row: Row, graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    graph.script(row.answer, times=row.times)
    with pytest.raises(SendError) as caught:
        await alice.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    error = caught.value
    assert row.expected is type(error), str(error)
    assert row.retry_after == error.retry_after
    assert "msgraph" == error.channel
    assert row.answer.status == error.code
    assert error.reply is not None
    assert str(row.answer.status) in error.reply
    assert re.search(row.says, str(error)), str(error)
    assert "\n" not in str(error)
    assert [] == graph.delivered


def test_every_rule_of_the_table_is_reached_by_an_answer_above_or_on_the_draft_path() -> None:
    """The table has no row that no test reaches (the draft-only row is pinned in test_draft.py)."""
    reached = set()
    for row in ROWS:
        data = row.answer
        reasons = {data.code} if data.code else set()
        if "Retry-After" in data.headers:
            reasons.add("Retry-After")
        text = f"{data.code or ''} {data.message}"
        for index, rule in enumerate(GRAPH_RULES):
            if rule.fits(data.status, text, reasons=reasons, situation="send"):
                reached.add(index)
                break
    draft_only = {i for i, rule in enumerate(GRAPH_RULES) if rule.situations}
    assert set(range(len(GRAPH_RULES))) - draft_only == reached
    assert all(re.search(r"Mail\.ReadWrite", GRAPH_RULES[i].explain) for i in draft_only)


async def test_a_reply_never_carries_the_token(graph: GraphDouble, alice: Office365GraphChannel) -> None:
    graph.script(error(400, "BadRequest", f"Token {sentinels.TOKEN} is not valid here"))
    with pytest.raises(MessageRejectedError) as caught:
        await alice.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value) + str(caught.value.reply))
    assert "***" in str(caught.value)
