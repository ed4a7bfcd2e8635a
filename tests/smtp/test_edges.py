"""Edges of the Office 365 channel and its Microsoft token providers: options, a missing msal, an authority
msal cannot use, and a device-code request Entra ID refuses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sendchannel import AuthenticationError, ConfigurationError, Message, Office365Channel, SmtpChannel
from sendchannel.errors import ConnectionLostError, DeliveryUnknownError, RecipientsRefusedError
from tests import sentinels
from tests.smtp.entra import EntraDouble
from tests.smtp.servers import DROP, STALL, Script, ScriptedServer
from tests.smtp.test_tokens import ALICE, CLIENT_ID, ca_file, entra

__all__ = ["ca_file", "entra"]

MakeMessage = Callable[..., Message]


def test_a_single_send_as_address_may_be_given_as_a_string() -> None:
    channel = Office365Channel(ALICE, password=sentinels.PASSWORD, send_as="shared@contoso.com")
    assert (True, True, False) == (
        channel.scope.allows(ALICE),
        channel.scope.allows("Shared <shared@contoso.com>"),
        channel.scope.allows("bob@contoso.com"),
    )


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: Office365Channel.token_from_client_credentials(
            tenant_id="", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET), "tenant_id"),
        (lambda: Office365Channel.token_from_client_credentials(
            tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=""), "client_secret"),
        (lambda: Office365Channel.token_from_device_code(client_id=""), "client_id"),
    ],
    ids=["no-tenant", "no-secret", "device-code-no-client"],
)
def test_token_provider_options_are_checked_when_built(build: object, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{named} must be a non-empty string"):
        build()  # type: ignore[operator]


def test_one_scope_may_be_given_as_a_string() -> None:
    provider = Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
        scopes="https://outlook.office365.com/.default",
    )
    assert ["https://outlook.office365.com/.default"] == provider.scopes
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com" == provider.authority


def test_without_msal_a_token_provider_names_the_extra_to_install() -> None:
    code = (
        "import asyncio, sys; sys.modules['msal'] = None\n"  # as on a machine without the package
        "from sendchannel import Office365Channel\n"
        "provider = Office365Channel.token_from_device_code(client_id='app')\n"
        "try:\n    asyncio.run(provider())\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    expected = 'ConfigurationError The Microsoft token providers need msal; install it with: pip install'
    assert out.stdout.startswith(expected), out.stdout


async def test_an_authority_msal_cannot_use_is_an_authentication_error_naming_it() -> None:
    provider = Office365Channel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id=CLIENT_ID, client_secret=sentinels.CLIENT_SECRET,
        authority="http://127.0.0.1:9/not-https",
    )
    named = r"sign-in authority http://127\.0\.0\.1:9/not-https"
    with pytest.raises(AuthenticationError, match=named) as caught:
        await provider()
    assert "check tenant_id and authority" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value))


async def test_a_device_code_request_for_an_unknown_app_says_what_entra_said(
    entra: EntraDouble, ca_file: str, tmp_path: Path
) -> None:
    prompts: list[str] = []
    provider = Office365Channel.token_from_device_code(
        client_id="99999999-0000-0000-0000-000000000000", tenant_id="contoso.onmicrosoft.com",
        authority=entra.authority, prompt=prompts.append, cache_path=tmp_path / "cache.json",
        instance_discovery=False, verify=ca_file,
    )
    with pytest.raises(AuthenticationError, match="unauthorized_client: AADSTS700016") as caught:
        await provider()
    assert "registered in this tenant" in str(caught.value)
    assert [] == prompts


# -- the pool: waiting for a busy connection ---------------------------------------------------------------


async def _waiting(channel: SmtpChannel) -> None:
    """Until a second send is queued behind the busy connection (at most about 30 s)."""
    for _ in range(3000):
        if channel._pool._waiters:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no send queued for the connection")


async def test_a_send_cancelled_while_waiting_for_a_connection_leaves_the_queue(
    make_message: MakeMessage,
) -> None:
    """pool_size=1: the first message stalls at the end of DATA; a second send waits and is cancelled;
    once the first times out, a third goes through on a new connection."""
    script = Script(message=[STALL, "250 2.0.0 Ok: queued as LATER"])
    async with ScriptedServer(script) as server:
        # The stalled send must still be waiting while the test looks at the pool: 2 s, however loaded.
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1, timeout=2.0)
        async with channel:
            stalled = asyncio.create_task(channel.send(make_message()))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(channel.send(make_message()))
            await _waiting(channel)
            assert (0, 1) == (channel._pool.idle, channel._pool.open_connections)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert 0 == len(channel._pool._waiters)
            with pytest.raises(DeliveryUnknownError):
                await stalled
            result = await channel.send(make_message())
    assert "LATER" == result.provider_id
    assert 2 == server.connections


async def test_closing_the_channel_stops_a_send_waiting_for_a_connection(make_message: MakeMessage) -> None:
    async with ScriptedServer(Script(message=STALL)) as server:
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1, timeout=2.0)
        stalled = asyncio.create_task(channel.send(make_message()))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(channel.send(make_message()))
        await _waiting(channel)
        await channel.aclose()
        with pytest.raises(RuntimeError, match="the channel is closed"):
            await waiting
        with pytest.raises(DeliveryUnknownError):
            await stalled
    assert 1 == server.connections


# -- DATA framing and RSET ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "framed"),
    [
        (b"Subject: a\r\n\r\nbody\r\n", b"Subject: a\r\n\r\nbody\r\n.\r\n"),
        (b"Subject: a\n\nbare\rline ends\n", b"Subject: a\r\n\r\nbare\r\nline ends\r\n.\r\n"),
        (b"Subject: a\r\n\r\nno final line end", b"Subject: a\r\n\r\nno final line end\r\n.\r\n"),
        (b".starts with a dot\r\n.and again\r\n", b"..starts with a dot\r\n..and again\r\n.\r\n"),
    ],
    ids=["crlf", "bare-line-ends", "no-final-crlf", "leading-dots"],
)
def test_data_is_framed_with_crlf_and_dot_stuffing(data: bytes, framed: bytes) -> None:
    from sendchannel._smtp._session import _data_payload

    assert framed == _data_payload(data)


@pytest.mark.parametrize("rset", ["502 5.5.1 RSET not implemented", DROP], ids=["refused", "dropped"])
async def test_a_connection_whose_rset_fails_is_not_reused(make_message: MakeMessage, rset: object) -> None:
    """Every recipient refused, then RSET fails: the next message goes on a new connection."""
    script = Script(rcpt=["550 5.1.1 no such user", "250 2.1.5 Ok"], rset=rset)  # type: ignore[arg-type]
    async with ScriptedServer(script) as server:
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1, timeout=2.0)
        async with channel:
            with pytest.raises(RecipientsRefusedError):
                await channel.send(make_message())
            result = await channel.send(make_message())
    assert ["bob@example.net"] == list(result.accepted)
    assert 2 == server.connections
    assert any(command.startswith("RSET") for command in server.commands)


# -- replies that arrive in pieces -------------------------------------------------------------------------


async def _split_reply_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal SMTP server whose replies to a transaction arrive in two TCP writes, 50 ms apart, as from
    a server that writes the code and the text separately or over a slow link."""

    async def split(reply: bytes) -> None:
        writer.write(reply[:5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(reply[5:])
        await writer.drain()

    writer.write(b"220 split.localhost ESMTP\r\n")
    while line := await reader.readline():
        command = line.upper()
        if command.startswith(b"EHLO"):
            writer.write(b"250-split.localhost\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
        elif command.startswith((b"MAIL", b"RCPT")):
            await split(b"250 2.1.0 Ok\r\n")
        elif command.startswith(b"DATA"):
            await split(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            while await reader.readline() != b".\r\n":
                pass
            await split(b"250-2.0.0 Ok\r\n250 2.0.0 Ok: queued as SPLIT1\r\n")
        elif command.startswith(b"QUIT"):
            writer.write(b"221 2.0.0 Bye\r\n")
            break
        else:
            writer.write(b"250 2.0.0 Ok\r\n")
        await writer.drain()
    writer.close()


async def test_replies_that_arrive_in_pieces_are_read_whole(make_message: MakeMessage) -> None:
    """A reply split across reads is waited for, not taken for a closed connection (which at the end of
    DATA would report a delivered message as of unknown outcome)."""
    server = await asyncio.start_server(_split_reply_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SmtpChannel("127.0.0.1", port, tls="none", timeout=2.0) as channel:
            first = await channel.send(make_message())
            second = await channel.send(make_message())
    finally:
        server.close()
        await server.wait_closed()
    assert ("SPLIT1", "SPLIT1") == (first.provider_id, second.provider_id)


async def test_an_endless_reply_ends_the_connection_instead_of_filling_memory(
    make_message: MakeMessage,
) -> None:
    """A server that answers MAIL FROM with continuation lines that never end: the reader gives up past
    64 KB and the send fails as a lost connection that says why (nothing was sent)."""
    endless = "\n".join(["250-" + "x" * 1000] * 200)
    async with ScriptedServer(Script(mail=endless)) as server:
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", timeout=2.0)
        async with channel:
            with pytest.raises(ConnectionLostError, match="reply is too long"):
                await channel.send(make_message())
    assert [] == server.messages
