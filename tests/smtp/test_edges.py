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
from sendchannel.errors import DeliveryUnknownError, RecipientsRefusedError
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
    """Until a second send is queued behind the busy connection."""
    for _ in range(200):
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
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1, timeout=0.5)
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
        channel = SmtpChannel("127.0.0.1", server.port, tls="none", pool_size=1, timeout=0.5)
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
