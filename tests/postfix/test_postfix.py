"""SmtpChannel against a real Postfix smtpd (private instance; skipped without root or the packages).

Postfix is the server most SMTP clients meet and the one whose behaviour issue 12 was found on: delayed
rejections (a refused sender answered at RCPT), 452 4.5.3 past smtpd_recipient_limit, anvil rate limits
that count every refused command, and waits named in access-table replies.
"""

from __future__ import annotations

import re
import ssl
import time

import pytest

from sendchannel import (
    AuthenticationError,
    Message,
    MessageRejectedError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SmtpChannel,
    ThrottledError,
    TransientError,
)
from tests import sentinels
from tests.postfix.conftest import LOGIN
from tests.postfix.instance import PostfixInstance


def channel(
    postfix: PostfixInstance, tls_context: ssl.SSLContext, *, tls: str = "starttls", **options: object
) -> SmtpChannel:
    port = postfix.port if tls == "starttls" else postfix.smtps_port
    fields: dict[str, object] = {"username": LOGIN, "password": sentinels.PASSWORD, "timeout": 30.0}
    fields.update(options)
    return SmtpChannel("127.0.0.1", port, tls=tls, tls_context=tls_context,  # type: ignore[arg-type]
                       local_hostname="client.localhost", **fields)


def trace_headers_removed(delivered: bytes) -> bytes:
    """A delivered Maildir file without the trace headers Postfix prepends (Return-Path, X-Original-To,
    Delivered-To, Received)."""
    lines = delivered.split(b"\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith((b"Return-Path:", b"X-Original-To:", b"Delivered-To:", b"Received:")):
            index += 1
            while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
                index += 1
        else:
            break
    return b"\n".join(lines[index:])


def lf(data: bytes) -> bytes:
    """Maildir keeps LF line ends; DATA carries CRLF."""
    return data.replace(b"\r\n", b"\n")


def unique(prefix: str) -> str:
    return f"{prefix} {time.monotonic_ns()}"


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_message_arrives_byte_for_byte_after_postfixs_trace_headers(
    postfix: PostfixInstance, client_tls: ssl.SSLContext, tls: str
) -> None:
    """Through STARTTLS or implicit TLS with AUTH: Postfix stores exactly Message.as_bytes()."""
    before = len(postfix.delivered("bob"))
    message = Message(
        "Shop <sender@example.net>", ["Bob <bob@example.net>"], subject=unique("Größe"),
        text="Hello Bob,\n.leading dot\nand a line of 80 characters: " + "x" * 50 + "\n",
        html="<p>Hello <b>Bob</b></p>",
    )
    async with channel(postfix, client_tls, tls=tls) as smtp:
        result = await smtp.send(message)
    assert ("Bob <bob@example.net>",) == result.accepted or ("bob@example.net",) == result.accepted
    delivered = postfix.wait_delivered("bob", before + 1)[before:]
    assert [lf(message.as_bytes())] == [trace_headers_removed(d) for d in delivered]
    assert result.provider_id is not None
    assert result.provider_id in postfix.log()


async def test_recipients_past_smtpd_recipient_limit_all_get_the_message(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    """8 recipients, smtpd_recipient_limit=5: Postfix answers 452 4.5.3 for 3; they follow in a second
    transaction on the same connection, and the result lists all 8 as accepted."""
    recipients = [f"r{index}@example.net" for index in range(8)]
    before = {r: len(postfix.delivered(r.split("@")[0])) for r in recipients}
    sessions = len(postfix.sessions())
    message = Message("sender@example.net", recipients, subject=unique("limit"), text="hi\n")
    async with channel(postfix, client_tls) as smtp:
        result = await smtp.send(message)
    assert tuple(recipients) == result.accepted
    assert {} == dict(result.rejected)
    for recipient in recipients:
        box = recipient.split("@")[0]
        delivered = postfix.wait_delivered(box, before[recipient] + 1)
        assert before[recipient] + 1 == len(delivered), recipient
        assert lf(message.as_bytes()) == trace_headers_removed(delivered[-1])
    # One session, two transactions: 8 RCPTs (5 accepted, 3 answered 452 4.5.3), then those 3 again.
    # (Postfix does not count its 452 as a failed RCPT.)
    session = postfix.sessions(at_least=sessions + 1)[sessions:]
    assert 1 == len(session), session
    assert " mail=2 rcpt=11 data=2 " in session[0], session[0]
    assert result.provider_id is not None
    assert result.provider_id in postfix.log()


async def test_mixed_refusals_are_reported_as_postfix_answered(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    message = Message(
        "sender@example.net", ["carol@example.net", "nobody@example.net", "refused@example.net"],
        subject=unique("mixed"), text="hi\n",
    )
    async with channel(postfix, client_tls) as smtp:
        result = await smtp.send(message)
    assert ("carol@example.net",) == result.accepted
    assert {"nobody@example.net", "refused@example.net"} == set(result.rejected)
    assert re.match(r"550 5\.1\.1 <nobody@example\.net>: Recipient address rejected: User unknown",
                    result.rejected["nobody@example.net"])
    assert re.match(r"554 5\.7\.1 <refused@example\.net>: Recipient address rejected: Access denied",
                    result.rejected["refused@example.net"])


async def test_a_wait_postfix_names_at_rcpt_becomes_retry_after(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    """An access table answering "450 4.2.1 Mailbox busy, try again in 2 minutes" for the only recipient."""
    message = Message("sender@example.net", ["busy@example.net"], subject=unique("busy"), text="hi\n")
    async with channel(postfix, client_tls) as smtp:
        with pytest.raises(TransientError) as caught:
            await smtp.send(message)
    assert 120.0 == caught.value.retry_after
    assert 450 == caught.value.code
    assert "4.2.1" == caught.value.enhanced_code


async def test_a_sender_postfix_refuses_at_rcpt_is_sender_not_allowed(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    """smtpd_delay_reject=yes (the default): check_sender_access refuses in the reply to RCPT TO."""
    message = Message("blocked@example.com", ["bob@example.net", "carol@example.net"],
                      subject=unique("blocked"), text="hi\n")
    async with channel(postfix, client_tls) as smtp:
        with pytest.raises(SenderNotAllowedError) as caught:
            await smtp.send(message)
    error = caught.value
    assert 554 == error.code
    assert "Sender address rejected: Access denied" in str(error)
    assert {"bob@example.net", "carol@example.net"} == set(error.rejected)


async def test_every_recipient_unknown_is_a_recipients_refused_error(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    message = Message("sender@example.net", ["ghost@example.net"], subject=unique("ghost"), text="hi\n")
    async with channel(postfix, client_tls) as smtp:
        with pytest.raises(RecipientsRefusedError):
            await smtp.send(message)


async def test_a_message_over_postfixs_size_limit_is_refused_before_sending(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    """Postfix offers SIZE 1048576: a 2 MB message is refused by the channel, and Postfix sees no MAIL."""
    message = Message("sender@example.net", ["dave@example.net"], subject=unique("big"),
                      text="x" * 70 + "\n" + ("y" * 70 + "\n") * 30_000)
    before = len(postfix.sessions())
    async with channel(postfix, client_tls) as smtp:
        with pytest.raises(MessageRejectedError, match=r"1,048,576"):
            await smtp.send(message)
    connection = postfix.sessions(at_least=before + 1)[before:]
    assert 1 == len(connection), connection
    assert "mail=" not in connection[0]  # Postfix's count of the session's commands: no MAIL at all
    assert [] == [b for b in postfix.delivered("dave") if message.message_id.encode() in b]


async def test_an_smtputf8_message_is_delivered(postfix: PostfixInstance, client_tls: ssl.SSLContext) -> None:
    """A non-ASCII local part: Postfix offers SMTPUTF8, the message arrives."""
    before = len(postfix.delivered("jöran"))
    message = Message("sender@example.net", ["Jöran <jöran@example.net>"], subject=unique("utf8"),
                      text="Hej Jöran\n")
    async with channel(postfix, client_tls) as smtp:
        result = await smtp.send(message)
    assert 1 == len(result.accepted)
    delivered = postfix.wait_delivered("jöran", before + 1)
    assert lf(message.as_bytes()) == trace_headers_removed(delivered[-1])


async def test_a_wrong_password_costs_one_failed_auth_per_send(
    postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    failures_before = postfix.log().count("authentication failed")
    async with channel(postfix, client_tls, password="wrong-" + sentinels.PASSWORD[::-1]) as smtp:
        for _ in range(2):
            with pytest.raises(AuthenticationError) as caught:
                await smtp.send(Message("sender@example.net", ["bob@example.net"], text="hi\n"))
            assert 535 == caught.value.code
            assert LOGIN in str(caught.value)
            assert [] == sentinels.leaked(str(caught.value) + repr(caught.value))
    assert failures_before + 2 == postfix.wait_log("authentication failed", failures_before + 2)


async def test_postfix_refuses_auth_before_tls(postfix: PostfixInstance) -> None:
    """smtpd_tls_auth_only: without TLS Postfix offers no AUTH, and the channel says so."""
    smtp = SmtpChannel("127.0.0.1", postfix.port, tls="none", username=LOGIN, password=sentinels.PASSWORD,
                       allow_insecure_auth=True, timeout=30.0)
    async with smtp:
        with pytest.raises(AuthenticationError, match="STARTTLS"):
            await smtp.verify()


# -- anvil rate limits -----------------------------------------------------------------------------------


async def test_after_a_rate_limit_refusal_postfix_sees_no_pipelined_errors(
    rate_limited_postfix: PostfixInstance, client_tls: ssl.SSLContext
) -> None:
    """3 messages a minute: the 4th MAIL is refused (450 4.7.1); the next sends' MAIL goes alone, so only
    the first refused transaction's RCPT and DATA count as errors, and the connection stays up."""
    postfix = rate_limited_postfix
    before = len(postfix.sessions())
    message = Message("sender@example.net", ["bob@example.net", "carol@example.net"], text="hi\n")
    async with channel(postfix, client_tls, pool_size=1) as smtp:
        for _ in range(3):
            await smtp.send(message)
        for _ in range(5):
            with pytest.raises(ThrottledError) as caught:
                await smtp.send(message)
            assert 450 == caught.value.code
            assert "4.7.1" == caught.value.enhanced_code
        assert 1 == smtp._pool.opened  # no "421 too many errors"
    stats = postfix.sessions(at_least=before + 1)[before:]
    assert 1 == len(stats), stats
    # rcpt: 6 accepted of 8 sent (the 2 pipelined behind the first refused MAIL); data: 3 of 4.
    assert " mail=3/8 rcpt=6/8 data=3/4 " in stats[0], stats[0]
