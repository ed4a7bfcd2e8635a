"""Bad answers from providers: every parser gives a documented SendError with a sentence, and never hangs.

* SMTP: the reply classifier called on arbitrary codes, enhanced codes and texts at every stage (with the
  generic and the Office 365 tables), and arbitrary reply bytes (multi-line, malformed, huge, invalid
  UTF-8) sent by a raw SMTP server on 127.0.0.1 at each stage of a real SmtpChannel session.
* Gmail: Google's error answers (any status, JSON of any shape or not JSON, odd Retry-After) read by
  ``_read_answer`` and ``_classify`` directly, and sent by the local Gmail API server to Google's client.
* SparkPost: any status with JSON bodies of odd shapes (errors lists, results with odd counts), not
  JSON, and odd Retry-After, sent by the local SparkPost server to SparkpostChannel over aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sendchannel import GmailOAuthChannel, Message, SendResult, SmtpChannel, SparkpostChannel, errors
from sendchannel._gmail._answers import classify as _classify
from sendchannel._gmail._answers import read_answer as _read_answer
from sendchannel._http import parse_retry_after
from sendchannel._smtp._classify import SMTP_RULES, Reply, ReplyContext, Stage, classify_reply
from sendchannel._smtp._office365 import OFFICE365_RULES
from sendchannel.errors import SendError
from tests.gmail.conftest import user_credentials
from tests.gmail.server import GmailServer
from tests.reliability._badinput import LoopThread, TookTooLong, hostile_text, time_limit
from tests.smtp.servers import Action, Script, ScriptedServer
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer

ACCOUNT = "alice@example.com"


def module_fixtures(**options: Any) -> settings:
    """Settings for tests that share module-scoped servers between examples."""
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture], **options)


#: The errors a send may raise, as documented in sendchannel.errors.
DOCUMENTED = (
    errors.TransientError,
    errors.ThrottledError,
    errors.ConnectionLostError,
    errors.PermanentError,
    errors.AuthenticationError,
    errors.SenderNotAllowedError,
    errors.RecipientsRefusedError,
    errors.MessageRejectedError,
    errors.QuotaExceededError,
    errors.DeliveryUnknownError,
)


def check_error(error: BaseException) -> SendError:
    """``error`` is a documented SendError whose message is a printable sentence and whose wait is sane."""
    assert type(error) in DOCUMENTED, f"undocumented error {type(error).__name__}: {error!r}"
    assert isinstance(error, SendError)
    text = str(error)
    assert text.strip(), "an error without a message"
    assert not text[0].isspace(), f"the message starts with a blank: {text[:80]!r}"
    text.encode("utf-8")  # printable by any log handler or terminal
    assert "\r" not in text, f"a CR in the message: {text[:80]!r}"
    assert "\n" not in text, f"an LF in the message: {text[:80]!r}"
    if error.retry_after is not None:
        assert math.isfinite(error.retry_after), f"retry_after is {error.retry_after}"
        assert error.retry_after >= 0
    event(type(error).__name__)
    return error


def message() -> Message:
    return Message(ACCOUNT, ["bob@example.net", "carol@example.net"], subject="Hi", text="Hello.")


# -- SMTP: the classifier ---------------------------------------------------------------------------------

digits = st.integers(0, 9).map(str)
enhanced_codes = st.one_of(
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c}", st.sampled_from("245"), st.integers(0, 999), st.integers(0, 999)
    ),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", digits, st.integers(0, 10**6), st.integers(0, 10**30)),
    st.sampled_from(
        [
            "5.7.139",
            "4.7.500",
            "5.4.5",
            "5.2.0",
            "4.3.2",
            "5.7.60",
            "4.5.3",
            "5.7.9",
            "5.7.11",
            "5.3.4",
            "5.2.3",
            "5.5.2",
            "5..1",
            "5.7.",
            ".7.1",
            "5.7.1.1",
        ]
    ),
)
KEYWORDS = [
    "daily",
    "quota",
    "limit",
    "SubmissionQuotaExceeded",
    "TLS 1.0",
    "TLS version",
    "STARTTLS",
    "too many recipients",
    "application-specific password",
    "app password",
    "try again in 30 seconds",
    "retry in 99999999999999999999999999999999999999999999 hours",
    "wait 1" + "0" * 400 + " s",
    "queued as ABC123",
    "id=x",
    "InternalId=5",
    "SendAsDenied",
    "RecipientNotFound",
]
reply_texts = st.lists(
    st.one_of(enhanced_codes, st.sampled_from(KEYWORDS), hostile_text, st.text(max_size=20)), max_size=6
).map(" ".join)
# What the session does with a multi-line reply before classifying it: lines joined by blanks.
reply_texts = reply_texts.map(lambda text: " ".join(text.split("\n")).strip())
contexts = st.builds(
    ReplyContext,
    server=st.just("smtp.example.com:587"),
    channel=st.sampled_from(["smtp", "office365", None]),
    username=st.sampled_from([None, "alice@contoso.com"]),
    sender=st.sampled_from([None, ACCOUNT]),
    credential=st.sampled_from([None, "password", "token"]),
)


@settings(max_examples=500)
@given(
    code=st.one_of(
        st.integers(-1, 999), st.sampled_from([250, 354, 421, 432, 450, 452, 454, 530, 535, 550, 554])
    ),
    text=reply_texts,
    stage=st.sampled_from(list(Stage)),
    context=contexts,
    office365=st.booleans(),
)
def test_the_smtp_classifier_gives_a_documented_error_for_any_reply(
    code: int, text: str, stage: Stage, context: ReplyContext, office365: bool
) -> None:
    rules = OFFICE365_RULES + SMTP_RULES if office365 else SMTP_RULES
    with time_limit(5, "classify_reply"):
        error = classify_reply(Reply(code, text), stage, context, rules)
    check_error(error)
    assert (code if code > 0 else None) == error.code


# -- SMTP: arbitrary reply bytes from a real server --------------------------------------------------------


class RawScriptedServer(ScriptedServer):
    """The project's scripted SMTP server, also answering with raw bytes (invalid UTF-8, no CRLF...)."""

    async def _answer(self, writer: asyncio.StreamWriter, action: Action | bytes) -> bool:  # type: ignore[override]
        if isinstance(action, bytes):
            writer.write(action)
            await writer.drain()
            return True
        return await super()._answer(writer, action)


reply_codes = st.one_of(
    st.sampled_from([b"250", b"354", b"421", b"451", b"452", b"550", b"554", b"221", b"220"]),
    st.binary(min_size=0, max_size=4),
    st.integers(0, 999).map(lambda n: b"%03d" % n),
)
reply_lines = st.builds(
    lambda code, separator, text, end: code + separator + text + end,
    reply_codes,
    st.sampled_from([b" ", b"-", b"", b"x", b"\t"]),
    st.one_of(st.binary(max_size=40), reply_texts.map(lambda t: t.encode("utf-8", "surrogatepass"))),
    st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r\n\r\n"]),
)
raw_replies = st.one_of(
    st.lists(reply_lines, min_size=1, max_size=4).map(b"".join),
    st.just(b"250-" + b"x" * 70_000 + b"\r\n250 ok\r\n"),
    st.just(b"250-ok\r\n" * 3000 + b"250 ok\r\n"),
    st.just(b"\xff\xfe\x00\r\n"),
)
SMTP_STAGES = ["greeting", "ehlo", "mail", "rcpt", "data", "message", "rset"]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def raw_smtp(loop: LoopThread) -> Iterator[RawScriptedServer]:
    server = RawScriptedServer()
    loop.run(server.start())
    yield server
    loop.run(server.stop())


async def _send_once(port: int, mail: Message) -> SendResult:
    async with SmtpChannel("127.0.0.1", port, tls="none", timeout=0.5) as channel:
        return await channel.send(mail)


@module_fixtures(max_examples=300)
@given(stage=st.sampled_from(SMTP_STAGES), reply=raw_replies)
def test_any_smtp_reply_bytes_at_any_stage_give_a_result_or_a_documented_error(
    loop: LoopThread, raw_smtp: RawScriptedServer, stage: str, reply: bytes
) -> None:
    script = Script()
    if stage == "greeting":
        script.greeting = reply  # type: ignore[assignment]
    else:
        setattr(script, stage, reply)
    raw_smtp.script = script
    try:
        result = loop.run(_send_once(raw_smtp.port, message()), timeout=10)
    except TookTooLong:
        raise
    except BaseException as exc:  # anything but a documented SendError fails the check below
        check_error(exc)
    else:
        event("sent")
        assert message().recipients == result.accepted + tuple(result.rejected)


# -- Gmail ---------------------------------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b'{"error": ' + b"[" * depth + b"]" * depth + b"}"


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), hostile_text, st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
REASONS = [
    "dailyLimitExceeded",
    "userRateLimitExceeded",
    "rateLimitExceeded",
    "insufficientPermissions",
    "domainPolicy",
    "failedPrecondition",
    "invalidArgument",
    "authError",
    "backendError",
]
google_errors = st.fixed_dictionaries(
    {},
    optional={
        "code": json_values,
        "message": st.one_of(
            json_values,
            st.sampled_from(
                [
                    "Daily user sending quota exceeded.",
                    "User-rate limit exceeded. Retry after 2099-01-01T00:00:00Z (Mail sending)",
                    "Retry after 9999-99-99T99:99:99Z",
                    "Delegation denied",
                ]
            ),
        ),
        "errors": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries({}, optional={"reason": st.sampled_from(REASONS) | json_values}),
                max_size=3,
            ),
        ),
        "details": json_values,
        "status": st.one_of(json_values, st.sampled_from(["RESOURCE_EXHAUSTED", "PERMISSION_DENIED"])),
    },
)
google_bodies = st.one_of(
    st.builds(lambda error: json.dumps({"error": error}).encode(), google_errors),
    st.builds(
        lambda error, description: json.dumps({"error": error, "error_description": description}).encode(),
        st.sampled_from(["invalid_grant", "invalid_token"]) | json_values,
        json_values,
    ),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=60),
    st.just(_deep(100_000)),
    st.just(b"<html><body>502 Bad Gateway</body></html>"),
)
retry_after_values = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "120",
            "0",
            "-5",
            "1.5",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "9" * 400,
            "١٢٣",
            "",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 0001 00:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "tomorrow",
            "30, 60",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
#: What an HTTP server can send in a header (latin-1, no line break).
http_retry_after = retry_after_values.filter(lambda v: v is None or v.isascii())
statuses = st.one_of(
    st.integers(200, 599), st.sampled_from([400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504])
)


def _http_error(status: int, body: bytes, retry_after: str | None) -> HttpError:
    headers = {"status": str(status), "content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return HttpError(
        httplib2.Response(headers), body, uri="https://gmail.googleapis.com/gmail/v1/users/me/messages/send"
    )


@settings(max_examples=400)
@given(
    status=statuses.filter(lambda s: s >= 300),
    body=google_bodies,
    retry_after=retry_after_values,
    operation=st.sampled_from(["send", "profile", "send-as"]),
)
def test_the_gmail_answer_parser_gives_a_documented_error_for_any_answer(
    status: int, body: bytes, retry_after: str | None, operation: str
) -> None:
    try:
        failure = _http_error(status, body, retry_after)
    except Exception:  # Google's client cannot build its own error for it: covered through the server below
        event("googleapiclient's HttpError cannot read this body")
        return
    with time_limit(5, "reading Google's answer"):
        answer = _read_answer(failure, 1_700_000_000.0)
        error = _classify(
            answer, account=ACCOUNT, operation=operation, now=1_700_000_000.0, scrub=lambda t: t
        )
    check_error(error)
    assert status == error.code


@given(retry_after_values)
def test_gmail_retry_after_is_none_or_a_finite_wait(value: str | None) -> None:
    wait = parse_retry_after(value, now=1_700_000_000.0)
    assert wait is None or (math.isfinite(wait) and wait >= 0)


@pytest.fixture(scope="module")
def gmail(loop: LoopThread) -> Iterator[tuple[GmailServer, GmailOAuthChannel]]:
    with GmailServer(ACCOUNT) as server:

        async def make() -> GmailOAuthChannel:
            return GmailOAuthChannel(
                user_credentials(server), address=ACCOUNT, api_endpoint=server.url, timeout=5
            )

        channel = loop.run(make())
        yield server, channel
        loop.run(channel.aclose())


@module_fixtures(max_examples=150)
@given(status=statuses, body=google_bodies, retry_after=http_retry_after)
def test_any_gmail_api_answer_through_googles_client_gives_a_result_or_a_documented_error(
    loop: LoopThread,
    gmail: tuple[GmailServer, GmailOAuthChannel],
    status: int,
    body: bytes,
    retry_after: str | None,
) -> None:
    server, channel = gmail
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    server.fail_next(status, body, headers=headers, times=2)  # a 401 is asked again once after a refresh
    try:
        result = loop.run(channel.send(message()), timeout=15)
    except TookTooLong:
        raise
    except BaseException as exc:
        check_error(exc)
    else:
        event(f"sent ({status})")
        assert 200 <= status < 300
        assert message().recipients == result.accepted
    finally:
        server._script.clear()


# -- SparkPost -----------------------------------------------------------------------------------------

counts = st.one_of(
    st.integers(-2, 5), st.none(), st.text(max_size=3), st.floats(), st.booleans(), json_values
)
sparkpost_errors = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "message": json_values
                | st.sampled_from(["Exceed Sending Limit (hourly)", "Exceed Sending Limit (daily)"]),
                "description": json_values | st.just("recipient address was suppressed due to system policy"),
                "code": st.sampled_from(
                    [
                        "1100",
                        "1300",
                        "1400",
                        "1500",
                        "1900",
                        "1901",
                        "1902",
                        "2000",
                        "2101",
                        "2102",
                        "2103",
                        "2105",
                        "3000",
                        "5002",
                        "7000",
                        "7001",
                    ]
                )
                | json_values,
            },
        ),
        json_values,
    ),
    max_size=3,
)
sparkpost_results = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "total_accepted_recipients": counts,
        "total_rejected_recipients": counts,
        "rcpt_to_errors": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries(
                    {
                        "message": st.sampled_from(
                            ["invalid recipient bob@example.net", "invalid carol@example.net"]
                        )
                        | json_values,
                        "code": st.just("1300") | json_values,
                    }
                ),
                max_size=3,
            ),
        ),
    },
)
sparkpost_bodies = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"errors": sparkpost_errors | json_values, "results": sparkpost_results | json_values}
    ).map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=60),
    st.just(b"[" * 100_000 + b"]" * 100_000),
)


@pytest.fixture(scope="module")
def sparkpost(loop: LoopThread) -> Iterator[tuple[SparkpostServer, SparkpostChannel]]:
    server = SparkpostServer().start()

    async def make() -> SparkpostChannel:
        return SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, timeout=5.0)

    channel = loop.run(make())
    yield server, channel
    loop.run(channel.aclose())
    server.stop()


@module_fixtures(max_examples=100)
@given(
    status=statuses,
    body=sparkpost_bodies,
    retry_after=http_retry_after,
    operation=st.sampled_from(["send", "verify"]),
)
def test_any_sparkpost_answer_gives_a_result_or_a_documented_error(
    loop: LoopThread,
    sparkpost: tuple[SparkpostServer, SparkpostChannel],
    status: int,
    body: bytes,
    retry_after: str | None,
    operation: str,
) -> None:
    server, channel = sparkpost
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    server.script(Answer(status, headers=headers, raw=body))
    call: Any = channel.send(message()) if operation == "send" else channel.verify()
    try:
        result = loop.run(call, timeout=15)
    except TookTooLong:
        raise
    except BaseException as exc:
        check_error(exc)
    else:
        event(f"{operation} succeeded ({status})")
        if operation == "send":
            assert status == 200
            assert set(message().recipients) == set(result.accepted) | set(result.rejected)
    finally:
        server._script.clear()
