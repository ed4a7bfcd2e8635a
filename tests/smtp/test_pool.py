"""The connection pool: reuse, the size bound under concurrency, recycling, stale connections, aclose."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest

from sendchannel import ConnectionLostError, Message, SmtpChannel
from tests.smtp.servers import DROP, Certificates, Script, ScriptedServer, SmtpServer

MakeMessage = Callable[..., Message]


async def _settle(predicate: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait until ``predicate()`` holds (a server noticing a close takes a loop turn or two)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_sequential_sends_reuse_one_connection(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none") as channel:
        for _ in range(5):
            await channel.send(make_message())
    assert (1, 5) == (plain_server.connections, len(plain_server.messages))


async def test_concurrent_sends_share_at_most_pool_size_connections(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none", pool_size=3) as channel:
        results = await asyncio.gather(*(channel.send(make_message()) for _ in range(30)))
    assert 30 == len({result.provider_id for result in results})
    assert 3 == plain_server.connections
    assert 3 == plain_server.peak_active


async def test_a_connection_is_recycled_after_recycle_after_messages(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none", recycle_after=2) as channel:
        for _ in range(5):
            await channel.send(make_message())
    assert 3 == plain_server.connections


async def test_a_recycled_connection_says_quit_before_another_opens_beyond_the_size(
    make_message: MakeMessage,
) -> None:
    async with ScriptedServer() as server:
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", recycle_after=1, pool_size=1)
        async with channel:
            await channel.send(make_message())
            await channel.send(make_message())
    verbs = [command.split(" ")[0] for command in server.commands]
    assert ["EHLO", "MAIL", "RCPT", "DATA", "QUIT", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"] == verbs


async def test_an_idle_connection_is_closed_after_max_idle(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none", max_idle=0.1) as channel:
        await channel.send(make_message())
        await _settle(lambda: plain_server.active == 0)
        assert 0 == plain_server.active
        await channel.send(make_message())
    assert 2 == plain_server.connections


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none") as channel:
        await channel.send(make_message())
        for transport in list(plain_server._transports):
            transport.close()
        await _settle(lambda: plain_server.active == 0)
        result = await channel.send(make_message())
    assert ("bob@example.net",) == result.accepted
    assert (2, 2) == (plain_server.connections, len(plain_server.messages))


async def test_a_reused_connection_found_dead_at_mail_from_is_replaced_once(
    make_message: MakeMessage,
) -> None:
    # The server drops the second MAIL FROM without answering, as a server that timed the connection
    # out would: nothing was sent, so the channel opens a new connection and sends there.
    script = Script(mail=["250 2.1.0 Ok", DROP, "250 2.1.0 Ok"])
    async with (
        ScriptedServer(script) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        await channel.send(make_message())
        await channel.send(make_message())
    assert (2, 2) == (server.connections, len(server.messages))


async def test_a_fresh_connection_dropped_at_mail_from_is_not_retried(make_message: MakeMessage) -> None:
    async with (
        ScriptedServer(Script(mail=DROP)) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(ConnectionLostError):
            await channel.send(make_message())
    assert 1 == server.connections


async def test_aclose_says_quit_on_every_idle_connection(make_message: MakeMessage) -> None:
    async with ScriptedServer() as server:
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=2)
        await asyncio.gather(channel.send(make_message()), channel.send(make_message()))
        await channel.aclose()
        await _settle(lambda: server.commands.count("QUIT") == 2)
    assert (2, 2) == (server.connections, server.commands.count("QUIT"))


async def test_verify_makes_room_when_every_slot_holds_an_idle_connection(
    certificates: Certificates, client_tls: ssl.SSLContext, make_message: MakeMessage
) -> None:
    async with (
        SmtpServer(tls="starttls", certificates=certificates) as server,
        SmtpChannel("127.0.0.1", server.port, tls_context=client_tls, pool_size=1) as channel,
    ):
        await channel.send(make_message())
        await asyncio.wait_for(channel.verify(), 5)
        await channel.send(make_message())
    assert 1 == server.peak_active


def test_a_channel_works_across_event_loops(make_message: MakeMessage) -> None:
    """A channel used by one asyncio.run() after another drops the old loop's connections."""
    server = SmtpServer()
    with server.in_thread():
        channel = SmtpChannel("127.0.0.1", server.port, tls="none")
        asyncio.run(channel.send(make_message()))
        asyncio.run(channel.send(make_message()))
        asyncio.run(channel.aclose())
    assert 2 == len(server.messages)


async def test_a_421_to_mail_from_on_a_reused_connection_is_retried_on_a_fresh_one(
    make_message: MakeMessage,
) -> None:
    """A late idle-timeout 421 answers the first command of a reused connection: nothing was sent."""
    script = Script(mail=["250 2.1.0 Ok", "421 4.4.2 Error: timeout exceeded", "250 2.1.0 Ok"])
    async with ScriptedServer(script) as server, SmtpChannel("127.0.0.1", server.port, tls="none") as channel:
        await channel.send(make_message())
        result = await channel.send(make_message())
    assert ("bob@example.net",) == result.accepted
    assert (2, 2) == (server.connections, len(server.messages))
