"""No header injection reaches the wire: hostile messages that were accepted, sent through real servers.

Each message has every field either valid or hostile (line breaks of every kind, control characters,
encoded words that decode to line breaks, folding tricks, long values); the ones Message accepts are
sent through SmtpChannel to aiosmtpd on 127.0.0.1, through GmailOAuthChannel (Google's own client) to
the local Gmail API server, and through SparkpostChannel (aiohttp) to the local SparkPost server. What
each server received must carry exactly the headers the message should have, unsplit, with their
values, and the envelope must hold exactly ``message.recipients``.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sendchannel import Attachment, GmailOAuthChannel, Message, SmtpChannel, SparkpostChannel
from sendchannel._address import ParsedAddress
from sendchannel.errors import InvalidMessageError
from tests import strategies
from tests.gmail.conftest import user_credentials
from tests.gmail.server import GmailServer
from tests.reliability._badinput import (
    LoopThread,
    any_address,
    any_header_name,
    any_text,
    check_wire,
    header_block,
    hostile_text,
    long_text,
    time_limit,
)
from tests.smtp.servers import SmtpServer
from tests.sparkpost.server import API_KEY, SparkpostServer

ACCOUNT = "alice@example.com"
SEND_TIMEOUT = 60.0  # a bound for a hang, never reached by a slow machine


def _either(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, hostile)


def _attachment(args: tuple[str, bytes, bool]) -> Attachment | None:
    filename, content, inline = args
    try:
        return Attachment(filename, content, inline=inline)
    except InvalidMessageError:
        return None


attachments = st.tuples(
    _either(strategies.filenames, st.one_of(hostile_text, long_text)), st.binary(max_size=50), st.booleans()
).map(_attachment)


@st.composite
def accepted_messages(draw: st.DrawFn) -> Message:
    """Messages with hostile fields that Message accepted (the sender is ACCOUNT, with any display name)."""
    addresses = _either(strategies.addresses, any_address)
    text = _either(strategies.header_text, any_text)
    names = draw(st.lists(_either(strategies.header_names, any_header_name), max_size=3))
    name = draw(_either(strategies.display_names, any_text))
    fields: dict[str, Any] = {
        "sender": name,
        "to": draw(st.lists(addresses, min_size=1, max_size=3)),
        "cc": draw(st.lists(addresses, max_size=2)),
        "bcc": draw(st.lists(addresses, max_size=2)),
        "reply_to": draw(st.lists(addresses, max_size=1)),
        "subject": draw(text),
        "text": draw(st.none() | _either(strategies.body_text, any_text)),
        "html": draw(st.none() | _either(strategies.body_text, any_text)),
        "headers": {header: draw(text) for header in names},
        "attachments": [a for a in draw(st.lists(attachments, max_size=2)) if a is not None],
    }
    try:
        fields["sender"] = ParsedAddress(name, "alice", "example.com").formatted()
        message = Message(**fields)
    except (InvalidMessageError, ValueError):
        event("refused at construction")
        # Keep the hostile parts that were refused out, and send the rest: a valid core always exists.
        fields["sender"] = ACCOUNT
        fields["to"] = [a for a in fields["to"] if _valid_address(a)] or ["bob@example.net"]
        for field in ("cc", "bcc", "reply_to"):
            fields[field] = [a for a in fields[field] if _valid_address(a)]
        message = _first_valid(fields)
    else:
        event("accepted as drawn")
    return message


def _valid_address(value: str) -> bool:
    try:
        Message(ACCOUNT, [value])
    except InvalidMessageError:
        return False
    return True


def _first_valid(fields: dict[str, Any]) -> Message:
    """Drop the fields that make the message invalid, one at a time, until it is accepted."""
    for dropped in (None, "subject", "headers", "text", "html"):
        if dropped is not None:
            fields[dropped] = {} if dropped == "headers" else ("" if dropped == "subject" else None)
        try:
            return Message(**fields)
        except InvalidMessageError:
            continue
    raise AssertionError(f"no valid message from {fields!r}")


def _addresses(fields: list[tuple[str, str]], *names: str) -> list[str]:
    # Read undecoded: an encoded display name cannot confuse the address list, a decoded one could.
    values = [value for name, value in fields if name in names]
    return [address for _, address in email.utils.getaddresses(values)]


# -- the servers, shared by every example ------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def smtp(loop: LoopThread) -> Iterator[tuple[SmtpServer, SmtpChannel]]:
    server = SmtpServer(smtputf8=True)
    loop.run(server.start())

    async def make() -> SmtpChannel:
        return SmtpChannel("127.0.0.1", server.port, tls="none", timeout=30.0)

    channel = loop.run(make())
    yield server, channel
    loop.run(channel.aclose())
    loop.run(server.stop())


@pytest.fixture(scope="module")
def gmail(loop: LoopThread) -> Iterator[tuple[GmailServer, GmailOAuthChannel]]:
    with GmailServer(ACCOUNT) as server:

        async def make() -> GmailOAuthChannel:
            return GmailOAuthChannel(
                user_credentials(server), address=ACCOUNT, api_endpoint=server.url, timeout=30
            )

        channel = loop.run(make())
        yield server, channel
        loop.run(channel.aclose())


@pytest.fixture(scope="module")
def sparkpost(loop: LoopThread) -> Iterator[tuple[SparkpostServer, SparkpostChannel]]:
    server = SparkpostServer().start()

    async def make() -> SparkpostChannel:
        return SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url, timeout=30.0)

    channel = loop.run(make())
    yield server, channel
    loop.run(channel.aclose())
    server.stop()


MODULE_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@MODULE_FIXTURES
@given(accepted_messages())
def test_smtp_server_receives_exactly_the_headers_and_the_envelope(
    loop: LoopThread, smtp: tuple[SmtpServer, SmtpChannel], message: Message
) -> None:
    server, channel = smtp
    result = loop.run(channel.send(message), SEND_TIMEOUT)
    received = server.messages[-1]
    assert message.as_bytes() == received.data
    check_wire(received.data, message)
    assert message.sender_address == received.mail_from
    assert message.recipients == received.rcpt_tos
    assert message.recipients == result.accepted


@MODULE_FIXTURES
@given(accepted_messages())
def test_gmail_server_receives_exactly_the_headers_and_the_recipients(
    loop: LoopThread, gmail: tuple[GmailServer, GmailOAuthChannel], message: Message
) -> None:
    server, channel = gmail
    result = loop.run(channel.send(message), SEND_TIMEOUT)
    sent = server.sent[-1]
    assert result.provider_id == sent.id
    check_wire(sent.raw, message, bcc_header=True)
    recipients = _addresses(header_block(sent.raw), "To", "Cc", "Bcc")
    assert {r.lower() for r in message.recipients} == {r.lower() for r in recipients}


@MODULE_FIXTURES
@given(accepted_messages())
def test_sparkpost_server_receives_exactly_the_headers_and_the_recipients(
    loop: LoopThread, sparkpost: tuple[SparkpostServer, SparkpostChannel], message: Message
) -> None:
    server, channel = sparkpost
    fields = (message.sender, message.message_id, *message.recipients, *message.reply_to)
    if any("{{" in field or "}}" in field for field in fields):
        # SparkPost's documented limit: "{{" or "}}" in an address or the Message-ID cannot be escaped from
        # its template language, so the channel refuses the message before sending anything.
        before = len(server.received)
        with pytest.raises(InvalidMessageError, match="template syntax"):
            loop.run(channel.send(message), SEND_TIMEOUT)
        assert before == len(server.received)
        return
    result = loop.run(channel.send(message), SEND_TIMEOUT)
    request = server.received[-1]
    assert result.provider_id is not None
    assert list(message.recipients) == [r["address"]["email"] for r in request.json["recipients"]]
    rfc822 = request.json["content"]["email_rfc822"].encode("utf-8")
    fields = header_block(rfc822)
    assert [name for name, _ in header_block(message.as_bytes())] == [name for name, _ in fields]
    delivered = server.delivered[-1]
    # What the recipient sees once SparkPost's template language ran: the message's own values.
    assert message.subject == delivered.header("subject")
    for name, value in message.headers.items():
        assert value == delivered.header(name)


def test_a_one_megabyte_subject_and_ten_thousand_recipients_go_through_smtp_in_bounded_time(
    loop: LoopThread, smtp: tuple[SmtpServer, SmtpChannel]
) -> None:
    server, channel = smtp
    recipients = [f"user{n}@example.net" for n in range(10_000)]
    with time_limit(30, "building, rendering and sending"):
        message = Message(ACCOUNT, recipients, subject="word " * 200_000, headers={"X-Long": "é" * 100_000})
        loop.run(channel.send(message), 30)
    received = server.messages[-1]
    assert tuple(recipients) == received.rcpt_tos
    check_wire(received.data, message)
