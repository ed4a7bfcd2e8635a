"""The reply table: real replies from Gmail, Postfix and Office 365, and properties over any reply."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sendchannel import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel._smtp._classify import SMTP_RULES, Reply, ReplyContext, Stage, classify_reply, queue_id, rule
from sendchannel._smtp._office365 import OFFICE365_RULES

S = Stage
PASSWORD = ReplyContext("smtp.example.com:587", "smtp", "bob@example.com", "app@example.com", "password")
TOKEN = ReplyContext("smtp.example.com:587", "smtp", "bob@example.com", "app@example.com", "token")
O365 = OFFICE365_RULES + SMTP_RULES


def _split(reply: str) -> Reply:
    return Reply(int(reply[:3]), reply[4:])


# (reply as the server sent it, stage, error class, a fragment the explanation must contain)
GENERIC: list[tuple[str, Stage, type[SendError], str]] = [
    # Gmail
    ("535 5.7.8 Username and Password not accepted. For more information, go to "
     "https://support.google.com/mail/?p=BadCredentials", S.AUTH, AuthenticationError,
     "username and password"),
    ("534 5.7.9 Application-specific password required.", S.AUTH, AuthenticationError, "app password"),
    ("454 4.7.0 Too many login attempts, please try again later.", S.AUTH, ThrottledError, "right now"),
    ("530 5.7.0 Must issue a STARTTLS command first.", S.MAIL, PermanentError, "tls='starttls'"),
    ("550 5.4.5 Daily user sending limit exceeded.", S.MESSAGE, QuotaExceededError, "rolling 24"),
    ("421 4.7.0 Try again later, closing connection. (EHLO)", S.EHLO, ThrottledError,
     "closed the connection"),
    ("452 4.5.3 Your message has too many recipients.", S.RCPT, ThrottledError, "fewer recipients"),
    ("552 5.3.4 Your message exceeded Google's message size limits.", S.MESSAGE, MessageRejectedError,
     "too large"),
    ("555 5.5.2 Syntax error.", S.MAIL, MessageRejectedError, "did not understand"),
    ("550 5.7.1 Our system has detected an unusual rate of unsolicited mail.", S.MESSAGE,
     MessageRejectedError, "policy"),
    # Postfix
    ("535 5.7.8 Error: authentication failed: authentication failure", S.AUTH, AuthenticationError,
     "bob@example.com"),
    ("452 4.3.1 Insufficient system storage", S.MAIL, TransientError, "temporary"),
    ("552 5.3.4 Message size exceeds fixed limit", S.MESSAGE, MessageRejectedError, "too large"),
    ("553 5.7.1 <app@example.com>: Sender address rejected: not owned by user bob", S.MAIL,
     SenderNotAllowedError, "app@example.com"),
    ("421 4.4.2 mail.example.com Error: timeout exceeded", S.MAIL, ThrottledError, "closed the connection"),
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", S.GREETING,
     PermanentError, "refused the connection"),
    ("504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname", S.EHLO, PermanentError,
     "local_hostname"),
    ("530 5.7.0 Authentication required", S.MAIL, AuthenticationError, "requires authentication"),
    ("538 5.7.11 Encryption required for requested authentication mechanism", S.AUTH, AuthenticationError,
     "encryption"),
    # Office 365 replies a generic SmtpChannel still reads right
    ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message "
     "due to a permanent exception", S.MESSAGE, QuotaExceededError, "10,000"),
    ("432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending",
     S.MAIL, ThrottledError, "concurrent"),
    ("421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.",
     S.EHLO, PermanentError, "TLS 1.2"),
]

OFFICE365: list[tuple[str, Stage, ReplyContext, type[SendError], str]] = [
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit "
     "https://aka.ms/smtp_auth_disabled for more information.", S.AUTH, PASSWORD, AuthenticationError,
     "token_provider"),
    ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults "
     "policy.", S.AUTH, PASSWORD, AuthenticationError, "security defaults"),
    ("535 5.7.3 Authentication unsuccessful [BN8PR04CA0000.namprd04.prod.outlook.com]", S.AUTH, PASSWORD,
     AuthenticationError, "password changed recently"),
    ("535 5.7.3 Authentication unsuccessful [BN8PR04CA0000.namprd04.prod.outlook.com]", S.AUTH, TOKEN,
     AuthenticationError, "SMTP.SendAsApp"),
    ("550 5.7.30 Basic authentication is not supported for Client Submission.", S.AUTH, PASSWORD,
     AuthenticationError, "token_provider"),
    ("530 5.7.57 Client not authenticated to send mail. [SN7PR04MB0000]", S.MAIL, PASSWORD,
     AuthenticationError, "not signed in"),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender [BY2PR1001MB1094]", S.MESSAGE,
     PASSWORD, SenderNotAllowedError, "Send As"),
    ("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
     "process message due to a permanent exception", S.MESSAGE, PASSWORD, SenderNotAllowedError, "Send As"),
    ("550 5.7.1 Client does not have permission to send as this sender (SendAsDenied)", S.MESSAGE, PASSWORD,
     SenderNotAllowedError, "app@example.com"),
    ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message "
     "due to a permanent exception with message", S.MESSAGE, PASSWORD, QuotaExceededError, "10,000"),
    ("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", S.MESSAGE, PASSWORD, ThrottledError,
     "3 concurrent"),
    ("421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.",
     S.GREETING, PASSWORD, PermanentError, "TLS 1.2"),
    ("554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException."
     "MapiExceptionShutoffQuotaExceeded", S.MESSAGE, PASSWORD, QuotaExceededError, "Sent Items"),
    ("550 5.2.251 Sender throttled due to continuous mailbox full errors.", S.MAIL, PASSWORD,
     QuotaExceededError, "paused"),
    ("550 5.2.252 Sender throttled due to continuous send as denied errors.", S.MAIL, PASSWORD,
     SenderNotAllowedError, "Send As"),
    ("550 5.2.253 Sender throttled due to continuous invalid license errors.", S.MAIL, PASSWORD,
     PermanentError, "licence"),
    ("550 5.2.254 Sender throttled due to continuous too many recipients errors.", S.MAIL, PASSWORD,
     MessageRejectedError, "500 recipients"),
    ("550 5.2.255 Sender throttled due to continuous invalid recipients errors.", S.MAIL, PASSWORD,
     MessageRejectedError, "do not exist"),
    ("451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)", S.MAIL, PASSWORD,
     ThrottledError, "try again later"),
    ("450 4.7.699 Try again later", S.RCPT, PASSWORD, ThrottledError, "try again later"),
    ("550 5.1.8 Access denied, bad outbound sender", S.MAIL, PASSWORD, SenderNotAllowedError,
     "Restricted entities"),
    ("550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", S.GREETING,
     PASSWORD, PermanentError, "IP address"),
    ("550 5.7.705 Access denied, tenant has exceeded threshold", S.MAIL, PASSWORD, PermanentError, "tenant"),
]


@pytest.mark.parametrize(("text", "stage", "expected", "fragment"), GENERIC)
def test_real_replies_are_classified_by_the_generic_table(
    text: str, stage: Stage, expected: type[SendError], fragment: str
) -> None:
    error = classify_reply(_split(text), stage, PASSWORD)
    assert expected is type(error), str(error)
    assert fragment in str(error)
    assert text == error.reply
    assert int(text[:3]) == error.code
    assert text.split(" ")[1] == error.enhanced_code


@pytest.mark.parametrize(("text", "stage", "context", "expected", "fragment"), OFFICE365)
def test_real_office365_replies_are_classified_with_cause_and_remedy(
    text: str, stage: Stage, context: ReplyContext, expected: type[SendError], fragment: str
) -> None:
    error = classify_reply(_split(text), stage, context, O365)
    assert expected is type(error), str(error)
    assert fragment in str(error)
    assert text == error.reply
    assert "smtp" == error.channel


def test_the_office365_table_names_the_mailbox_and_sender() -> None:
    error = classify_reply(
        _split("550 5.7.60 SMTP; Client does not have permissions to send as this sender"),
        S.MESSAGE,
        PASSWORD,
        O365,
    )
    assert str(error).startswith(
        "Office 365 does not let bob@example.com send as app@example.com (550 5.7.60 SMTP; Client"
    )


def test_a_wait_named_in_the_reply_becomes_retry_after() -> None:
    error = classify_reply(_split("421 4.7.0 Too busy, try again in 30 seconds"), S.MAIL, PASSWORD)
    assert 30.0 == error.retry_after
    assert None is classify_reply(_split("421 4.7.0 Too busy"), S.MAIL, PASSWORD).retry_after


def test_rules_match_enhanced_code_ranges_and_stages() -> None:
    table = (
        rule(ThrottledError, "a", enhanced="4.7.500-699", stages=(S.MAIL,)),
        rule(MessageRejectedError, "b", code="5xx"),
    )
    assert "a" == str(classify_reply(Reply(451, "4.7.650 later"), S.MAIL, PASSWORD, table))
    assert "a" != str(classify_reply(Reply(451, "4.7.700 later"), S.MAIL, PASSWORD, table))
    assert "a" != str(classify_reply(Reply(451, "4.7.650 later"), S.RCPT, PASSWORD, table))
    assert MessageRejectedError is type(classify_reply(Reply(550, "no"), S.RCPT, PASSWORD, table))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.0 Ok: queued as 4Xy9Zz1Lk2", "4Xy9Zz1Lk2"),
        ("OK id=1sAbCd-000123-4E", "1sAbCd-000123-4E"),
        ("2.0.0 OK  1732640000 d9443c01a7336-21f2c1b1a2bsi12345pfb.123 - gsmtp",
         "d9443c01a7336-21f2c1b1a2bsi12345pfb.123"),
        ("2.0.0 OK <abc@example.com> [Hostname=SN7PR04MB0000] [InternalId=123456789]", "123456789"),
        ("OK", None),
    ],
)
def test_queue_id_is_read_from_common_final_replies(text: str, expected: str | None) -> None:
    assert expected == queue_id(text)


# -- properties over any reply ----------------------------------------------------------------------

plain_text = st.text(alphabet=string.ascii_letters + string.digits + " .,;:<>@[]()-", max_size=80)
enhanced_codes = st.one_of(
    st.just(""),
    st.builds(lambda a, b: f"{{}}.{a}.{b} ", st.integers(0, 9), st.integers(0, 999)),
)
stages = st.sampled_from(list(Stage))
tables = st.sampled_from([SMTP_RULES, O365])
contexts = st.sampled_from([PASSWORD, TOKEN])


def _reply(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, (enhanced.format(str(code)[0]) + text).strip())


@given(st.integers(400, 499), enhanced_codes, plain_text, stages, tables, contexts)
def test_any_4xx_reply_is_worth_retrying(
    code: int, enhanced: str, text: str, stage: Stage, table: tuple, context: ReplyContext  # type: ignore[type-arg]
) -> None:
    reply = _reply(code, enhanced, text)
    assume("tls" not in text.lower() and ".7.66" not in str(reply))
    error = classify_reply(reply, stage, context, table)
    assert isinstance(error, TransientError), str(error)
    assert error.transient


@given(st.integers(500, 599), enhanced_codes, plain_text, stages, tables, contexts)
def test_no_5xx_reply_is_worth_retrying(
    code: int, enhanced: str, text: str, stage: Stage, table: tuple, context: ReplyContext  # type: ignore[type-arg]
) -> None:
    error = classify_reply(_reply(code, enhanced, text), stage, context, table)
    assert not error.transient, str(error)
    assert not isinstance(error, DeliveryUnknownError)


@given(st.integers(-1, 399), plain_text, stages, tables)
def test_a_reply_that_fits_no_command_is_lost_or_unknown(
    code: int, text: str, stage: Stage, table: tuple  # type: ignore[type-arg]
) -> None:
    error = classify_reply(Reply(code, text), stage, PASSWORD, table)
    expected = DeliveryUnknownError if stage is Stage.MESSAGE else ConnectionLostError
    assert expected is type(error)


@given(st.integers(-1, 999), enhanced_codes, plain_text, stages, tables, contexts)
def test_every_error_keeps_the_reply_and_quotes_it(
    code: int, enhanced: str, text: str, stage: Stage, table: tuple, context: ReplyContext  # type: ignore[type-arg]
) -> None:
    reply = _reply(code, enhanced, text)
    error = classify_reply(reply, stage, context, table)
    assert str(reply) == error.reply
    assert str(reply) in str(error)
    assert (code if code > 0 else None) == error.code
    assert "smtp" == error.channel
