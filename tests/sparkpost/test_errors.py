"""How SparkpostChannel maps SparkPost's answers: each documented error body, and per-recipient outcomes."""

from __future__ import annotations

import datetime
import logging

import pytest

from sendchannel import (
    AuthenticationError,
    DeliveryUnknownError,
    InvalidMessageError,
    Message,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendError,
    SparkpostChannel,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import VirtualClock
from tests import sentinels
from tests.sparkpost import server as answers
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer, domain_object, error_body

# 2026-03-31 22:15:00 UTC: the next hour is 23:00, the next day 1 April, the next month 1 April too.
NOW = datetime.datetime(2026, 3, 31, 22, 15, tzinfo=datetime.UTC).timestamp()


def utc(*fields: int) -> float:
    return datetime.datetime(*fields, tzinfo=datetime.UTC).timestamp()  # type: ignore[misc]


def message(*to: str) -> Message:
    return Message("app@example.com", list(to or ["bob@example.net"]), subject="Hi", text="Hello.\n")


@pytest.fixture
async def clocked(server: SparkpostServer) -> SparkpostChannel:
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, clock=VirtualClock(NOW))
    yield channel  # type: ignore[misc]
    await channel.aclose()


async def send_expecting(channel: SparkpostChannel, kind: type[SendError], *to: str) -> SendError:
    with pytest.raises(kind) as caught:
        await channel.send(message(*to))
    assert kind is type(caught.value)
    return caught.value


# -- credentials -----------------------------------------------------------------------------------------


async def test_an_unknown_key_is_an_authentication_error_naming_the_region(server: SparkpostServer) -> None:
    channel = SparkpostChannel("not-a-real-key", domains=["example.com"], base_url=server.url)
    async with channel:
        error = await send_expecting(channel, AuthenticationError)

    assert (401, "Unauthorized.") == (error.code, error.reply)
    assert "region" in str(error)
    assert [] == server.delivered


async def test_a_key_without_the_transmissions_permission_says_so(server: SparkpostServer) -> None:
    server.keys[API_KEY] = {"sending_domains"}
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url)
    async with channel:
        error = await send_expecting(channel, AuthenticationError)

    assert 403 == error.code
    assert "'Transmissions: Read/Write' permission" in str(error)


async def test_permission_denied_1100_is_an_authentication_error(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(answers.PERMISSION_DENIED)

    error = await send_expecting(channel, AuthenticationError)

    assert (403, "1100") == (error.code, error.enhanced_code)
    assert "Transmissions" in str(error)


# -- senders ---------------------------------------------------------------------------------------------


async def test_an_unverified_sending_domain_7001_is_sender_not_allowed(server: SparkpostServer) -> None:
    server.sending_domains.append(domain_object("news.example.org", verified=False))
    channel = SparkpostChannel(API_KEY, domains=["example.com", "news.example.org"], base_url=server.url)
    async with channel:
        with pytest.raises(SenderNotAllowedError) as caught:
            await channel.send(Message("hello@news.example.org", ["bob@example.net"], text="x"))

    error = caught.value
    assert (400, "7001") == (error.code, error.enhanced_code)
    assert "Invalid domain: Unconfigured or unverified sending domain. (7001)" == error.reply
    assert "news.example.org is not a configured and verified sending domain" in str(error)


async def test_a_restricted_sending_domain_7000_is_sender_not_allowed(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(answers.RESTRICTED_DOMAIN)

    error = await send_expecting(channel, SenderNotAllowedError)

    assert "7000" == error.enhanced_code
    assert "support" in str(error)


# -- sending limits --------------------------------------------------------------------------------------


async def test_the_hourly_limit_2101_is_throttled_until_the_next_hour(
    server: SparkpostServer, clocked: SparkpostChannel
) -> None:
    server.script(answers.HOURLY_LIMIT)

    error = await send_expecting(clocked, ThrottledError)

    assert (420, "2101", 45 * 60.0) == (error.code, error.enhanced_code, error.retry_after)
    assert "2026-03-31 23:00 UTC" in str(error)


@pytest.mark.parametrize(
    ("answer", "code", "resets_at"),
    [
        (answers.DAILY_LIMIT, "2102", utc(2026, 4, 1)),
        (answers.MONTHLY_LIMIT, "2105", utc(2026, 4, 1)),
    ],
    ids=["daily", "monthly"],
)
async def test_the_daily_and_monthly_limits_are_quota_errors_with_resets_at(
    server: SparkpostServer, clocked: SparkpostChannel, answer: Answer, code: str, resets_at: float
) -> None:
    server.script(answer)

    error = await send_expecting(clocked, QuotaExceededError)

    assert isinstance(error, QuotaExceededError)
    assert (420, code, resets_at, resets_at - NOW) == (
        error.code,
        error.enhanced_code,
        error.resets_at,
        error.retry_after,
    )


async def test_the_monthly_limit_resets_at_new_year_in_december(server: SparkpostServer) -> None:
    server.script(answers.MONTHLY_LIMIT)
    channel = SparkpostChannel(
        API_KEY, domains=["example.com"], base_url=server.url, clock=VirtualClock(utc(2026, 12, 31, 23, 59))
    )
    async with channel:
        error = await send_expecting(channel, QuotaExceededError)

    assert isinstance(error, QuotaExceededError)
    assert utc(2027, 1, 1) == error.resets_at


async def test_the_sandbox_limit_2103_is_a_quota_that_never_comes_back(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(answers.SANDBOX_LIMIT)

    error = await send_expecting(channel, QuotaExceededError)

    assert isinstance(error, QuotaExceededError)
    assert (None, None, "2103") == (error.resets_at, error.retry_after, error.enhanced_code)
    assert "verified sending domain" in str(error)


async def test_a_420_without_a_code_is_read_from_its_message(
    server: SparkpostServer, clocked: SparkpostChannel
) -> None:
    """SparkPost announced 420 bodies that carry only the message; the limit is read from its words."""
    server.script(Answer(420, {"errors": [{"message": "Exceed Sending Limit (daily)"}]}))

    error = await send_expecting(clocked, QuotaExceededError)

    assert isinstance(error, QuotaExceededError)
    assert utc(2026, 4, 1) == error.resets_at


# -- throttling and transient failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", 7.0), ("Tue, 31 Mar 2026 22:15:30 GMT", 30.0), (None, 5.0)],
    ids=["seconds", "http-date", "absent"],
)
async def test_429_is_throttled_for_the_retry_after_it_gives(
    server: SparkpostServer, clocked: SparkpostChannel, retry_after: str | None, expected: float
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    server.script(Answer(429, answers.TOO_MANY_REQUESTS.body, headers=headers))

    error = await send_expecting(clocked, ThrottledError)

    assert (429, expected) == (error.code, error.retry_after)


async def test_503_with_1900_is_transient(server: SparkpostServer, channel: SparkpostChannel) -> None:
    server.script(answers.GENERATION_UNAVAILABLE)

    error = await send_expecting(channel, TransientError)

    assert (503, "1900") == (error.code, error.enhanced_code)
    assert "nothing was sent" in str(error)


async def test_a_503_with_retry_after_asks_to_wait_that_long(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(503, answers.GENERATION_UNAVAILABLE.body, headers={"Retry-After": "12"}))

    error = await send_expecting(channel, TransientError)

    assert 12.0 == error.retry_after


async def test_503_without_a_code_is_transient(server: SparkpostServer, channel: SparkpostChannel) -> None:
    server.script(Answer(503, {"errors": [{"message": "Unable to contact authorization service."}]}))

    error = await send_expecting(channel, TransientError)

    assert "Unable to contact authorization service." == error.reply


async def test_a_500_after_the_post_leaves_the_outcome_unknown(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(answers.INTERNAL_ERROR)

    error = await send_expecting(channel, DeliveryUnknownError)

    assert (500, "1500") == (error.code, error.enhanced_code)


# -- the message refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (answers.INVALID_DATA, "1300"),
        (answers.MISSING_FIELD, "1400"),
        (answers.GENERATION_FAILED, "1901"),
        (Answer(422, error_body("substitution language syntax error", "3000", "bad")), "3000"),
        (answers.TOO_LARGE, None),
        (Answer(422, {"errors": [{"message": "something new"}]}), None),
    ],
    ids=["1300", "1400", "1901", "3000", "413", "422-unknown"],
)
async def test_invalid_transmissions_are_message_rejected(
    server: SparkpostServer, channel: SparkpostChannel, answer: Answer, code: str | None
) -> None:
    server.script(answer)

    error = await send_expecting(channel, MessageRejectedError)

    assert (answer.status, code) == (error.code, error.enhanced_code)


async def test_a_wrong_api_path_is_a_permanent_error_about_base_url(server: SparkpostServer) -> None:
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url.replace("v1", "v2"))
    async with channel:
        error = await send_expecting(channel, PermanentError)

    assert 404 == error.code
    assert "/api/v1" in str(error)


# -- per-recipient outcomes ------------------------------------------------------------------------------


async def test_refused_recipients_in_rcpt_to_errors_are_listed_and_the_others_sent(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.invalid_recipients.add("bad@example.net")

    result = await channel.send(message("good@example.net", "bad@example.net", "fine@example.org"))

    assert ("good@example.net", "fine@example.org") == result.accepted
    assert {
        "bad@example.net": "invalid data format/type: invalid recipient address.email: bad@example.net (1300)"
    } == dict(result.rejected)
    assert ["good@example.net", "fine@example.org"] == server.delivered[0].recipients


async def test_no_valid_recipient_5002_refuses_them_all(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.invalid_recipients.update({"a@example.net", "b@example.net"})

    error = await send_expecting(channel, RecipientsRefusedError, "a@example.net", "b@example.net")

    assert ["a@example.net", "b@example.net"] == sorted(error.rejected)
    assert (400, "5002") == (error.code, error.enhanced_code)


async def test_a_suppressed_single_recipient_1902_is_refused(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """SparkPost answers 400 with both errors and results; the one recipient was not sent to."""
    server.suppressed.add("gone@example.net")

    error = await send_expecting(channel, RecipientsRefusedError, "gone@example.net")

    assert {
        "gone@example.net": "Message generation rejected: recipient address was suppressed due to system "
        "policy (1902)"
    } == dict(error.rejected)
    assert (400, "1902") == (error.code, error.enhanced_code)
    assert [] == server.delivered


async def test_1902_for_several_recipients_that_names_none_leaves_the_outcome_unknown(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(answers.suppressed_answer())

    error = await send_expecting(channel, DeliveryUnknownError, "a@example.net", "b@example.net")

    assert "1902" == error.enhanced_code
    assert {} == dict(error.rejected)
    assert "102593777022651116" in str(error)


async def test_1902_that_names_every_recipient_refuses_them_all(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    body = error_body("Message generation rejected", "1902", "suppressed: a@example.net, b@example.net")
    server.script(Answer(400, body))

    error = await send_expecting(channel, RecipientsRefusedError, "a@example.net", "b@example.net")

    assert ["a@example.net", "b@example.net"] == sorted(error.rejected)


async def test_a_200_that_accepts_nobody_raises_recipients_refused(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(
        Answer(
            200,
            {
                "errors": [{"message": "transmission created, but with validation errors", "code": "2000"}],
                "results": {
                    "rcpt_to_errors": [{"message": "invalid data format/type", "code": "1300"}],
                    "total_rejected_recipients": 2,
                    "total_accepted_recipients": 0,
                    "id": "42",
                },
            },
        )
    )

    error = await send_expecting(channel, RecipientsRefusedError, "a@example.net", "b@example.net")

    assert {
        "a@example.net": "invalid data format/type (1300)",
        "b@example.net": "invalid data format/type (1300)",
    } == dict(error.rejected)


async def test_a_refusal_that_names_nobody_is_logged_and_the_send_succeeds(
    server: SparkpostServer, channel: SparkpostChannel, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(
        Answer(
            200,
            {
                "results": {
                    "rcpt_to_errors": [{"message": "invalid data format/type", "code": "1300"}],
                    "total_rejected_recipients": 1,
                    "total_accepted_recipients": 1,
                    "id": "43",
                }
            },
        )
    )

    with caplog.at_level(logging.WARNING, logger="sendchannel"):
        result = await channel.send(message("a@example.net", "b@example.net"))

    assert ("43", {}) == (result.provider_id, dict(result.rejected))
    assert ["invalid data format/type (1300)"] == [
        r.getMessage().rpartition(": ")[2] for r in caplog.records if "without naming them" in r.getMessage()
    ]


async def test_a_200_without_a_transmission_id_leaves_the_outcome_unknown(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(200, raw=b"<html>captive portal</html>"))

    error = await send_expecting(channel, DeliveryUnknownError)

    assert "captive portal" in str(error)


# -- secrets ---------------------------------------------------------------------------------------------


async def test_a_reply_that_echoes_the_key_never_shows_it(
    server: SparkpostServer, channel: SparkpostChannel, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Answer(422, error_body("invalid data", "1300", f"header Authorization: {API_KEY} refused")))

    with caplog.at_level(logging.DEBUG):
        error = await send_expecting(channel, MessageRejectedError)

    shown = " ".join([str(error), repr(error), error.reply or "", *(r.getMessage() for r in caplog.records)])
    assert [] == sentinels.leaked(shown)
    assert "header Authorization: *** refused" in (error.reply or "")


# -- odd answers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("soon", 5.0), ("Tue, 31 Mar 2026 22:16:00 -0000", 60.0), ("-3", 0.0)],
    ids=["unreadable", "date-without-zone", "negative"],
)
async def test_an_odd_retry_after_is_read_sensibly(
    server: SparkpostServer, clocked: SparkpostChannel, retry_after: str, expected: float
) -> None:
    server.script(Answer(429, answers.TOO_MANY_REQUESTS.body, headers={"Retry-After": retry_after}))

    error = await send_expecting(clocked, ThrottledError)

    assert expected == error.retry_after


async def test_an_unknown_420_code_is_a_quota_error_without_resets_at(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(420, error_body("Exceed Sending Limit (weekly)", "2199")))

    error = await send_expecting(channel, QuotaExceededError)

    assert isinstance(error, QuotaExceededError)
    assert (None, "2199") == (error.resets_at, error.enhanced_code)


async def test_a_503_page_that_is_not_json_keeps_its_text(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(503, raw=b"<html>Service Unavailable</html>"))

    error = await send_expecting(channel, TransientError)

    assert "Service Unavailable: <html>Service Unavailable</html>" == error.reply


async def test_an_unexpected_client_error_is_permanent(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(405, error_body("invalid HTTP method", "1102")))

    error = await send_expecting(channel, PermanentError)

    assert (405, "1102") == (error.code, error.enhanced_code)


async def test_template_syntax_in_the_message_id_is_refused_before_sending(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    with pytest.raises(InvalidMessageError, match="message_id"):
        await channel.send(
            Message("app@example.com", ["b@example.net"], text="x", message_id="<a{{b}}@example.com>")
        )

    assert [] == server.received
