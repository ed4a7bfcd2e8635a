"""End to end through pipeline() to a real SMTP server on 127.0.0.1 (aiosmtpd, STARTTLS by trustme, AUTH)."""

from __future__ import annotations

import asyncio
import email
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# SmtpChannel is built on another branch; these tests run once it is merged.
from sendchannel import (
    Limits,
    Message,
    MessageRejectedError,
    Rate,
    RetryPolicy,
    SmtpChannel,
    pipeline,
    send_all,
)
from sendchannel.testing import VirtualClock, set_testing
from tests import sentinels

USER = "app@example.com"


class FlakyHandler:
    """Accepts mail, after failing the end of DATA as scripted, and keeps what it accepted."""

    def __init__(self) -> None:
        self.data_replies: list[str] = []  # replies to give, in order, before accepting again
        self.received: list[Envelope] = []
        self.data_attempts = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(envelope)
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def message_ids(self) -> list[str]:
        ids = []
        for envelope in self.received:
            parsed = email.message_from_bytes(envelope.original_content or b"")
            ids.append(str(parsed["Message-ID"]))
        return ids


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_context(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    return context


@pytest.fixture
def handler() -> FlakyHandler:
    return FlakyHandler()


@pytest.fixture
async def server_port(certificate_authority: trustme.CA, handler: FlakyHandler) -> AsyncIterator[int]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == sentinels.PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=ok)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="flaky.localhost",
            tls_context=server_context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticate,
        ),
        "127.0.0.1",
        0,
    )
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def smtp(server_port: int, client_context: ssl.SSLContext) -> SmtpChannel:
    return SmtpChannel(
        "127.0.0.1",
        server_port,
        username=USER,
        password=sentinels.PASSWORD,
        tls_context=client_context,
        local_hostname="client.localhost",
        timeout=10.0,
    )


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    with set_testing(True):
        yield


def message(n: int = 0) -> Message:
    return Message(USER, [f"user{n}@example.net"], subject=f"#{n}", text="Hello over real SMTP")


async def test_transient_replies_at_the_end_of_data_are_retried_and_the_message_arrives_once(
    smtp: SmtpChannel, handler: FlakyHandler
) -> None:
    handler.data_replies = ["451 4.3.0 Local error, try again later", "421 4.7.0 Too busy, slow down"]
    sent = message()
    async with pipeline(smtp, throttle=False, retry=RetryPolicy(attempts=5)) as channel:
        result = await channel.send(sent)
    assert 3 == result.attempts
    assert 3 == handler.data_attempts
    assert [sent.message_id] == handler.message_ids()
    assert ("user0@example.net",) == result.accepted


async def test_a_permanent_refusal_is_not_retried(smtp: SmtpChannel, handler: FlakyHandler) -> None:
    handler.data_replies = ["554 5.6.0 Message content rejected"]
    async with pipeline(smtp, throttle=False) as channel:
        with pytest.raises(MessageRejectedError) as raised:
            await channel.send(message())
    assert 1 == raised.value.attempts
    assert 1 == handler.data_attempts
    assert [] == handler.received


async def test_a_batch_through_the_pipeline_arrives_exactly_once_each(
    smtp: SmtpChannel, handler: FlakyHandler
) -> None:
    handler.data_replies = ["451 4.3.0 try later"] * 6
    batch = [message(n) for n in range(20)]
    async with pipeline(smtp, throttle=False, retry=RetryPolicy(attempts=10)) as channel:
        report = await send_all(channel, batch, concurrency=4)
    assert ["sent"] * 20 == [outcome.status for outcome in report.outcomes]
    assert sorted(m.message_id for m in batch) == sorted(handler.message_ids())
    assert 26 == handler.data_attempts


async def test_a_throttled_batch_over_real_smtp_keeps_to_the_rate_on_a_virtual_clock(
    smtp: SmtpChannel, handler: FlakyHandler
) -> None:
    """5 a minute, 12 messages, one 421 on the way: all arrive once, the last in the third minute."""
    clock = VirtualClock()
    handler.data_replies = ["421 4.7.0 Too busy, slow down"]
    batch = [message(n) for n in range(12)]
    limits = Limits(rates=(Rate.per_minute(5),))
    async with pipeline(smtp, limits=limits, clock=clock) as channel:
        report = await send_all(channel, batch, concurrency=3)
    assert 12 == len(report.sent)
    assert sorted(m.message_id for m in batch) == sorted(handler.message_ids())
    # 13 attempts at 5 a minute: the last starts in the third minute.
    assert 120.0 <= clock.now() < 180.0
