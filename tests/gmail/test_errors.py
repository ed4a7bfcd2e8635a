"""How GmailOAuthChannel classifies Google's answers, token failures and lost connections."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import json
import logging
import socket
import threading
import time
import types
import zlib
from typing import Any
from zoneinfo import ZoneInfo

import httplib2
import pytest

from sendchannel import GmailOAuthChannel, Message
from sendchannel._http import parse_retry_after
from sendchannel.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from tests import sentinels
from tests.gmail.conftest import ADDRESS, expired_credentials, user_credentials
from tests.gmail.server import CLIENT_SECRET, GMAIL_READONLY, REFRESH_TOKEN, GmailServer, google_error

SEND_PATH = "/gmail/v1/users/me/messages/send"


def message() -> Message:
    return Message(ADDRESS, ["bob@example.net"], subject="Hi", text="Hello.")


def send_requests(server: GmailServer) -> int:
    return sum(1 for r in server.requests if r.path == SEND_PATH)


def _iso_in(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


# Each case: the answer (status, body, headers) and the error it must become (class, enhanced code).
ANSWERS: dict[str, tuple[int, dict[str, Any] | str, dict[str, str], type[SendError], str | None]] = {
    "429 mail sending limit": (
        429,
        google_error(
            429,
            "rateLimitExceeded",
            f"User-rate limit exceeded.  Retry after {_iso_in(90)} (Mail sending)",
            status_name="RESOURCE_EXHAUSTED",
        ),
        {},
        QuotaExceededError,
        "rateLimitExceeded",
    ),
    "daily user sending quota exceeded": (
        403,
        google_error(403, "quotaExceeded", "Daily user sending quota exceeded.", domain="usageLimits"),
        {},
        QuotaExceededError,
        "quotaExceeded",
    ),
    "403 dailyLimitExceeded": (
        403,
        google_error(403, "dailyLimitExceeded", "Daily Limit Exceeded", domain="usageLimits"),
        {},
        QuotaExceededError,
        "dailyLimitExceeded",
    ),
    "429 too many concurrent requests with Retry-After seconds": (
        429,
        google_error(
            429,
            "rateLimitExceeded",
            "Too many concurrent requests for user",
            status_name="RESOURCE_EXHAUSTED",
        ),
        {"Retry-After": "7"},
        ThrottledError,
        "rateLimitExceeded",
    ),
    "403 userRateLimitExceeded with Retry-After date": (
        403,
        google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits"),
        {"Retry-After": _http_date_in(30)},
        ThrottledError,
        "userRateLimitExceeded",
    ),
    "403 rateLimitExceeded": (
        403,
        google_error(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits"),
        {},
        ThrottledError,
        "rateLimitExceeded",
    ),
    "400 invalidArgument": (
        400,
        google_error(400, "invalidArgument", "Invalid To header", status_name="INVALID_ARGUMENT"),
        {},
        MessageRejectedError,
        "invalidArgument",
    ),
    "413 too large": (
        413,
        "<html><title>413 Request Entity Too Large</title></html>",
        {},
        MessageRejectedError,
        None,
    ),
    "400 failedPrecondition": (
        400,
        google_error(
            400, "failedPrecondition", "Precondition check failed.", status_name="FAILED_PRECONDITION"
        ),
        {},
        AuthenticationError,
        "failedPrecondition",
    ),
    "403 domainPolicy": (
        403,
        google_error(403, "domainPolicy", "The domain administrators have disabled Gmail apps."),
        {},
        AuthenticationError,
        "domainPolicy",
    ),
    "403 delegation denied": (
        403,
        google_error(403, "forbidden", "Delegation denied for bob@example.com"),
        {},
        SenderNotAllowedError,
        "forbidden",
    ),
    "403 other": (
        403,
        google_error(403, "forbidden", "Mail service not enabled"),
        {},
        AuthenticationError,
        "forbidden",
    ),
    "404 not found": (
        404,
        google_error(404, "notFound", "Requested entity was not found."),
        {},
        MessageRejectedError,
        "notFound",
    ),
    "408 request timeout": (408, "Request Timeout", {}, TransientError, None),
    "500 backendError": (
        500,
        google_error(500, "backendError", "Backend Error"),
        {},
        TransientError,
        "backendError",
    ),
    "502 html": (502, "<html><body>502. That's an error.</body></html>", {}, TransientError, None),
    "503 with Retry-After": (
        503,
        google_error(503, "backendError", "Service unavailable"),
        {"Retry-After": "5"},
        TransientError,
        "backendError",
    ),
    "504 gateway timeout": (
        504,
        google_error(504, "backendError", "Gateway Timeout"),
        {},
        DeliveryUnknownError,
        "backendError",
    ),
}


@pytest.mark.parametrize("case", ANSWERS.values(), ids=ANSWERS.keys())
async def test_google_answers_become_the_documented_errors(
    channel: GmailOAuthChannel, gmail_server: GmailServer, case: tuple[Any, ...]
) -> None:
    status, body, headers, expected, reason = case
    gmail_server.fail_next(status, body, headers=headers)
    with pytest.raises(SendError) as caught:
        await channel.send(message())
    error = caught.value
    assert (expected, status, reason, "gmail") == (
        type(error),
        error.code,
        error.enhanced_code,
        error.channel,
    )
    assert ADDRESS in str(error), "the error names the account"
    if reason is not None:
        assert reason in str(error), "the error names Google's reason"
    assert 1 == send_requests(gmail_server), "the request is never sent again"


async def test_5xx_errors_are_transient_but_not_throttling(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.fail_next(
        503, google_error(503, "backendError", "Service unavailable"), headers={"Retry-After": "5"}
    )
    with pytest.raises(TransientError) as caught:
        await channel.send(message())
    assert (False, True, 5.0) == (
        isinstance(caught.value, ThrottledError),
        caught.value.transient,
        caught.value.retry_after,
    )


async def test_the_mail_sending_limit_says_when_it_resets(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    before = time.time()
    text = f"User-rate limit exceeded.  Retry after {_iso_in(90)} (Mail sending)"
    gmail_server.fail_next(
        429, google_error(429, "rateLimitExceeded", text, status_name="RESOURCE_EXHAUSTED")
    )
    with pytest.raises(QuotaExceededError) as caught:
        await channel.send(message())
    assert caught.value.resets_at is not None
    assert before + 85 <= caught.value.resets_at <= time.time() + 91
    assert caught.value.retry_after is not None
    assert 85 <= caught.value.retry_after <= 91


async def test_the_projects_daily_limit_resets_at_midnight_pacific(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.fail_next(*ANSWERS["403 dailyLimitExceeded"][:2])
    with pytest.raises(QuotaExceededError) as caught:
        await channel.send(message())
    resets_at = caught.value.resets_at
    assert resets_at is not None
    assert time.time() < resets_at <= time.time() + 86400 + 3600
    assert (
        datetime.time(0, 0)
        == datetime.datetime.fromtimestamp(resets_at, ZoneInfo("America/Los_Angeles")).time()
    )


async def test_retry_after_is_read_in_seconds_and_as_an_http_date(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.fail_next(
        *ANSWERS["429 too many concurrent requests with Retry-After seconds"][:2],
        headers={"Retry-After": "7"},
    )
    with pytest.raises(ThrottledError) as in_seconds:
        await channel.send(message())
    gmail_server.fail_next(
        *ANSWERS["403 userRateLimitExceeded with Retry-After date"][:2],
        headers={"Retry-After": _http_date_in(30)},
    )
    with pytest.raises(ThrottledError) as as_date:
        await channel.send(message())
    gmail_server.fail_next(*ANSWERS["403 rateLimitExceeded"][:2])
    with pytest.raises(ThrottledError) as not_given:
        await channel.send(message())
    assert 7.0 == in_seconds.value.retry_after
    assert as_date.value.retry_after is not None
    assert 25 <= as_date.value.retry_after <= 31
    assert not_given.value.retry_after is None


# -- tokens -------------------------------------------------------------------------------------


async def test_an_expired_token_is_refreshed_before_it_is_used(gmail_server: GmailServer) -> None:
    credentials = expired_credentials(gmail_server)
    async with GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url) as channel:
        await channel.send(message())
    assert ["/token", SEND_PATH] == [r.path for r in gmail_server.requests]
    assert "refresh_token" == gmail_server.token_requests[0]["grant_type"]
    assert [f"Bearer {t}" for t in gmail_server.issued_tokens()] == [
        gmail_server.requests[1].headers["authorization"]
    ]


async def test_a_401_refreshes_the_token_and_sends_the_message_once(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    await channel.send(message())
    gmail_server.expire_tokens()  # Google no longer accepts the token the channel holds
    result = await channel.send(message())
    assert ["/token", SEND_PATH, SEND_PATH, "/token", SEND_PATH] == [r.path for r in gmail_server.requests]
    assert 2 == len(gmail_server.sent)
    assert gmail_server.sent[1].id == result.provider_id


async def test_a_revoked_grant_asks_the_user_to_connect_their_gmail_account_again(
    gmail_server: GmailServer,
) -> None:
    gmail_server.revoke()
    async with GmailOAuthChannel(
        expired_credentials(gmail_server), address=ADDRESS, api_endpoint=gmail_server.url
    ) as channel:
        with pytest.raises(AuthenticationError, match="must connect their Gmail account again") as caught:
            await channel.send(message())
    assert ("invalid_grant", "gmail") == (caught.value.enhanced_code, caught.value.channel)
    assert ADDRESS in str(caught.value)
    assert "Token has been expired or revoked" in str(caught.value)
    assert 0 == send_requests(gmail_server)


async def test_a_401_that_survives_the_refresh_is_an_authentication_error(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    body = google_error(401, "authError", "Invalid Credentials")
    gmail_server.fail_next(401, body, times=2)
    with pytest.raises(AuthenticationError, match="connect their Gmail account again") as caught:
        await channel.send(message())
    assert (401, "authError") == (caught.value.code, caught.value.enhanced_code)
    assert 2 == send_requests(gmail_server)
    assert 2 == len(gmail_server.token_requests)
    assert [] == gmail_server.sent


async def test_a_wrong_client_secret_is_an_authentication_error(gmail_server: GmailServer) -> None:
    credentials = user_credentials(gmail_server, client_secret=f"{sentinels.CLIENT_SECRET}-wrong")
    async with GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url) as channel:
        with pytest.raises(AuthenticationError, match="invalid_client") as caught:
            await channel.send(message())
    assert f"{sentinels.CLIENT_SECRET}-wrong" not in str(caught.value)


async def test_a_grant_without_the_send_scope_is_refused_with_the_remedy(gmail_server: GmailServer) -> None:
    gmail_server.granted_scopes = [GMAIL_READONLY]
    async with GmailOAuthChannel(
        user_credentials(gmail_server, scopes=None), address=ADDRESS, api_endpoint=gmail_server.url
    ) as channel:
        with pytest.raises(AuthenticationError, match=r"gmail\.send") as caught:
            await channel.send(message())
    assert (403, "insufficientPermissions") == (caught.value.code, caught.value.enhanced_code)


async def test_an_unreachable_token_endpoint_is_a_connection_error_before_sending(
    gmail_server: GmailServer,
) -> None:
    credentials = user_credentials(gmail_server, token_uri=f"http://127.0.0.1:{_closed_port()}/token")
    async with GmailOAuthChannel(credentials, address=ADDRESS, api_endpoint=gmail_server.url) as channel:
        with pytest.raises(ConnectionLostError, match="token endpoint"):
            await channel.send(message())
    assert [] == gmail_server.requests


async def test_a_failing_token_endpoint_is_transient(
    gmail_server: GmailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's token endpoint answering 503 is worth retrying later (after google-auth's own retries)."""
    import google.auth._exponential_backoff as backoff

    monkeypatch.setattr(backoff, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    original = gmail_server.token

    def unavailable(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        original(form)
        return 503, {"error": "internal_failure", "error_description": "try again"}

    monkeypatch.setattr(gmail_server, "token", unavailable)
    async with GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, api_endpoint=gmail_server.url
    ) as channel:
        with pytest.raises(TransientError) as caught:
            await channel.send(message())
    assert not isinstance(caught.value, (ThrottledError, ConnectionLostError))
    assert 0 == send_requests(gmail_server)


# -- lost connections ----------------------------------------------------------------------------


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


async def test_a_connection_lost_after_the_request_was_written_is_unknown_and_never_resent(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    await channel.verify()
    gmail_server.drop_next()
    with pytest.raises(DeliveryUnknownError, match="check the Sent folder") as caught:
        await channel.send(message())
    assert 1 == send_requests(gmail_server), "exactly one request reached the server"
    assert ADDRESS in str(caught.value)


def test_httplib2_alone_would_send_the_request_twice(gmail_server: GmailServer) -> None:
    """Why the channel has its own transport: httplib2 re-sends a POST whose answer was lost."""
    status, answer = gmail_server.token(
        {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH_TOKEN,
            "client_id": "1234-test.apps.googleusercontent.com",
            "client_secret": CLIENT_SECRET,
        }
    )
    assert 200 == status
    gmail_server.drop_next(times=2)
    with pytest.raises((ConnectionError, httplib2.HttpLib2Error, OSError)):
        httplib2.Http(timeout=5).request(
            gmail_server.url + SEND_PATH.lstrip("/"),
            "POST",
            body=json.dumps({"raw": "eA"}),
            headers={"authorization": f"Bearer {answer['access_token']}", "content-type": "application/json"},
        )
    assert 2 == send_requests(gmail_server)


async def test_a_refused_connection_is_a_connection_error_and_nothing_is_sent(
    gmail_server: GmailServer,
) -> None:
    async with GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, api_endpoint=f"http://127.0.0.1:{_closed_port()}/"
    ) as channel:
        with pytest.raises(ConnectionLostError, match="nothing was sent") as caught:
            await channel.send(message())
    assert ADDRESS in str(caught.value)
    assert caught.value.transient


async def test_no_answer_within_the_timeout_is_unknown(gmail_server: GmailServer) -> None:
    gmail_server.hold_sends = threading.Event()
    async with GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, api_endpoint=gmail_server.url, timeout=0.3
    ) as channel:
        with pytest.raises(DeliveryUnknownError, match="timed out"):
            await channel.send(message())
    assert 1 == send_requests(gmail_server)


async def test_a_lost_connection_while_reading_is_retryable_for_verify(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """Reading the profile changes nothing, so a lost answer there is a plain connection error."""
    await channel.send(message())
    gmail_server.granted_scopes = [GMAIL_READONLY]
    gmail_server.drop_next()
    with pytest.raises(ConnectionLostError):
        await channel.verify()


async def test_a_success_answer_without_a_message_id_still_counts_as_sent(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """A 2xx means Gmail took the message, even when its answer cannot be read."""
    gmail_server.fail_next(200, "<html>not json</html>", headers={"Content-Type": "application/json"})
    result = await channel.send(message())
    assert (None, ("bob@example.net",)) == (result.provider_id, result.accepted)


# -- secrets ---------------------------------------------------------------------------------------


async def test_secrets_echoed_by_google_are_scrubbed_and_never_logged(
    channel: GmailOAuthChannel, gmail_server: GmailServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await channel.send(message())
    [token] = list(gmail_server.issued_tokens())
    gmail_server.fail_next(
        400, google_error(400, "invalidArgument", f"bad header near {token} and {REFRESH_TOKEN}")
    )
    with pytest.raises(MessageRejectedError) as caught:
        await channel.send(message())
    gmail_server.expire_tokens()
    await channel.send(message())
    shown = str(caught.value) + repr(caught.value) + (caught.value.reply or "") + repr(channel) + str(channel)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (token, REFRESH_TOKEN, CLIENT_SECRET, *gmail_server.issued_tokens()):
        assert secret not in shown
        assert secret not in logged
    assert "***" in str(caught.value)


# -- reading Google's answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: no wait
        ("", None),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_retry_after_values_in_seconds_or_http_dates(value: str | None, expected: float | None) -> None:
    assert expected == parse_retry_after(value, time.time())


def test_retry_after_as_a_future_http_date_is_the_seconds_until_then() -> None:
    now = 1_700_000_000.0
    assert 90.0 == parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now)


async def test_an_oauth_style_error_body_keeps_its_reason(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.fail_next(
        400, {"error": "invalid_request", "error_description": "Missing required parameter: raw"}, times=1
    )
    with pytest.raises(MessageRejectedError, match="Missing required parameter") as caught:
        await channel.send(message())
    assert "invalid_request" == caught.value.enhanced_code


async def test_an_error_body_in_a_list_is_read(channel: GmailOAuthChannel, gmail_server: GmailServer) -> None:
    gmail_server.fail_next(429, json.dumps([google_error(429, "rateLimitExceeded", "Rate Limit Exceeded")]))
    with pytest.raises(ThrottledError) as caught:
        await channel.send(message())
    assert "rateLimitExceeded" == caught.value.enhanced_code


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_error_answers_are_decoded(
    channel: GmailOAuthChannel, gmail_server: GmailServer, encoding: str
) -> None:
    body = json.dumps(google_error(400, "invalidArgument", "Invalid To header")).encode()
    data = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    gmail_server.fail_next(
        400, data, headers={"Content-Type": "application/json", "Content-Encoding": encoding}
    )
    with pytest.raises(MessageRejectedError, match="Invalid To header"):
        await channel.send(message())


async def test_a_broken_compressed_answer_to_a_send_is_unknown(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.fail_next(200, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    with pytest.raises(DeliveryUnknownError, match="could not be decompressed"):
        await channel.send(message())


async def test_verify_passes_on_errors_other_than_a_narrow_grant(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    gmail_server.granted_scopes = ["https://www.googleapis.com/auth/gmail.send", GMAIL_READONLY]
    gmail_server.fail_next(
        403, google_error(403, "domainPolicy", "The domain administrators have disabled Gmail apps.")
    )
    with pytest.raises(AuthenticationError, match="administrator"):
        await channel.verify()
    gmail_server.fail_next(504, google_error(504, "backendError", "Gateway Timeout"))
    with pytest.raises(TransientError):
        await channel.verify()
