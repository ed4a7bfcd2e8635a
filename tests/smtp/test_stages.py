"""Every stage of an SMTP session answered with each kind of reply, a dropped connection or silence.

A scripted server answers one stage as the table says and every other stage normally; the channel must
raise the error the table names. A failure after the end of DATA must be DeliveryUnknownError: the
server may have taken the message.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from sendchannel import (
    Attachment,
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    Message,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendError,
    SmtpChannel,
    ThrottledError,
    TransientError,
)
from tests import sentinels
from tests.smtp.servers import DROP, STALL, Action, Certificates, Script, ScriptedServer

# Each network wait of the channel: a stall costs this much, and a loaded machine must not reach it by
# being slow at any step that is answered.
TIMEOUT = 1.0

# (stage, action, the error class raised (exactly))
TABLE: list[tuple[str, Action, type[SendError]]] = [
    ("greeting", "421 4.3.2 Service not available, closing transmission channel", ThrottledError),
    ("greeting", "554 5.7.1 No SMTP service here", PermanentError),
    ("greeting", DROP, ConnectionLostError),
    ("greeting", STALL, ConnectionLostError),
    ("ehlo", "421 4.7.0 Too many connections", ThrottledError),
    ("ehlo", "550 5.7.1 Invalid HELO name", PermanentError),
    ("ehlo", DROP, ConnectionLostError),
    ("ehlo", STALL, ConnectionLostError),
    ("starttls", "454 4.7.0 TLS not available due to temporary reason", ThrottledError),
    ("starttls", "451 4.3.0 Temporary server error", TransientError),
    ("starttls", "501 5.5.4 Syntax error", PermanentError),
    ("starttls", DROP, ConnectionLostError),
    ("starttls", STALL, ConnectionLostError),
    ("auth", "454 4.7.0 Temporary authentication failure", ThrottledError),
    ("auth", "535 5.7.8 Authentication credentials invalid", AuthenticationError),
    ("auth", "534 5.7.9 Application-specific password required", AuthenticationError),
    ("auth", DROP, ConnectionLostError),
    ("auth", STALL, ConnectionLostError),
    ("mail", "451 4.3.0 Temporary lookup failure", TransientError),
    ("mail", "421 4.7.0 Try again later, closing connection", ThrottledError),
    ("mail", "432 4.3.2 Concurrent connections limit exceeded", ThrottledError),
    ("mail", "550 5.7.1 Sender address rejected: not owned by user", SenderNotAllowedError),
    ("mail", "552 5.3.4 Message size exceeds fixed limit", MessageRejectedError),
    ("mail", "530 5.7.0 Authentication required", AuthenticationError),
    ("mail", "this is not SMTP", ConnectionLostError),
    ("mail", DROP, ConnectionLostError),
    ("mail", STALL, ConnectionLostError),
    ("rcpt", "550 5.1.1 User unknown", RecipientsRefusedError),
    ("rcpt", "450 4.2.0 Mailbox busy", TransientError),
    ("rcpt", "452 4.5.3 Too many recipients", ThrottledError),
    ("rcpt", "421 4.7.0 Closing connection", ThrottledError),
    ("rcpt", DROP, ConnectionLostError),
    ("rcpt", STALL, ConnectionLostError),
    ("data", "451 4.3.0 Try again", TransientError),
    ("data", "554 5.5.1 No valid recipients", MessageRejectedError),
    ("data", "250 2.0.0 Ok", ConnectionLostError),
    ("data", DROP, ConnectionLostError),
    ("data", STALL, ConnectionLostError),
    ("message", "451 4.3.0 Queue file write error", TransientError),
    ("message", "554 5.7.1 Message rejected as spam", MessageRejectedError),
    ("message", "552 5.3.4 Message too big", MessageRejectedError),
    ("message", "550 5.4.5 Daily user sending limit exceeded.", QuotaExceededError),
    ("message", "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
     QuotaExceededError),
    ("message", "354 Go ahead", DeliveryUnknownError),
    ("message", DROP, DeliveryUnknownError),
    ("message", STALL, DeliveryUnknownError),
]


def _id(row: tuple[str, Action, type[SendError]]) -> str:
    stage, action, error = row
    return f"{stage}-{action if not isinstance(action, str) else action[:12]}-{error.__name__}"


@pytest.mark.parametrize(("stage", "action", "expected"), TABLE, ids=[_id(row) for row in TABLE])
async def test_each_stage_and_answer_raises_the_classified_error(
    stage: str,
    action: Action,
    expected: type[SendError],
    certificates: Certificates,
    client_tls: ssl.SSLContext,
) -> None:
    script = Script(**{stage: action})
    async with ScriptedServer(script, certificates=certificates, tls="starttls") as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD,
                              tls_context=client_tls, timeout=TIMEOUT)
        async with channel:
            with pytest.raises(SendError) as caught:
                await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    error = caught.value
    assert expected is type(error), str(error)
    assert "smtp" == error.channel
    if isinstance(action, str) and action[:3].isdigit():
        assert action == error.reply
        assert int(action[:3]) == error.code
    if expected is RecipientsRefusedError:
        assert {"bob@example.net": action} == dict(error.rejected)
    if action is STALL:
        assert f"{TIMEOUT:g} seconds" in str(error)
    assert [] == sentinels.leaked(str(error) + repr(error))


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_a_failure_before_the_end_of_data_says_nothing_was_sent(
    stage: str, certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    async with (
        ScriptedServer(Script(**{stage: DROP}), certificates=certificates, tls="starttls") as server,
        SmtpChannel("127.0.0.1", server.port, tls_context=client_tls) as channel,
    ):
        with pytest.raises(ConnectionLostError, match="not sent"):
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert [] == server.messages


async def test_a_drop_after_the_end_of_data_may_have_delivered(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    async with (
        ScriptedServer(Script(message=DROP), certificates=certificates, tls="starttls") as server,
        SmtpChannel("127.0.0.1", server.port, tls_context=client_tls) as channel,
    ):
        with pytest.raises(DeliveryUnknownError, match="may have been delivered"):
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert 1 == len(server.messages)


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        (("PIPELINING", "8BITMIME"), ["MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]),
        (("8BITMIME",), ["MAIL", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]),
    ],
    ids=["pipelining", "one-command-at-a-time"],
)
async def test_a_refusal_at_mail_from_resets_the_envelope_and_keeps_the_connection(
    extensions: tuple[str, ...], expected: list[str]
) -> None:
    script = Script(mail=["550 5.7.1 Sender rejected", "250 2.1.0 Ok"], extensions=extensions)
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(SenderNotAllowedError, match=r"app@example\.com"):
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
        await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    verbs = [command.split(" ")[0] for command in server.commands]
    assert expected == verbs[verbs.index("MAIL") :]
    assert 1 == server.connections


@pytest.mark.parametrize("extensions", [("PIPELINING",), ()], ids=["pipelining", "one-at-a-time"])
async def test_partial_refusal_is_read_right_with_and_without_pipelining(extensions: tuple[str, ...]) -> None:
    rcpt = {"x@example.net": "550 5.1.1 no such user", "*": "250 2.1.5 Ok"}
    script = Script(rcpt=rcpt, extensions=extensions)
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(
            Message("app@example.com", ["a@example.net", "x@example.net", "b@example.net"], text="hi\n")
        )
    assert ("a@example.net", "b@example.net") == result.accepted
    assert {"x@example.net": "550 5.1.1 no such user"} == dict(result.rejected)
    assert 1 == len(server.messages)


async def test_without_pipelining_data_is_not_sent_when_every_recipient_is_refused() -> None:
    script = Script(rcpt="550 5.1.1 no such user", extensions=("8BITMIME",))
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(RecipientsRefusedError):
            await channel.send(Message("app@example.com", ["x@example.net", "y@example.net"], text="hi\n"))
    verbs = [command.split(" ")[0] for command in server.commands]
    assert ["MAIL", "RCPT", "RCPT", "RSET", "QUIT"] == verbs[verbs.index("MAIL") :]


async def test_a_421_closes_that_connection_and_the_next_send_opens_another(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    script = Script(mail=["421 4.7.0 Try again later, closing connection", "250 2.1.0 Ok"])
    async with (
        ScriptedServer(script, certificates=certificates, tls="starttls") as server,
        SmtpChannel("127.0.0.1", server.port, tls_context=client_tls) as channel,
    ):
        with pytest.raises(ThrottledError):
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
        await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert 2 == server.connections
    assert "RSET" not in server.commands


async def test_a_reply_that_asks_for_a_wait_sets_retry_after(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    script = Script(mail="450 4.7.1 Rate limited, try again in 5 minutes")
    async with (
        ScriptedServer(script, certificates=certificates, tls="starttls") as server,
        SmtpChannel("127.0.0.1", server.port, tls_context=client_tls) as channel,
    ):
        with pytest.raises(ThrottledError) as caught:
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert 300.0 == caught.value.retry_after


async def test_helo_is_used_when_a_plaintext_server_has_no_ehlo() -> None:
    async with (
        ScriptedServer(Script(ehlo="502 5.5.1 EHLO not implemented")) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert ["EHLO", "HELO", "MAIL"] == [c.split(" ")[0] for c in server.commands[:3]]


async def test_a_server_that_stops_reading_the_message_times_out_as_not_sent() -> None:
    """The end of DATA never left the client, so the server cannot have taken the message."""
    big = Message("app@example.com", ["bob@example.net"], text="hi\n",
                  attachments=[Attachment("big.bin", bytes(range(256)) * 80_000)])
    async with (
        ScriptedServer(Script(read_data=False, extensions=("PIPELINING",))) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none", timeout=TIMEOUT) as channel,
    ):
        with pytest.raises(ConnectionLostError, match="did not answer DATA within"):
            await channel.send(big)


async def test_a_large_message_is_sent_in_full() -> None:
    big = Message("app@example.com", ["bob@example.net"], text="hi\n",
                  attachments=[Attachment("big.bin", bytes(range(256)) * 40_000)])
    async with (
        ScriptedServer(Script(extensions=("PIPELINING", "SIZE 50000000"))) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none", timeout=5) as channel,
    ):
        await channel.send(big)
    assert big.as_bytes() == server.messages[0]


async def test_a_send_cancelled_mid_transaction_does_not_spoil_the_next() -> None:
    script = Script(mail=[STALL, "250 2.1.0 Ok"])
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1) as channel,
    ):
        first = Message("app@example.com", ["bob@example.net"], text="1\n")
        task = asyncio.ensure_future(channel.send(first))
        for _ in range(3000):  # until the server has MAIL and stalls on it (at most about 30 s)
            if any(command.startswith("MAIL") for command in server.commands):
                break
            await asyncio.sleep(0.01)
        assert any(command.startswith("MAIL") for command in server.commands)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await channel.send(Message("app@example.com", ["bob@example.net"], text="2\n"))
    assert (2, 1) == (server.connections, len(server.messages))
