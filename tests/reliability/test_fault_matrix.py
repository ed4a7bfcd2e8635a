"""The fault matrix: every channel, every stage of a send, every fault a real provider or network produces.

Each row of :data:`CASES` names a channel, a stage, a fault, the error class the channel must raise and
what the retry layer must do with it. The test arms the project's real test servers on 127.0.0.1 with the
fault, sends (or verifies) through ``Retrying(channel, RetryPolicy(attempts=2))`` and checks:

* the error class, exactly;
* the retry decision, as Retrying carried it out: "retried" (two attempts), "not retried" (one), or
  "ambiguous" for DeliveryUnknownError (one attempt, and two once ``retry_ambiguous=True``);
* the message: its first sentence says what happened (the row's pattern), it names the service that
  failed (the server's address, or Office 365, Gmail, SparkPost, Microsoft Graph), ``error.channel`` is the
  channel's name, it fits on one line, and no secret is in it.

``pytest tests/reliability/test_fault_matrix.py`` prints the tally of cases tried and right per channel
(see ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sendchannel import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    Office365Channel,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    Retrying,
    RetryPolicy,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel._channel import BaseChannel
from sendchannel.testing import set_testing
from tests import sentinels
from tests.gmail.server import google_error
from tests.graph.server import (
    ACCESS_DENIED,
    INVALID_TOKEN,
    MAILBOX_CONCURRENCY,
    NOT_REST_ENABLED,
    REQUEST_TOO_LARGE,
    SEND_AS_DENIED,
    SUBMISSION_QUOTA,
    user_token,
)
from tests.graph.server import DROP as GRAPH_DROP
from tests.graph.server import HANG as GRAPH_HANG
from tests.graph.server import INTERNAL_ERROR as GRAPH_500
from tests.graph.server import TOO_MANY_REQUESTS as GRAPH_429
from tests.graph.server import UNAVAILABLE as GRAPH_503
from tests.graph.server import Answer as GraphAnswer
from tests.reliability import rigs
from tests.reliability.rigs import Env
from tests.smtp.servers import DROP, STALL
from tests.sparkpost.server import (
    DAILY_LIMIT,
    GENERATION_UNAVAILABLE,
    HOURLY_LIMIT,
    INTERNAL_ERROR,
    INVALID_DATA,
    INVALID_DOMAIN,
    MONTHLY_LIMIT,
    PERMISSION_DENIED,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    Answer,
)

RETRIED = "retried"
NOT_RETRIED = "not retried"
AMBIGUOUS = "ambiguous"  # DeliveryUnknownError: not retried, unless retry_ambiguous=True
# (SparkPost is idempotent: its DeliveryUnknownError is RETRIED, with the same Idempotency-Key.)

Rig = Callable[[Env], contextlib.AbstractAsyncContextManager[BaseChannel]]


@dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    id: str
    channel: str
    stage: str
    fault: str
    expected: type[SendError]
    retry: str
    says: str  # a pattern the first sentence of the message matches (case-insensitive)
    rig: Rig
    operation: str = "send"

    def __repr__(self) -> str:
        return self.id


CASES: list[Case] = []


def case(
    channel: str,
    stage: str,
    fault: str,
    expected: type[SendError],
    retry: str,
    says: str,
    rig: Rig,
    *,
    operation: str = "send",
) -> None:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{stage} {fault}".lower()).strip("-")
    CASES.append(Case(f"{channel}-{slug}", channel, stage, fault, expected, retry, says, rig, operation))


# -- SMTP and Office 365: the same stages, the same network faults, through each channel ---------------------

MALFORMED = "this is not SMTP"
LOST = r"lost|closed"
WAITED = re.escape(f"{rigs.TIMEOUT:g} seconds")


def scripted(kind: str, script: dict[str, Any], **options: Any) -> Rig:
    return functools.partial(rigs.scripted, kind=kind, script=script, **options)


def unreachable(kind: str, how: str) -> Rig:
    return functools.partial(rigs.unreachable_smtp, kind=kind, how=how)


for kind in ("smtp", "office365"):
    case(kind, "connect", "refused connection", ConnectionLostError, RETRIED, r"could not connect",
         unreachable(kind, "refused"))
    case(kind, "connect", "stall past the timeout", ConnectionLostError, RETRIED, WAITED,
         unreachable(kind, "stall"))
    case(kind, "TLS handshake", "certificate from an untrusted CA", PermanentError, NOT_RETRIED,
         r"certificate .* could not be verified", scripted(kind, {}, certificate="untrusted"))
    case(kind, "TLS handshake", "certificate for another host name", PermanentError, NOT_RETRIED,
         r"certificate .* could not be verified", scripted(kind, {}, certificate="wrong-host"))
    case(kind, "TLS handshake", "STARTTLS not offered", PermanentError, NOT_RETRIED,
         r"does not offer STARTTLS", scripted(kind, {}, server_tls="none"))
    case(kind, "TLS handshake", "454 TLS not available", ThrottledError, RETRIED, r"STARTTLS",
         scripted(kind, {"starttls": "454 4.7.0 TLS not available due to temporary reason"}))
    case(kind, "TLS handshake", "5xx to STARTTLS", PermanentError, NOT_RETRIED, r"refused STARTTLS",
         scripted(kind, {"starttls": "502 5.5.1 Command not implemented"}))
    case(kind, "TLS handshake", "dropped connection", ConnectionLostError, RETRIED, r"lost at STARTTLS",
         scripted(kind, {"starttls": DROP}))
    case(kind, "TLS handshake", "stall past the timeout", ConnectionLostError, RETRIED,
         rf"did not answer STARTTLS within {WAITED}", scripted(kind, {"starttls": STALL}))
    case(kind, "TLS handshake", "malformed reply", ConnectionLostError, RETRIED,
         r"answered STARTTLS with .*not SMTP|failed at STARTTLS", scripted(kind, {"starttls": MALFORMED}))
    for stage, key, throttled, permanent, permanent_class, permanent_says in (
        ("greeting", "greeting", "421 4.3.0 Service not available, closing transmission channel",
         "554 5.7.1 No SMTP service here", PermanentError, r"refused the connection"),
        ("EHLO", "ehlo", "421 4.7.0 Too many connections, try again later",
         "550 5.7.1 Invalid HELO name", PermanentError, r"refused EHLO"),
        ("AUTH", "auth", "454 4.7.0 Temporary authentication failure",
         "535 5.7.8 Authentication credentials invalid", AuthenticationError, r"rejected"),
        ("MAIL FROM", "mail", "421 4.7.0 Try again later, closing connection",
         "550 5.7.1 Sender address rejected: not owned by user", SenderNotAllowedError,
         r"refused the sender"),
        ("RCPT TO", "rcpt", "452 4.5.3 Too many recipients",
         "550 5.1.1 User unknown", RecipientsRefusedError, r"refused"),
        ("DATA", "data", "421 4.7.0 Closing connection",
         "554 5.5.1 No valid recipients", MessageRejectedError, r"refused the message at DATA"),
        ("end of DATA", "message", "421 4.7.0 Try again later, closing connection",
         "554 5.7.1 Message rejected as spam", MessageRejectedError, r"refused the message by policy"),
    ):
        case(kind, stage, "provider throttling", ThrottledError, RETRIED, r"busy|slow down|closed the "
             r"connection|could not check|refused the recipient for now", scripted(kind, {key: throttled}))
        case(kind, stage, "5xx", permanent_class, NOT_RETRIED, permanent_says,
             scripted(kind, {key: permanent}))
        if key != "greeting":
            case(kind, stage, "4xx", TransientError, RETRIED, r"for now|temporary|try again",
                 scripted(kind, {key: "451 4.3.0 Temporary local problem"}))
        named = {"greeting": "the greeting", "message": "the end of DATA"}.get(key, stage)
        if key == "message":
            case(kind, stage, "dropped connection after the message was written", DeliveryUnknownError,
                 AMBIGUOUS, r"whole message was sent", scripted(kind, {key: DROP}))
            case(kind, stage, "stall past the timeout after the message was written",
                 DeliveryUnknownError, AMBIGUOUS, rf"whole message was sent.*{WAITED}",
                 scripted(kind, {key: STALL}))
            case(kind, stage, "malformed reply", DeliveryUnknownError, AMBIGUOUS,
                 r"neither confirms nor refuses", scripted(kind, {key: MALFORMED}))
        else:
            case(kind, stage, "dropped connection", ConnectionLostError, RETRIED, rf"lost at {named}",
                 scripted(kind, {key: DROP}))
            case(kind, stage, "stall past the timeout", ConnectionLostError, RETRIED,
                 rf"did not answer {named} within {WAITED}", scripted(kind, {key: STALL}))
            case(kind, stage, "malformed reply", ConnectionLostError, RETRIED,
                 rf"answered {named} with .*not SMTP|failed at {named}", scripted(kind, {key: MALFORMED}))
    case(kind, "DATA", "dropped connection before the message was written", ConnectionLostError,
         RETRIED, r"lost at DATA", scripted(kind, {"data": DROP}))
    case(kind, "verify", "refused connection", ConnectionLostError, RETRIED, r"could not connect",
         unreachable(kind, "refused"), operation="verify")
    case(kind, "verify", "5xx to AUTH", AuthenticationError, NOT_RETRIED, r"rejected",
         scripted(kind, {"auth": "535 5.7.8 Authentication credentials invalid"}), operation="verify")
    case(kind, "verify", "stall past the timeout", ConnectionLostError, RETRIED,
         rf"did not answer the greeting within {WAITED}",
         scripted(kind, {"greeting": STALL}), operation="verify")

# SMTP only: implicit TLS (SMTPS), where the handshake comes before any SMTP.
case("smtp", "TLS handshake", "implicit TLS to a port that does not speak TLS", PermanentError, NOT_RETRIED,
     r"TLS handshake .* failed", scripted("smtp", {}, server_tls="none", channel_tls="implicit"))
case("smtp", "TLS handshake", "implicit TLS: dropped during the handshake", ConnectionLostError, RETRIED,
     r"lost at the TLS handshake",
     scripted("smtp", {"greeting": DROP}, server_tls="none", channel_tls="implicit"))
case("smtp", "TLS handshake", "implicit TLS: stall during the handshake", ConnectionLostError, RETRIED,
     WAITED, scripted("smtp", {"greeting": STALL}, server_tls="none", channel_tls="implicit"))
case("smtp", "TLS handshake", "implicit TLS: certificate from an untrusted CA", PermanentError,
     NOT_RETRIED, r"certificate .* could not be verified",
     scripted("smtp", {}, server_tls="implicit", channel_tls="implicit", certificate="untrusted"))
case("smtp", "MAIL FROM", "quota reply (550 5.4.5)", QuotaExceededError, NOT_RETRIED,
     r"daily sending limit", scripted("smtp", {"mail": "550 5.4.5 Daily user sending quota exceeded."}))
case("smtp", "end of DATA", "quota reply (550 5.4.5)", QuotaExceededError, NOT_RETRIED,
     r"daily sending limit", scripted("smtp", {"message": "550 5.4.5 Daily user sending limit exceeded."}))


# -- Office 365 specifics: the preset's TLS floor, its reply texts, and its credentials ---------------------

def office365(**options: Any) -> Rig:
    return functools.partial(rigs.office365_double, **options)


async def _empty_token() -> str:
    return ""


async def _wrong_token() -> str:
    return "not-the-token-the-server-issued"


def _dead_authority() -> Any:
    return Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com",
        client_id="00000000-0000-0000-0000-000000000001",
        client_secret=sentinels.CLIENT_SECRET,
        authority=f"https://127.0.0.1:{rigs.closed_port()}/contoso.onmicrosoft.com",
        instance_discovery=False,
    )


case("office365", "TLS handshake", "server offers only TLS 1.0/1.1", PermanentError, NOT_RETRIED,
     r"TLS handshake .* failed", functools.partial(rigs.outdated_tls, kind="office365"))
case("office365", "AUTH", "wrong password (535 5.7.3)", AuthenticationError, NOT_RETRIED,
     r"rejected the password", office365(password="wrong-" + sentinels.PASSWORD))
case("office365", "AUTH", "Basic auth disabled (535 5.7.139)", AuthenticationError, NOT_RETRIED,
     r"refused SMTP AUTH", office365(basic_auth="disabled"))
case("office365", "AUTH", "Basic auth retired (550 5.7.30)", AuthenticationError, NOT_RETRIED,
     r"no longer accepts Basic auth", office365(basic_auth="retired"))
case("office365", "AUTH", "XOAUTH2 token refused, also when fresh", AuthenticationError, NOT_RETRIED,
     r"rejected the access token", office365(token_provider=_wrong_token))
case("office365", "AUTH", "token provider returns no token", AuthenticationError, NOT_RETRIED,
     r"token_provider returned", office365(token_provider=_empty_token))
case("office365", "token", "token endpoint refuses the connection", TransientError, RETRIED,
     r"could not reach", lambda env: rigs.office365_double(env, token_provider=_dead_authority()))
case("office365", "MAIL FROM", "concurrent connections (432 4.3.2)", ThrottledError, RETRIED,
     r"3 concurrent connections", office365(max_connections=0))
case("office365", "MAIL FROM", "throttling (451 4.7.500)", ThrottledError, RETRIED,
     r"try again later", scripted("office365", {"mail": "451 4.7.500 Server busy. Please try again later."}))
case("office365", "MAIL FROM", "TLS 1.0/1.1 refused (421 4.7.66)", PermanentError, NOT_RETRIED,
     r"TLS version", scripted("office365", {
         "mail": "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to "
                 "support TLS 1.2."}))
case("office365", "end of DATA", "recipient quota (554 5.2.0)", QuotaExceededError, NOT_RETRIED,
     r"10,000 recipients", office365(recipient_quota=0))
case("office365", "end of DATA", "mailbox full (554 5.2.2)", QuotaExceededError, NOT_RETRIED,
     r"is full", scripted("office365", {
         "message": "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException"}))
case("office365", "end of DATA", "Send As denied (550 5.7.60)", SenderNotAllowedError, NOT_RETRIED,
     r"does not let .* send as", scripted("office365", {
         "message": "550 5.7.60 SMTP; Client does not have permissions to send as this sender"}))
case("office365", "verify", "Basic auth disabled (535 5.7.139)", AuthenticationError, NOT_RETRIED,
     r"refused SMTP AUTH", office365(basic_auth="disabled"), operation="verify")


# -- Gmail: token refresh, the request, the answer -----------------------------------------------------------

def gmail(arm: Callable[[rigs.FaultyGmailServer], None] = lambda server: None, **options: Any) -> Rig:
    return functools.partial(rigs.gmail, arm=arm, **options)


def token_fault(fault: Any, times: int = 8) -> Callable[[rigs.FaultyGmailServer], None]:
    def arm(server: rigs.FaultyGmailServer) -> None:
        server.token_faults.extend([fault] * times)

    return arm


def api_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Callable[..., None]:
    def arm(server: rigs.FaultyGmailServer) -> None:
        server.fail_next(status, body, headers=headers, times=8)

    return arm


def api_drop(server: rigs.FaultyGmailServer) -> None:
    server.drop_next(8)


def api_stall(server: rigs.FaultyGmailServer) -> None:
    server.hold_sends = server.released


def revoked(server: rigs.FaultyGmailServer) -> None:
    server.revoke()


HTML_502 = "<html><body>502. That's an error. Please try again later.</body></html>"
MAIL_SENDING = google_error(
    429, "rateLimitExceeded",
    "User-rate limit exceeded.  Retry after 2099-01-01T00:00:00.000Z (Mail sending)",
    status_name="RESOURCE_EXHAUSTED",
)
TOKEN_REFRESH = "token refresh"

case("gmail", TOKEN_REFRESH, "refused connection", ConnectionLostError, RETRIED,
     r"could not reach Google's token endpoint", lambda env: rigs.gmail(env, token_port=rigs.closed_port()))
case("gmail", TOKEN_REFRESH, "dropped connection", ConnectionLostError, RETRIED,
     r"could not reach Google's token endpoint", gmail(token_fault("drop")))
case("gmail", TOKEN_REFRESH, "stall past the timeout", ConnectionLostError, RETRIED,
     r"could not reach Google's token endpoint.*timed out", gmail(token_fault("stall")))
case("gmail", TOKEN_REFRESH, "certificate from an untrusted CA", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", gmail(certificate="untrusted"))
case("gmail", TOKEN_REFRESH, "revoked grant (400 invalid_grant)", AuthenticationError, NOT_RETRIED,
     r"refused to refresh the access token", gmail(revoked))
case("gmail", TOKEN_REFRESH, "wrong client secret (401 invalid_client)", AuthenticationError, NOT_RETRIED,
     r"refused to refresh the access token",
     gmail(token_fault((401, {"error": "invalid_client", "error_description": "Unauthorized"}))))
case("gmail", TOKEN_REFRESH, "5xx (503 with an OAuth error body)", TransientError, RETRIED,
     r"token endpoint failed for now",
     gmail(token_fault((503, {"error": "temporarily_unavailable", "error_description": "try later"}))))
case("gmail", TOKEN_REFRESH, "5xx (502 with an HTML body)", TransientError, RETRIED,
     r"token endpoint failed for now", gmail(token_fault((502, HTML_502.encode()))))
case("gmail", TOKEN_REFRESH, "throttling (429)", ThrottledError, RETRIED,
     r"token endpoint .*slow down|token endpoint failed for now",
     gmail(token_fault((429, {"error": "rate_limit_exceeded", "error_description": "slow down"}))))
case("gmail", TOKEN_REFRESH, "malformed reply (200, not JSON)", TransientError, RETRIED,
     r"token endpoint", gmail(token_fault((200, b"<html>captive portal</html>"))))

case("gmail", "request", "refused connection", ConnectionLostError, RETRIED, r"could not reach Gmail",
     lambda env: rigs.gmail(env, fresh_token=False, api_port=rigs.closed_port()))
case("gmail", "request", "TLS to a port that does not speak TLS", PermanentError, NOT_RETRIED,
     r"TLS handshake with Gmail's server .* failed", gmail(https=True, fresh_token=False))
case("gmail", "request", "certificate from an untrusted CA", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", gmail(certificate="untrusted", fresh_token=False))
case("gmail", "request", "certificate for another host name", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", gmail(certificate="wrong-host", fresh_token=False))


@contextlib.asynccontextmanager
async def _gmail_at_listener(env: Env, mode: str) -> AsyncIterator[BaseChannel]:
    async with rigs.bare_listener(mode) as port, rigs.gmail(
        env, certificate="trusted", fresh_token=False, api_port=port
    ) as channel:
        yield channel


@contextlib.asynccontextmanager
async def _gmail_stalled_connect(env: Env) -> AsyncIterator[BaseChannel]:
    with rigs.full_backlog() as port:
        async with rigs.gmail(env, fresh_token=False, api_port=port) as channel:
            yield channel


case("gmail", "request", "stall past the timeout while connecting", ConnectionLostError, RETRIED,
     r"could not reach Gmail.*timed out", _gmail_stalled_connect)
case("gmail", "request", "dropped during the TLS handshake", ConnectionLostError, RETRIED,
     r"could not reach Gmail", functools.partial(_gmail_at_listener, mode="drop"))
case("gmail", "request", "stall during the TLS handshake", ConnectionLostError, RETRIED,
     r"could not reach Gmail.*timed out", functools.partial(_gmail_at_listener, mode="stall"))

case("gmail", "answer", "dropped connection after the message was written", DeliveryUnknownError,
     AMBIGUOUS, r"lost after the message", gmail(api_drop))
case("gmail", "answer", "stall past the timeout after the message was written", DeliveryUnknownError,
     AMBIGUOUS, r"lost after the message.*timed out", gmail(api_stall))
case("gmail", "answer", "throttling (429 rateLimitExceeded)", ThrottledError, RETRIED, r"slow down",
     gmail(api_answer(429, google_error(429, "rateLimitExceeded", "Rate Limit Exceeded"))))
case("gmail", "answer", "throttling (403 userRateLimitExceeded)", ThrottledError, RETRIED, r"slow down",
     gmail(api_answer(403, google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded"))))
case("gmail", "answer", "quota reply (429 Mail sending)", QuotaExceededError, NOT_RETRIED,
     r"daily sending limit", gmail(api_answer(429, MAIL_SENDING)))
case("gmail", "answer", "quota reply (403 dailyLimitExceeded)", QuotaExceededError, NOT_RETRIED,
     r"daily Gmail API quota", gmail(api_answer(403, google_error(403, "dailyLimitExceeded",
                                                                   "Daily Limit Exceeded"))))
case("gmail", "answer", "4xx (400 invalidArgument)", MessageRejectedError, NOT_RETRIED,
     r"refused the message",
     gmail(api_answer(400, google_error(400, "invalidArgument", "Invalid To header"))))
case("gmail", "answer", "4xx (401 after a fresh token)", AuthenticationError, NOT_RETRIED,
     r"does not accept the access token", gmail(api_answer(401, google_error(401, "authError",
                                                                             "Invalid Credentials"))))
case("gmail", "answer", "4xx (403 insufficientPermissions)", AuthenticationError, NOT_RETRIED,
     r"does not allow this", gmail(api_answer(403, google_error(403, "insufficientPermissions",
                                                                "Insufficient Permission"))))
case("gmail", "answer", "5xx (500 backendError)", TransientError, RETRIED, r"failed for now",
     gmail(api_answer(500, google_error(500, "backendError", "Backend Error"))))
case("gmail", "answer", "5xx (503)", TransientError, RETRIED, r"failed for now",
     gmail(api_answer(503, google_error(503, "backendError", "The service is currently unavailable."))))
case("gmail", "answer", "5xx (504 gateway timeout)", DeliveryUnknownError, AMBIGUOUS,
     r"may or may not have gone out", gmail(api_answer(504, google_error(504, "deadlineExceeded",
                                                                          "Deadline exceeded"))))
case("gmail", "answer", "malformed reply (502 HTML)", TransientError, RETRIED, r"failed for now",
     gmail(api_answer(502, HTML_502)))
case("gmail", "answer", "malformed reply (400, not JSON)", MessageRejectedError, NOT_RETRIED,
     r"refused the message", gmail(api_answer(400, "<html>Bad Request</html>")))
case("gmail", "verify", "revoked grant (400 invalid_grant)", AuthenticationError, NOT_RETRIED,
     r"refused to refresh the access token", gmail(revoked), operation="verify")
case("gmail", "verify", "refused connection", ConnectionLostError, RETRIED, r"could not reach Gmail",
     lambda env: rigs.gmail(env, fresh_token=False, api_port=rigs.closed_port()), operation="verify")
case("gmail", "verify", "token endpoint: malformed reply (502 HTML)", TransientError, RETRIED,
     r"token endpoint failed for now", gmail(token_fault((502, HTML_502.encode()))), operation="verify")


# -- SparkPost: connect, request, answer ---------------------------------------------------------------------

def sparkpost(answer: Answer | None = None, **options: Any) -> Rig:
    return functools.partial(rigs.sparkpost, answer=answer, **options)


@contextlib.asynccontextmanager
async def _sparkpost_at(env: Env, how: str) -> AsyncIterator[BaseChannel]:
    if how == "refused":
        async with rigs.sparkpost(env, port=rigs.closed_port()) as channel:
            yield channel
    elif how == "stall":
        with rigs.full_backlog() as port:
            async with rigs.sparkpost(env, port=port) as channel:
                yield channel
    else:
        mode = "drop" if how == "drop" else "stall"
        async with rigs.bare_listener(mode) as port, rigs.sparkpost(
            env, certificate="trusted", port=port
        ) as channel:
            yield channel


COULD_NOT = r"could not complete the request to SparkPost"
case("sparkpost", "connect", "refused connection", ConnectionLostError, RETRIED, COULD_NOT,
     functools.partial(_sparkpost_at, how="refused"))
case("sparkpost", "connect", "stall past the timeout", ConnectionLostError, RETRIED, COULD_NOT,
     functools.partial(_sparkpost_at, how="stall"))
case("sparkpost", "connect", "dropped during the TLS handshake", ConnectionLostError, RETRIED, COULD_NOT,
     functools.partial(_sparkpost_at, how="drop"))
case("sparkpost", "connect", "stall during the TLS handshake", ConnectionLostError, RETRIED, COULD_NOT,
     functools.partial(_sparkpost_at, how="stall-tls"))
case("sparkpost", "connect", "TLS to a port that does not speak TLS", PermanentError, NOT_RETRIED,
     r"TLS handshake with SparkPost .* failed", sparkpost(https=True))
case("sparkpost", "connect", "certificate from an untrusted CA", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", sparkpost(certificate="untrusted"))
case("sparkpost", "connect", "certificate for another host name", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", sparkpost(certificate="wrong-host"))
case("sparkpost", "request", "dropped connection after the request was written", DeliveryUnknownError,
     RETRIED, r"may or may not have accepted", sparkpost(Answer(action="drop")))
case("sparkpost", "request", "stall past the timeout after the request was written", DeliveryUnknownError,
     RETRIED, rf"did not answer within {WAITED}", sparkpost(Answer(action="hang")))
case("sparkpost", "answer", "throttling (429)", ThrottledError, RETRIED, r"slow down",
     sparkpost(TOO_MANY_REQUESTS))
case("sparkpost", "answer", "throttling (420 hourly limit)", ThrottledError, RETRIED, r"hourly",
     sparkpost(HOURLY_LIMIT))
case("sparkpost", "answer", "quota reply (420 daily limit)", QuotaExceededError, NOT_RETRIED, r"daily",
     sparkpost(DAILY_LIMIT))
case("sparkpost", "answer", "quota reply (420 monthly limit)", QuotaExceededError, NOT_RETRIED, r"monthly",
     sparkpost(MONTHLY_LIMIT))
case("sparkpost", "answer", "4xx (401 bad key)", AuthenticationError, NOT_RETRIED,
     r"did not accept the API key", sparkpost(UNAUTHORIZED))
case("sparkpost", "answer", "4xx (403 1100 permission denied)", AuthenticationError, NOT_RETRIED,
     r"not for sending", sparkpost(PERMISSION_DENIED))
case("sparkpost", "answer", "4xx (400 7001 unverified domain)", SenderNotAllowedError, NOT_RETRIED,
     r"refused to send as", sparkpost(INVALID_DOMAIN))
case("sparkpost", "answer", "4xx (422 1300 invalid data)", MessageRejectedError, NOT_RETRIED,
     r"refused the request", sparkpost(INVALID_DATA))
case("sparkpost", "answer", "5xx (503 1900)", TransientError, RETRIED, r"not available|try again",
     sparkpost(GENERATION_UNAVAILABLE))
case("sparkpost", "answer", "5xx (500)", DeliveryUnknownError, RETRIED, r"may or may not have been sent",
     sparkpost(INTERNAL_ERROR))
case("sparkpost", "answer", "malformed reply (502 HTML)", DeliveryUnknownError, RETRIED,
     r"may or may not have been sent", sparkpost(Answer(502, raw=HTML_502.encode())))
case("sparkpost", "answer", "malformed reply (200, not JSON)", DeliveryUnknownError, RETRIED,
     r"not known whether", sparkpost(Answer(200, raw=b"<html>not SparkPost</html>")))
case("sparkpost", "answer", "malformed reply (200 without an id)", DeliveryUnknownError, RETRIED,
     r"not known whether", sparkpost(Answer(200, {"results": {}})))
case("sparkpost", "verify", "refused connection", ConnectionLostError, RETRIED, COULD_NOT,
     functools.partial(_sparkpost_at, how="refused"), operation="verify")
case("sparkpost", "verify", "4xx (401 bad key)", AuthenticationError, NOT_RETRIED,
     r"did not accept the API key", sparkpost(UNAUTHORIZED), operation="verify")
case("sparkpost", "verify", "dropped connection", ConnectionLostError, RETRIED, COULD_NOT,
     sparkpost(Answer(action="drop")), operation="verify")
case("sparkpost", "verify", "5xx (503 1900)", TransientError, RETRIED, r"not available|try again",
     sparkpost(GENERATION_UNAVAILABLE), operation="verify")


# -- Office 365 through Microsoft Graph: connect, request, answer, verify ----------------------------------

def msgraph(answer: GraphAnswer | None = None, **options: Any) -> Rig:
    return functools.partial(rigs.graph, answer=answer, **options)


@contextlib.asynccontextmanager
async def _graph_at(env: Env, how: str) -> AsyncIterator[BaseChannel]:
    if how == "refused":
        async with rigs.graph(env, port=rigs.closed_port()) as channel:
            yield channel
    elif how == "stall":
        with rigs.full_backlog() as port:
            async with rigs.graph(env, port=port) as channel:
                yield channel
    else:
        mode = "drop" if how == "drop" else "stall"
        async with rigs.bare_listener(mode) as port, rigs.graph(
            env, certificate="trusted", port=port
        ) as channel:
            yield channel


GRAPH_COULD_NOT = r"could not complete the request to Microsoft Graph"
case("msgraph", "connect", "refused connection", ConnectionLostError, RETRIED, GRAPH_COULD_NOT,
     functools.partial(_graph_at, how="refused"))
case("msgraph", "connect", "stall past the timeout", ConnectionLostError, RETRIED, GRAPH_COULD_NOT,
     functools.partial(_graph_at, how="stall"))
case("msgraph", "connect", "dropped during the TLS handshake", ConnectionLostError, RETRIED, GRAPH_COULD_NOT,
     functools.partial(_graph_at, how="drop"))
case("msgraph", "connect", "stall during the TLS handshake", ConnectionLostError, RETRIED, GRAPH_COULD_NOT,
     functools.partial(_graph_at, how="stall-tls"))
case("msgraph", "connect", "certificate from an untrusted CA", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", msgraph(certificate="untrusted"))
case("msgraph", "connect", "certificate for another host name", PermanentError, NOT_RETRIED,
     r"certificate .* could not be verified", msgraph(certificate="wrong-host"))
case("msgraph", "request", "dropped connection after the request was written", DeliveryUnknownError,
     AMBIGUOUS, r"may or may not have accepted", msgraph(GRAPH_DROP))
case("msgraph", "request", "stall past the timeout after the request was written", DeliveryUnknownError,
     AMBIGUOUS, rf"did not answer within {WAITED}", msgraph(GRAPH_HANG))
case("msgraph", "answer", "throttling (429 with Retry-After)", ThrottledError, RETRIED, r"slow down",
     msgraph(GRAPH_429))
case("msgraph", "answer", "throttling (503 with Retry-After)", ThrottledError, RETRIED, r"busy",
     msgraph(GRAPH_503))
case("msgraph", "answer", "concurrent requests (MailboxConcurrency)", ThrottledError, RETRIED,
     r"4 requests at once", msgraph(MAILBOX_CONCURRENCY))
case("msgraph", "answer", "4xx (401 after a fresh token)", AuthenticationError, NOT_RETRIED,
     r"refused the access token", msgraph(INVALID_TOKEN))
case("msgraph", "answer", "4xx (403 ErrorAccessDenied)", AuthenticationError, NOT_RETRIED,
     r"denied sending as", msgraph(ACCESS_DENIED))
case("msgraph", "answer", "4xx (403 ErrorSendAsDenied)", SenderNotAllowedError, NOT_RETRIED,
     r"does not let", msgraph(SEND_AS_DENIED))
case("msgraph", "answer", "4xx (404 MailboxNotEnabledForRESTAPI)", PermanentError, NOT_RETRIED,
     r"cannot be used through Microsoft Graph", msgraph(NOT_REST_ENABLED))
case("msgraph", "answer", "4xx (413 request too large)", MessageRejectedError, NOT_RETRIED,
     r"larger than it accepts", msgraph(REQUEST_TOO_LARGE))
case("msgraph", "answer", "quota reply (ErrorExceededMessageLimit)", QuotaExceededError, NOT_RETRIED,
     r"sending limit", msgraph(SUBMISSION_QUOTA))
case("msgraph", "answer", "5xx (500)", TransientError, RETRIED, r"failed for now", msgraph(GRAPH_500))
case("msgraph", "answer", "malformed reply (502 HTML)", TransientError, RETRIED, r"failed for now",
     msgraph(GraphAnswer(502, raw=HTML_502.encode(), headers={"Content-Type": "text/html"})))
case("msgraph", "verify", "4xx (token without Mail.Send)", AuthenticationError, NOT_RETRIED,
     r"lacks the Mail\.Send permission", msgraph(token=user_token(rigs.OFFICE365_ADDRESS, "Mail.Read")),
     operation="verify")
case("msgraph", "verify", "4xx (token not for Graph)", AuthenticationError, NOT_RETRIED,
     r"not a Microsoft Graph token", msgraph(), operation="verify")


# -- the test ------------------------------------------------------------------------------------------------

#: What a message must name so that the reader knows which service failed.
SERVICE = {
    "smtp": r"127\.0\.0\.1:\d+",
    "office365": r"Office 365|127\.0\.0\.1:\d+",
    "gmail": r"Gmail|Google",
    "sparkpost": r"SparkPost",
    "msgraph": r"Microsoft Graph|Office 365|Exchange Online",
}
_SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z])")


def first_sentence(text: str) -> str:
    """The text up to the first full stop followed by a new sentence, outside parentheses (a quoted
    server reply does not end the sentence that quotes it, and a dotted address ends none)."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth <= 0 and _SENTENCE_END.match(text, index):
            return text[: index + 1]
    return text


async def failure(operation: Awaitable[Any]) -> SendError:
    """The SendError ``operation`` raises (the test fails if it raises nothing or something else)."""
    try:
        await operation
    except SendError as error:
        return error
    pytest.fail("the operation succeeded although the fault was armed", pytrace=False)


async def retry_decision(case: Case, channel: BaseChannel) -> tuple[SendError, str]:
    """Run the case through Retrying and name what it did: retried, not retried, or ambiguous."""
    if case.operation == "verify":
        # Retrying.verify answers "does it work now" and never retries; the policy's decision is the one
        # a caller that retries verify (the CLI, a health check) would get.
        error = await failure(channel.verify())
        policy = RetryPolicy()
        if policy.is_retryable(error):
            return error, RETRIED
        retried_if_asked = RetryPolicy(retry_ambiguous=True).is_retryable(error)
        return error, AMBIGUOUS if retried_if_asked else NOT_RETRIED
    message = rigs.message_for(case.channel)
    with set_testing(True):
        error = await failure(Retrying(channel, RetryPolicy(attempts=2, max_elapsed=None)).send(message))
        if error.attempts == 2:
            return error, RETRIED
        assert 1 == error.attempts
        if not isinstance(error, DeliveryUnknownError):
            return error, NOT_RETRIED
        policy = RetryPolicy(attempts=2, max_elapsed=None, retry_ambiguous=True)
        again = await failure(Retrying(channel, policy).send(message))
    assert type(error) is type(again)
    return error, AMBIGUOUS if again.attempts == 2 else NOT_RETRIED


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_fault(case: Case, env: Env) -> None:
    """The channel raises the expected class for the fault, the retry layer decides as expected, and the
    message says what happened, names the service and the channel, and keeps secrets out."""
    async with case.rig(env) as channel:
        error, decision = await retry_decision(case, channel)

    assert (case.expected.__name__, case.retry) == (type(error).__name__, decision), str(error)
    text = str(error)
    assert channel.name == error.channel
    assert re.search(case.says, first_sentence(text), re.IGNORECASE), text
    assert re.search(SERVICE[case.channel], text), text
    assert "\n" not in text
    assert [] == sentinels.leaked(text + repr(error) + str(error.reply))


def test_the_matrix_covers_every_fault_kind_for_every_channel() -> None:
    """Each channel is tried with each kind of fault the brief names (where the channel can meet it)."""
    kinds = {
        "refused": r"refused connection",
        "tls": r"TLS|certificate|STARTTLS",
        "certificate": r"certificate",
        "4xx": r"4xx|throttling|\b4\d\d\b",
        "5xx": r"5xx|\b5\d\d\b",
        "throttling": r"throttling|concurrent",
        "quota": r"quota|limit",
        "dropped before": r"dropped",
        "dropped after": r"dropped connection after",
        "stall": r"stall",
        "malformed": r"malformed",
        "verify": r".",
    }
    missing = []
    for channel in SERVICE:
        for kind, pattern in kinds.items():
            found = [
                c for c in CASES
                if c.channel == channel
                and re.search(pattern, c.fault)
                and (kind != "verify" or c.operation == "verify")
                and (kind != "dropped before" or "after" not in c.fault)
            ]
            if not found:
                missing.append(f"{channel}: {kind}")
    assert [] == missing
