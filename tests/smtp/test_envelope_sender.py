"""SMTP sends Message.envelope_sender as MAIL FROM; the credential's scope is checked against From."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes, policy

import pytest

from sendchannel import CredentialScope, Message, SenderNotAllowedError, SmtpChannel
from sendchannel._sink import SmtpSink


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as server:
        yield server


def channel(sink: SmtpSink, scope: CredentialScope | None = None) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", sink.port, tls="none", scope=scope)


async def test_mail_from_is_the_envelope_sender_while_the_header_shows_from(sink: SmtpSink) -> None:
    message = Message(
        "News <news@example.com>", ["bob@example.net"], envelope_sender="bounce+bob=example.net@example.org"
    )
    async with channel(sink) as smtp:
        await smtp.send(message)
    [received] = sink.messages
    header_from = message_from_bytes(received.data, policy=policy.default)["From"]
    assert ("bounce+bob=example.net@example.org", "News <news@example.com>") == (
        received.mail_from,
        str(header_from),
    )


async def test_without_an_envelope_sender_mail_from_is_the_from_address(sink: SmtpSink) -> None:
    async with channel(sink) as smtp:
        await smtp.send(Message("News <news@example.com>", ["bob@example.net"]))
    assert ["news@example.com"] == [m.mail_from for m in sink.messages]


async def test_the_scope_is_checked_against_from_not_the_envelope_sender(sink: SmtpSink) -> None:
    scope = CredentialScope.per_address("news@example.com")
    async with channel(sink, scope) as smtp:
        allowed = Message("news@example.com", ["bob@example.net"], envelope_sender="any@bounce.example")
        await smtp.send(allowed)
        with pytest.raises(SenderNotAllowedError):
            await smtp.send(
                Message("other@example.com", ["bob@example.net"], envelope_sender="news@example.com")
            )
    assert ["any@bounce.example"] == [m.mail_from for m in sink.messages]
