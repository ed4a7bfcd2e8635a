"""Mail transactions past a server's limits: recipients beyond its per-transaction limit, waits it names,
a sender it refuses only at RCPT, and MAIL refused for now (rate limits) without pipelined errors.

The servers are real (scripted asyncio servers on 127.0.0.1); the same behaviour against Postfix itself is
in tests/postfix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sendchannel import (
    DeliveryUnknownError,
    Message,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendError,
    SmtpChannel,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import FakeChannel
from tests.smtp.servers import DROP, Action, Script, ScriptedServer

TOO_MANY = "452 4.5.3 Error: too many recipients"


def recipient_limit(limit: int, *, later: int | None = None) -> Callable[[ScriptedServer], Action]:
    """RCPT replies of a server accepting ``limit`` recipients a transaction (``later`` after the first)."""

    def reply(server: ScriptedServer) -> Action:
        verbs = [command.split(" ", 1)[0].upper() for command in server.commands]
        mails = verbs.count("MAIL")
        since_mail = verbs[len(verbs) - verbs[::-1].index("MAIL") :]
        allowed = limit if mails == 1 or later is None else later
        return "250 2.1.5 Ok" if since_mail.count("RCPT") <= allowed else TOO_MANY

    return reply


def addresses(count: int) -> list[str]:
    return [f"r{index}@example.net" for index in range(count)]


def verbs_of(server: ScriptedServer) -> list[str]:
    verbs = [command.split(" ", 1)[0].upper() for command in server.commands]
    return verbs[verbs.index("MAIL") :]


@pytest.mark.parametrize("extensions", [("PIPELINING",), ()], ids=["pipelining", "one-at-a-time"])
async def test_recipients_past_the_servers_limit_get_the_message_in_further_transactions(
    extensions: tuple[str, ...],
) -> None:
    """8 recipients, 3 a transaction: three transactions on one connection, every recipient accepted."""
    script = Script(rcpt=recipient_limit(3), extensions=extensions,
                    message=["250 2.0.0 Ok: queued as FIRST", "250 2.0.0 Ok: queued as NEXT"])
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(Message("app@example.com", addresses(8), text="hi\n"))
    assert tuple(addresses(8)) == result.accepted
    assert {} == dict(result.rejected)
    assert "FIRST" == result.provider_id
    assert 3 == len(server.messages)
    assert 1 == len(set(server.messages))  # the same message each time
    assert 1 == server.connections
    assert 3 == verbs_of(server).count("MAIL")
    assert 8 + 5 + 2 == verbs_of(server).count("RCPT")  # each transaction offers every recipient left


async def test_refused_recipients_stay_refused_while_the_rest_go_in_further_transactions() -> None:
    """A 550 among recipients past the limit is reported; the 452s are not."""
    limited = recipient_limit(2)

    def reply(server: ScriptedServer) -> Action:
        if "<r1@example.net>" in server.commands[-1]:
            return "550 5.1.1 <r1@example.net>: Recipient address rejected: User unknown"
        return limited(server)

    async with (
        ScriptedServer(Script(rcpt=reply)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(Message("app@example.com", addresses(6), text="hi\n"))
    assert ("r0@example.net", "r2@example.net", "r3@example.net", "r4@example.net",
            "r5@example.net") == result.accepted
    assert ["r1@example.net"] == list(result.rejected)
    assert result.rejected["r1@example.net"].startswith("550 5.1.1")


async def test_a_later_transaction_accepting_nobody_ends_the_rounds_with_those_recipients_refused() -> None:
    """A server that accepts 2, then none: no endless loop, the rest are in rejected with its reply."""
    async with (
        ScriptedServer(Script(rcpt=recipient_limit(2, later=0))) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(Message("app@example.com", addresses(5), text="hi\n"))
    assert ("r0@example.net", "r1@example.net") == result.accepted
    assert {f"r{i}@example.net": TOO_MANY for i in (2, 3, 4)} == dict(result.rejected)
    assert 1 == len(server.messages)


async def test_a_later_transaction_that_fails_does_not_undo_the_first_delivery() -> None:
    """The first transaction delivered: a refusal at the end of the second is reported per recipient."""
    script = Script(rcpt=recipient_limit(2),
                    message=["250 2.0.0 Ok: queued as FIRST", "451 4.3.0 Error: queue file write error"])
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(Message("app@example.com", addresses(3), text="hi\n"))
    assert ("r0@example.net", "r1@example.net") == result.accepted
    assert {"r2@example.net": "451 4.3.0 Error: queue file write error"} == dict(result.rejected)


async def test_a_later_transaction_with_an_unknown_outcome_is_unknown_not_refused() -> None:
    """The connection drops after the second transaction's DATA: those recipients may have the message, so
    the send is DeliveryUnknownError (never resent blindly) naming who already has it, not a refusal."""
    script = Script(rcpt=recipient_limit(2), message=["250 2.0.0 Ok: queued as FIRST", DROP])
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(DeliveryUnknownError) as caught:
            await channel.send(Message("app@example.com", addresses(3), text="hi\n"))
    said = str(caught.value)
    assert "r0@example.net, r1@example.net (queue id FIRST); do not send it to them again" in said
    assert 2 == len(server.messages)


async def test_too_many_recipients_with_nobody_accepted_is_still_a_throttled_error() -> None:
    """452 4.5.3 for every recipient (no progress possible) raises ThrottledError, as before."""
    async with (
        ScriptedServer(Script(rcpt=TOO_MANY)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(ThrottledError):
            await channel.send(Message("app@example.com", addresses(2), text="hi\n"))
    assert 1 == verbs_of(server).count("MAIL")


# -- waits named in replies ------------------------------------------------------------------------------

BUSY = "450 4.2.1 Mailbox busy, try again in 2 minutes"


@pytest.mark.parametrize(
    ("stage", "reply", "wait"),
    [
        ("mail", "450 4.7.1 Too much mail, try again in 2 minutes", 120.0),
        ("rcpt", BUSY, 120.0),
        ("data", "451 4.3.0 Busy, please retry in 30 seconds", 30.0),
        ("message", "451 4.3.0 Queue full; try again in 1 hour", 3600.0),
    ],
)
async def test_a_wait_named_in_any_reply_becomes_retry_after(stage: str, reply: str, wait: float) -> None:
    """"try again in 2 minutes" at MAIL, RCPT (the only recipient refused), DATA or the end of DATA."""
    async with (
        ScriptedServer(Script(**{stage: reply})) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(TransientError) as caught:
            await channel.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert wait == caught.value.retry_after
    assert reply == caught.value.reply


async def test_the_longest_wait_among_refused_recipients_wins() -> None:
    rcpt = {"a@example.net": "450 4.2.1 Busy, try again in 30 seconds", "*": BUSY}
    async with (
        ScriptedServer(Script(rcpt=rcpt)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(TransientError) as caught:
            await channel.send(Message("app@example.com", ["a@example.net", "b@example.net"], text="hi\n"))
    assert 120.0 == caught.value.retry_after


async def test_a_fake_channel_keeps_the_wait_of_a_scripted_refusal_too() -> None:
    """The rule is shared: FakeChannel's refusal of the only recipient carries the named wait."""
    fake = FakeChannel()
    fake.reject_recipients("bob@example.net", reply=BUSY)
    with pytest.raises(TransientError) as caught:
        await fake.send(Message("app@example.com", ["bob@example.net"], text="hi\n"))
    assert 120.0 == caught.value.retry_after


# -- a sender refused at RCPT --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "554 5.7.1 <app@example.com>: Sender address rejected: Access denied",
        "553 5.1.8 <app@example.com>: Sender address rejected: Domain not found",
        "501 5.1.7 <app@example.com>: Sender address rejected: bad address syntax",
        "550 5.1.8 Sender domain has no MX",
    ],
)
async def test_a_sender_refused_at_rcpt_is_sender_not_allowed(reply: str) -> None:
    """Delayed rejection (Postfix's default) refuses the sender once for each recipient, at RCPT."""
    async with (
        ScriptedServer(Script(rcpt=reply)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(SenderNotAllowedError) as caught:
            await channel.send(Message("app@example.com", ["a@example.net", "b@example.net"], text="hi\n"))
    error = caught.value
    assert "app@example.com" in str(error)
    assert "RCPT TO" in str(error)
    assert {"a@example.net": reply, "b@example.net": reply} == dict(error.rejected)
    assert int(reply[:3]) == error.code


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("554 5.7.1 <a@example.net>: Recipient address rejected: Access denied", RecipientsRefusedError),
        ("450 4.1.8 <app@example.com>: Sender address rejected: Domain not found", TransientError),
    ],
    ids=["recipient-refused-by-policy", "sender-refused-for-now"],
)
async def test_other_refusals_at_rcpt_keep_their_class(reply: str, expected: type[SendError]) -> None:
    """A recipient refused by policy is a recipient refusal; a sender refused for now stays transient."""
    async with (
        ScriptedServer(Script(rcpt=reply)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(SendError) as caught:
            await channel.send(Message("app@example.com", ["a@example.net"], text="hi\n"))
    assert expected is type(caught.value)


# -- MAIL refused for now: no pipelined errors behind it ---------------------------------------------------


class ChunkServer(asyncio.Protocol):
    """A minimal pipelining SMTP server that records which commands arrived together in one read.

    Its replies to MAIL come from ``mail_replies`` (the last repeats); RCPT after a refused MAIL gets 503,
    DATA without a recipient 554, as Postfix answers.
    """

    def __init__(self, mail_replies: list[str]) -> None:
        self.mail_replies = mail_replies
        self.chunks: list[list[str]] = []
        self.errors = 0  # replies 5xx to RCPT and DATA: what Postfix counts against the client
        self.messages = 0
        self._buffer = b""
        self._mails = 0
        self._in_data = False
        self._mail_ok = self._rcpt_ok = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 chunk.localhost ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\r\n")
        chunk: list[str] = []
        for raw in lines:
            if self._in_data:
                if raw == b".":
                    self._in_data = False
                    self.messages += 1
                    self.transport.write(b"250 2.0.0 Ok: queued as C%d\r\n" % self.messages)
                continue
            verb = raw.split(b" ", 1)[0].decode().upper()
            chunk.append(verb)
            self.transport.write(self._answer(verb))
        if chunk:
            self.chunks.append(chunk)

    def _answer(self, verb: str) -> bytes:
        if verb == "EHLO":
            return b"250-chunk.localhost\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        if verb == "MAIL":
            reply = self.mail_replies[min(self._mails, len(self.mail_replies) - 1)]
            self._mails += 1
            self._mail_ok, self._rcpt_ok = reply.startswith("2"), False
            return reply.encode() + b"\r\n"
        if verb == "RCPT":
            if not self._mail_ok:
                self.errors += 1
                return b"503 5.5.1 Error: need MAIL command\r\n"
            self._rcpt_ok = True
            return b"250 2.1.5 Ok\r\n"
        if verb == "DATA":
            if not self._rcpt_ok:
                self.errors += 1
                return b"554 5.5.1 Error: no valid recipients\r\n"
            self._in_data = True
            self._mail_ok = self._rcpt_ok = False
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == "RSET":
            self._mail_ok = self._rcpt_ok = False
            return b"250 2.0.0 Ok\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 Bye\r\n"
        return b"502 5.5.2 Error: command not recognized\r\n"


async def test_after_a_rate_refusal_at_mail_it_goes_alone_until_accepted_then_pipelining_resumes() -> None:
    """A 450 4.7.1 at MAIL: the next transactions send MAIL alone (no 503s), and pipeline once accepted."""
    rate = "450 4.7.1 Error: too much mail from 127.0.0.1"
    server = ChunkServer([rate, rate, "250 2.1.0 Ok"])
    listener = await asyncio.get_running_loop().create_server(lambda: server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    message = Message("app@example.com", ["a@example.net", "b@example.net"], text="hi\n")
    try:
        async with SmtpChannel("127.0.0.1", port, tls="none", pool_size=1) as channel:
            for _ in range(2):
                with pytest.raises(ThrottledError):
                    await channel.send(message)
            await channel.send(message)
            await channel.send(message)
    finally:
        listener.close()
        await listener.wait_closed()
    assert [
        ["EHLO"],
        ["MAIL", "RCPT", "RCPT", "DATA"],  # nothing refused yet: pipelined, and three errors follow
        ["RSET"],
        ["MAIL"],  # refused for rate before: alone, and refused again without further errors
        ["RSET"],
        ["MAIL"],  # accepted this time
        ["RCPT", "RCPT", "DATA"],
        ["MAIL", "RCPT", "RCPT", "DATA"],  # pipelining again
        ["QUIT"],
    ] == server.chunks
    assert 3 == server.errors  # only the first refused transaction's RCPTs and DATA
    assert 2 == server.messages


async def test_a_permanent_refusal_at_mail_does_not_stop_pipelining() -> None:
    server = ChunkServer(["550 5.7.1 Sender rejected", "250 2.1.0 Ok"])
    listener = await asyncio.get_running_loop().create_server(lambda: server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    message = Message("app@example.com", ["a@example.net"], text="hi\n")
    try:
        async with SmtpChannel("127.0.0.1", port, tls="none", pool_size=1) as channel:
            with pytest.raises(SendError):
                await channel.send(message)
            await channel.send(message)
    finally:
        listener.close()
        await listener.wait_closed()
    assert ["MAIL", "RCPT", "DATA"] == server.chunks[-2]
