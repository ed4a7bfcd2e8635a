"""SmtpChannel against real aiosmtpd servers: TLS modes, authentication, refusals, server limits."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sendchannel import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    CredentialScope,
    Limits,
    Message,
    MessageRejectedError,
    PermanentError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SmtpChannel,
    ThrottledError,
    TransientError,
)
from tests import sentinels
from tests.smtp.servers import Certificates, SmtpServer

MakeMessage = Callable[..., Message]


async def test_plaintext_send_delivers_the_rendered_bytes_and_the_envelope(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    message = make_message(cc=["carol@example.net"], bcc=["dave@example.org"])
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none") as channel:
        result = await channel.send(message)
    received = plain_server.messages[0]
    assert "app@example.com" == received.mail_from
    assert ("bob@example.net", "carol@example.net", "dave@example.org") == received.rcpt_tos
    assert message.as_bytes() == received.data
    assert b"dave@example.org" not in received.data
    assert ("bob@example.net", "carol@example.net", "dave@example.org") == result.accepted
    assert {} == dict(result.rejected)
    assert message.message_id == result.message_id
    assert "smtp" == result.channel


async def test_provider_id_is_the_queue_id_from_the_final_reply(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none") as channel:
        first = await channel.send(make_message())
        second = await channel.send(make_message())
    assert ("Q000001", "Q000002") == (first.provider_id, second.provider_id)


async def test_lines_starting_with_a_dot_arrive_unchanged(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    message = make_message(text=".hidden\n..two dots\n.\nend\n")
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="none") as channel:
        await channel.send(message)
    assert message.as_bytes() == plain_server.messages[0].data
    # Read back as sendchannel reads it: the message's own last line break is framing, not text.
    received = Message.from_email_message(plain_server.messages[0].parsed())
    assert ".hidden\n..two dots\n.\nend\n" == received.text


async def test_starttls_then_auth_plain_logs_in_once(
    starttls_server: SmtpServer, client_tls: ssl.SSLContext, make_message: MakeMessage
) -> None:
    channel = SmtpChannel(
        "127.0.0.1",
        starttls_server.port,
        username="bob",
        password=sentinels.PASSWORD,
        tls_context=client_tls,
    )
    async with channel:
        await channel.send(make_message())
    assert "bob" == starttls_server.messages[0].login
    assert [("PLAIN", "bob", True)] == [
        (a.mechanism, a.login, a.success) for a in starttls_server.auth_attempts
    ]


async def test_implicit_tls_sends(certificates: Certificates, client_tls: ssl.SSLContext,
                                  make_message: MakeMessage) -> None:
    async with (
        SmtpServer(tls="implicit", certificates=certificates) as server,
        SmtpChannel("127.0.0.1", server.port, tls="implicit", tls_context=client_tls) as channel,
    ):
        await channel.send(make_message())
    assert 1 == len(server.messages)


async def test_auth_login_is_used_when_plain_is_not_offered(
    certificates: Certificates, client_tls: ssl.SSLContext, make_message: MakeMessage
) -> None:
    async with SmtpServer(
        tls="starttls", certificates=certificates, credentials={"bob": sentinels.PASSWORD},
        mechanisms=["LOGIN"],
    ) as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD,
                              tls_context=client_tls)
        async with channel:
            await channel.send(make_message())
    assert [("LOGIN", True)] == [(a.mechanism, a.success) for a in server.auth_attempts]


async def test_a_wrong_password_is_tried_once_not_with_every_mechanism(
    starttls_server: SmtpServer, client_tls: ssl.SSLContext, make_message: MakeMessage
) -> None:
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob",
                          password="not-" + sentinels.PASSWORD, tls_context=client_tls)
    async with channel:
        with pytest.raises(AuthenticationError) as caught:
            await channel.send(make_message())
    assert 1 == len(starttls_server.auth_attempts)
    assert (535, "5.7.8") == (caught.value.code, caught.value.enhanced_code)
    assert "535 5.7.8 Authentication credentials invalid" == caught.value.reply
    assert "bob" in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value) + repr(channel))
    assert [] == starttls_server.messages


async def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(
    starttls_server: SmtpServer, make_message: MakeMessage
) -> None:
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob", password=sentinels.PASSWORD)
    async with channel:
        with pytest.raises(PermanentError, match="could not be verified") as caught:
            await channel.send(make_message())
    assert PermanentError is type(caught.value)
    assert "tls_context" in str(caught.value)
    assert ([], []) == (starttls_server.auth_attempts, starttls_server.messages)


async def test_an_untrusted_certificate_is_refused_with_implicit_tls(
    certificates: Certificates, make_message: MakeMessage
) -> None:
    async with (
        SmtpServer(tls="implicit", certificates=certificates) as server,
        SmtpChannel("127.0.0.1", server.port, tls="implicit") as channel,
    ):
        with pytest.raises(PermanentError, match="could not be verified"):
            await channel.send(make_message())
    assert [] == server.messages


async def test_ssl_cert_file_is_honoured_by_the_default_context(
    starttls_server: SmtpServer,
    certificates: Certificates,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_message: MakeMessage,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certificates.write_ca(str(tmp_path / "ca.pem")))
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob", password=sentinels.PASSWORD)
    async with channel:
        await channel.send(make_message())
    assert 1 == len(starttls_server.messages)


async def test_starttls_not_offered_fails_without_plaintext(
    make_message: MakeMessage,
) -> None:
    async with SmtpServer(credentials={"bob": sentinels.PASSWORD}) as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD)
        async with channel:
            with pytest.raises(PermanentError, match="does not offer STARTTLS") as caught:
                await channel.send(make_message())
    assert "tls='implicit'" in str(caught.value)
    assert ([], []) == (server.auth_attempts, server.messages)


async def test_insecure_auth_works_only_when_allowed(make_message: MakeMessage) -> None:
    async with SmtpServer(credentials={"bob": sentinels.PASSWORD}) as server:
        channel = SmtpChannel("127.0.0.1", server.port, username="bob", password=sentinels.PASSWORD,
                              tls="none", allow_insecure_auth=True)
        async with channel:
            await channel.send(make_message())
    assert "bob" == server.messages[0].login


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"username": "bob", "password": "pw", "tls": "none"}, "unencrypted"),
        ({"username": "bob", "password": "pw", "token_provider": lambda: None}, "not both"),
        ({"password": "pw"}, "needs a username"),
        ({"username": "bob"}, "without a password"),
        ({"tls": "ssl"}, "'starttls', 'implicit' or 'none'"),
        ({"port": 465}, "tls='implicit'"),
        ({"port": 0}, "port must be"),
        ({"pool_size": 0}, "pool_size must be"),
        ({"timeout": -1}, "timeout must be"),
        ({"pool_size": 5, "limits": Limits(max_connections=2)}, "more than the 2 concurrent"),
        ({"tls": "none", "tls_context": ssl.create_default_context()}, "no effect"),
        ({"local_hostname": "my host"}, "local_hostname"),
    ],
)
def test_inconsistent_options_raise_configuration_error(options: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {"port": 587}
    arguments.update(options)
    with pytest.raises(ConfigurationError) as caught:
        SmtpChannel("smtp.example.com", **arguments)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert "pw" not in str(caught.value).replace("pool_size", "")


def test_pool_size_defaults_to_the_connection_limit() -> None:
    assert 2 == SmtpChannel("smtp.example.com", limits=Limits(max_connections=2)).pool_size
    assert 4 == SmtpChannel("smtp.example.com").pool_size


def test_repr_and_str_show_no_password() -> None:
    channel = SmtpChannel("smtp.example.com", username="bob", password=sentinels.PASSWORD)
    assert "<SmtpChannel 'smtp' bob@smtp.example.com:587 tls=starttls scope=unrestricted>" == repr(channel)
    assert [] == sentinels.leaked(repr(channel) + str(channel) + repr(vars(channel)))


async def test_partial_refusal_sends_to_the_others_and_reports_the_refused(
    make_message: MakeMessage,
) -> None:
    async with (
        SmtpServer(refuse={"nobody@example.net": "550 5.1.1 <nobody@example.net>: no such user"}) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(make_message(to=["bob@example.net", "nobody@example.net"]))
    assert ("bob@example.net",) == result.accepted
    assert {"nobody@example.net": "550 5.1.1 <nobody@example.net>: no such user"} == dict(result.rejected)
    assert ("bob@example.net",) == server.messages[0].rcpt_tos


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        (("550 5.1.1 no such user", "553 5.1.3 bad address"), RecipientsRefusedError),
        (("550 5.1.1 no such user", "450 4.2.1 try later"), RecipientsRefusedError),
        (("450 4.2.1 mailbox busy", "451 4.3.0 try later"), TransientError),
        (("450 4.7.1 greylisted", "451 4.3.0 try later"), ThrottledError),
    ],
)
async def test_every_recipient_refused_raises_with_the_mapping_and_keeps_the_connection(
    replies: tuple[str, str], expected: type[Exception], make_message: MakeMessage
) -> None:
    refuse = {"x@example.net": replies[0], "y@example.net": replies[1]}
    async with (
        SmtpServer(refuse=refuse) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(expected) as caught:
            await channel.send(make_message(to=["x@example.net", "y@example.net"]))
        await channel.send(make_message())
    assert expected is type(caught.value)
    assert refuse == dict(caught.value.rejected)  # type: ignore[attr-defined]
    assert 1 == server.connections
    assert 1 == len(server.messages)


async def test_a_message_over_the_servers_size_is_refused_before_mail_from(
    make_message: MakeMessage,
) -> None:
    async with (
        SmtpServer(size_limit=2000) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(MessageRejectedError, match="accepts at most 2,000") as caught:
            await channel.send(make_message(text="x" * 3000))
        await channel.send(make_message())
    assert None is caught.value.code
    assert 1 == server.connections
    assert 1 == len(server.messages)


async def test_the_size_is_declared_in_mail_from(make_message: MakeMessage) -> None:
    message = make_message()
    async with (
        SmtpServer(size_limit=100_000) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        await channel.send(message)
    assert (f"SIZE={message.size}",) == server.messages[0].mail_options


async def test_a_utf8_address_needs_smtputf8(make_message: MakeMessage) -> None:
    message = make_message(to=["用户@example.net"])
    async with (
        SmtpServer(smtputf8=False) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        with pytest.raises(MessageRejectedError, match="SMTPUTF8"):
            await channel.send(message)
    assert [] == server.messages
    async with (
        SmtpServer(smtputf8=True) as server,
        SmtpChannel("127.0.0.1", server.port, tls="none") as channel,
    ):
        result = await channel.send(message)
    assert ("用户@example.net",) == result.accepted
    assert "SMTPUTF8" in server.messages[0].mail_options


async def test_scope_is_checked_before_connecting(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    channel = SmtpChannel("127.0.0.1", plain_server.port, tls="none",
                          scope=CredentialScope.per_domain("example.org"))
    async with channel:
        with pytest.raises(SenderNotAllowedError):
            await channel.send(make_message())
    assert 0 == plain_server.connections


async def test_verify_logs_in_and_quits_without_sending(
    starttls_server: SmtpServer, client_tls: ssl.SSLContext
) -> None:
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob", password=sentinels.PASSWORD,
                          tls_context=client_tls)
    async with channel:
        await channel.verify()
    server = starttls_server
    for _ in range(3000):  # the server notices the QUIT's close a loop turn or two later
        if server.active == 0:
            break
        await asyncio.sleep(0.01)
    assert (1, 0, []) == (len(server.auth_attempts), server.active, server.messages)


async def test_verify_raises_the_classified_error(
    starttls_server: SmtpServer, client_tls: ssl.SSLContext
) -> None:
    channel = SmtpChannel("127.0.0.1", starttls_server.port, username="bob", password="wrong",
                          tls_context=client_tls)
    async with channel:
        with pytest.raises(AuthenticationError, match="rejected the username and password for bob"):
            await channel.verify()


async def test_verify_against_a_closed_port_is_connection_lost() -> None:
    async with SmtpServer() as server:
        port = server.port
    channel = SmtpChannel("127.0.0.1", port, tls="none", timeout=2)
    async with channel:
        with pytest.raises(ConnectionLostError, match=f"Could not connect to 127.0.0.1:{port}"):
            await channel.verify()


async def test_sending_after_aclose_raises(plain_server: SmtpServer, make_message: MakeMessage) -> None:
    channel = SmtpChannel("127.0.0.1", plain_server.port, tls="none")
    await channel.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(make_message())


async def test_works_with_the_demo_sink_over_starttls_and_auth(
    certificates: Certificates, client_tls: ssl.SSLContext, make_message: MakeMessage
) -> None:
    """The CLI demo's SmtpSink (src/sendchannel/_sink.py) and SmtpChannel understand each other."""
    from sendchannel._sink import SmtpSink

    sink = SmtpSink(tls_context=certificates.server_context(), credentials={"bob": sentinels.PASSWORD})
    async with sink:
        channel = SmtpChannel("127.0.0.1", sink.port, username="bob", password=sentinels.PASSWORD,
                              tls_context=client_tls)
        async with channel:
            result = await channel.send(make_message())
    assert ("bob", ("bob@example.net",)) == (sink.messages[0].login, sink.messages[0].rcpt_tos)
    assert "00000001" == result.provider_id


async def test_the_smtp_servers_fixture_starts_servers_on_the_tests_loop(
    smtp_servers: Callable[..., Any], make_message: MakeMessage
) -> None:
    server = await smtp_servers()
    async with SmtpChannel("127.0.0.1", server.port, tls="none") as channel:
        await channel.send(make_message())
    assert 1 == len(server.messages)


async def test_implicit_tls_against_a_plaintext_server_names_the_likely_mistake(
    plain_server: SmtpServer, make_message: MakeMessage
) -> None:
    async with SmtpChannel("127.0.0.1", plain_server.port, tls="implicit", timeout=5) as channel:
        with pytest.raises(PermanentError, match="TLS handshake") as caught:
            await channel.send(make_message())
    assert "use tls='starttls'" in str(caught.value)
    assert [] == plain_server.messages
