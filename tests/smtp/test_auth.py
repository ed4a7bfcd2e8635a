"""Authentication: XOAUTH2 with one fresh-token retry, one mechanism a login, secrets kept out of errors."""

from __future__ import annotations

import base64
import ssl

import pytest

from sendchannel import AuthenticationError, Message, SmtpChannel
from sendchannel._smtp._session import Redactor
from tests import sentinels
from tests.smtp.servers import Certificates, Script, ScriptedServer, SmtpServer

MESSAGE = Message("bob@example.com", ["carol@example.net"], subject="hi", text="hello\n")


class Tokens:
    """A token provider that hands out the given tokens in turn and counts calls and invalidations."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0
        self.invalidations: list[int] = []

    async def __call__(self) -> str:
        token = self.tokens[min(self.calls, len(self.tokens) - 1)]
        self.calls += 1
        return token

    def invalidate(self) -> None:
        self.invalidations.append(self.calls)


async def _xoauth2_server(certificates: Certificates) -> SmtpServer:
    server = SmtpServer(
        tls="starttls", certificates=certificates, tokens={sentinels.TOKEN: "bob@example.com"}
    )
    await server.start()
    return server


async def test_xoauth2_logs_in_with_the_token(certificates: Certificates, client_tls: ssl.SSLContext) -> None:
    server = await _xoauth2_server(certificates)
    tokens = Tokens(sentinels.TOKEN)
    try:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob@example.com", token_provider=tokens,
                              tls_context=client_tls)
        async with channel:
            await channel.send(MESSAGE)
    finally:
        await server.stop()
    assert [("XOAUTH2", "bob@example.com", True)] == [
        (a.mechanism, a.login, a.success) for a in server.auth_attempts
    ]
    assert (1, []) == (tokens.calls, tokens.invalidations)
    assert "bob@example.com" == server.messages[0].login


async def test_a_refused_token_is_refreshed_once_and_the_login_retried(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    server = await _xoauth2_server(certificates)
    tokens = Tokens("expired-token", sentinels.TOKEN)
    try:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob@example.com", token_provider=tokens,
                              tls_context=client_tls)
        async with channel:
            await channel.send(MESSAGE)
    finally:
        await server.stop()
    assert [False, True] == [a.success for a in server.auth_attempts]
    assert (2, [1]) == (tokens.calls, tokens.invalidations)
    assert 1 == len(server.messages)


async def test_a_token_refused_twice_gives_up_after_one_refresh(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    server = await _xoauth2_server(certificates)
    tokens = Tokens("expired-" + sentinels.TOKEN)
    try:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob@example.com", token_provider=tokens,
                              tls_context=client_tls)
        async with channel:
            expected = r"rejected the access token for bob@example\.com"
            with pytest.raises(AuthenticationError, match=expected) as caught:
                await channel.send(MESSAGE)
    finally:
        await server.stop()
    assert (2, 2) == (tokens.calls, len(server.auth_attempts))
    assert (535, "5.7.8") == (caught.value.code, caught.value.enhanced_code)
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value) + str(caught.value.reply))
    assert [] == server.messages


async def test_a_token_provider_returning_no_string_is_an_authentication_error(
    certificates: Certificates, client_tls: ssl.SSLContext
) -> None:
    server = await _xoauth2_server(certificates)

    async def broken() -> str:
        return None  # type: ignore[return-value]

    try:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob@example.com", token_provider=broken,
                              tls_context=client_tls)
        async with channel:
            with pytest.raises(AuthenticationError, match="returned NoneType instead of an access token"):
                await channel.send(MESSAGE)
    finally:
        await server.stop()


async def test_xoauth2_not_offered_is_a_clear_error(
    starttls_server: SmtpServer, client_tls: ssl.SSLContext
) -> None:
    tokens = Tokens(sentinels.TOKEN)
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob", token_provider=tokens,
                          tls_context=client_tls)
    async with channel:
        with pytest.raises(AuthenticationError, match=r"does not offer XOAUTH2 \(it offers LOGIN, PLAIN\)"):
            await channel.send(MESSAGE)
    assert (0, []) == (tokens.calls, starttls_server.auth_attempts)


async def test_no_usable_mechanism_sends_no_auth_command() -> None:
    script = Script(extensions=("AUTH CRAM-MD5 GSSAPI",))
    async with ScriptedServer(script) as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD,
                              tls="none", allow_insecure_auth=True)
        async with channel:
            with pytest.raises(AuthenticationError, match="it offers CRAM-MD5, GSSAPI"):
                await channel.send(MESSAGE)
    assert not any(command.startswith("AUTH") for command in server.commands)


async def test_a_reply_echoing_the_credentials_is_scrubbed() -> None:
    plain_blob = base64.b64encode(b"\0bob\0" + sentinels.PASSWORD.encode()).decode()
    reply = f"535 5.7.8 Bad credentials {sentinels.PASSWORD} in {plain_blob}"
    async with ScriptedServer(Script(auth=reply)) as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD,
                              tls="none", allow_insecure_auth=True)
        async with channel:
            with pytest.raises(AuthenticationError) as caught:
                await channel.send(MESSAGE)
    assert "535 5.7.8 Bad credentials *** in ***" == caught.value.reply
    assert None is caught.value.__cause__
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value))


def test_the_redactor_keeps_the_password_and_only_recent_tokens() -> None:
    redact = Redactor()
    redact.add(sentinels.PASSWORD)
    for number in range(40):
        redact.add(f"token-{number:03d}-abcdef", rotating=True)
    text = f"{sentinels.PASSWORD} token-000-abcdef token-039-abcdef"
    assert "*** token-000-abcdef ***" == redact(text)
