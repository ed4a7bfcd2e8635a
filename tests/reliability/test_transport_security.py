"""Transport security: certificates verified by default, no plaintext fallback, no credentials in the clear,
and TLS 1.2 or later for Office 365. Each check is made where it matters, on the server's side: what
arrived, and what never did.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest

from sendchannel import (
    ConfigurationError,
    GmailOAuthChannel,
    Message,
    Office365Channel,
    PermanentError,
    Retrying,
    RetryPolicy,
    SendError,
    SmtpChannel,
    SparkpostChannel,
    channel_from_url,
)
from tests import sentinels
from tests.reliability import rigs
from tests.reliability.rigs import HOST, Env, FaultyGmailServer, OutdatedTlsServer
from tests.smtp.servers import Office365Double, Script, ScriptedServer, SmtpServer
from tests.sparkpost.server import API_KEY, SparkpostServer

ALICE = rigs.OFFICE365_ADDRESS
#: Commands that must never be sent before TLS is up (with tls="starttls").
_AFTER_TLS_ONLY = {"AUTH", "MAIL", "RCPT", "DATA"}


def verbs(commands: list[str]) -> list[str]:
    return [command.split(" ", 1)[0].upper() for command in commands]


def smtp_message() -> Message:
    return Message("app@example.com", ["bob@example.net"], subject="Secret", text="Hello.\n")


def office365_message() -> Message:
    return Message(ALICE, ["bob@example.net"], subject="Secret", text="Hello.\n")


@pytest.fixture
def ca_file(env: Env, tmp_path: Path) -> str:
    """The test authority's certificate as a PEM file."""
    return env.certificates.write_ca(str(tmp_path / "ca.pem"))


@pytest.fixture
def no_ca_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system trust store only: no SSL_CERT_FILE or SSL_CERT_DIR pointing at the test authority."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


# -- certificate verification is on by default --------------------------------------------------------


def _login(tls: str) -> dict[str, dict[str, str]]:
    # aiosmtpd offers AUTH only after its own STARTTLS, so the implicit-TLS server takes mail without login.
    return {"credentials": {"bob": sentinels.PASSWORD}} if tls == "starttls" else {}


def _credentials(tls: str) -> dict[str, str]:
    return {"username": "bob", "password": sentinels.PASSWORD} if tls == "starttls" else {}



@pytest.mark.usefixtures("no_ca_from_environment")
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_smtp_refuses_a_certificate_the_system_does_not_trust(env: Env, tls: str) -> None:
    async with SmtpServer(tls=tls, certificates=env.certificates, **_login(tls)) as server:
        channel = SmtpChannel(HOST, server.port, tls=tls, timeout=5, **_credentials(tls))  # type: ignore[arg-type]
        async with channel:
            with pytest.raises(PermanentError, match=r"certificate .* could not be verified"):
                await channel.send(smtp_message())
    assert ([], []) == (server.messages, server.auth_attempts)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_smtp_trusts_the_users_own_certificate_authority(env: Env, tls: str) -> None:
    async with SmtpServer(tls=tls, certificates=env.certificates, **_login(tls)) as server:
        channel = SmtpChannel(HOST, server.port, tls=tls, tls_context=env.client_tls, timeout=5,  # type: ignore[arg-type]
                              **_credentials(tls))
        async with channel:
            await channel.send(smtp_message())
    assert [["bob@example.net"]] == [list(m.rcpt_tos) for m in server.messages]


async def test_smtp_reads_the_certificate_authority_from_ssl_cert_file(
    env: Env, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    async with (
        SmtpServer(tls="starttls", certificates=env.certificates) as server,
        SmtpChannel(HOST, server.port, timeout=5) as channel,
    ):
        await channel.send(smtp_message())
    assert 1 == len(server.messages)


@pytest.mark.usefixtures("no_ca_from_environment")
async def test_office365_refuses_a_certificate_the_system_does_not_trust(env: Env) -> None:
    async with Office365Double(certificates=env.certificates,
                               mailboxes={ALICE: sentinels.PASSWORD}) as double:
        channel = Office365Channel(ALICE, password=sentinels.PASSWORD, host=HOST, port=double.port, timeout=5)
        async with channel:
            with pytest.raises(PermanentError, match=r"certificate .* could not be verified"):
                await channel.send(office365_message())
    assert ([], []) == (double.messages, double.auth_attempts)


async def test_office365_trusts_the_users_own_certificate_authority(env: Env) -> None:
    async with Office365Double(certificates=env.certificates,
                               mailboxes={ALICE: sentinels.PASSWORD}) as double:
        channel = Office365Channel(ALICE, password=sentinels.PASSWORD, host=HOST, port=double.port,
                                   tls_context=env.client_tls, timeout=5)
        async with channel:
            await channel.send(office365_message())
    assert [ALICE] == [m.login for m in double.messages]


def test_every_default_context_verifies_the_certificate_and_the_host_name() -> None:
    """The contexts the SMTP, Office 365 and Gmail channels build for themselves check both."""
    smtp = SmtpChannel("smtp.example.com")._endpoint.tls_context
    office365 = Office365Channel(ALICE, password=sentinels.PASSWORD)._endpoint.tls_context
    gmail = GmailOAuthChannel(rigs.gmail_credentials("https://oauth2.example/token"),
                              address=rigs.GMAIL_ADDRESS)._transport._tls_context
    for context in (smtp, office365, gmail):
        assert context is not None
        assert (ssl.CERT_REQUIRED, True) == (context.verify_mode, context.check_hostname)


@pytest.mark.usefixtures("no_ca_from_environment")
async def test_gmail_refuses_a_certificate_the_system_does_not_trust(env: Env) -> None:
    with FaultyGmailServer(tls=env.certificates.server_context()) as server:
        channel = GmailOAuthChannel(rigs.gmail_credentials(server.token_uri), address=rigs.GMAIL_ADDRESS,
                                    api_endpoint=server.url, timeout=5)
        async with channel:
            with pytest.raises(PermanentError, match=r"certificate .* could not be verified"):
                await channel.send(rigs.message_for("gmail"))
    assert ([], []) == (server.requests, server.sent)


async def test_gmail_trusts_the_users_own_certificate_authority(env: Env) -> None:
    with FaultyGmailServer(tls=env.certificates.server_context()) as server:
        channel = GmailOAuthChannel(rigs.gmail_credentials(server.token_uri), address=rigs.GMAIL_ADDRESS,
                                    api_endpoint=server.url, timeout=5, tls_context=env.client_tls)
        async with channel:
            await channel.send(rigs.message_for("gmail"))
    assert 1 == len(server.sent)


def _https_sparkpost(env: Env) -> SparkpostServer:
    server = SparkpostServer()
    server._httpd.socket = env.certificates.server_context().wrap_socket(server._httpd.socket,
                                                                         server_side=True)
    return server.start()


@pytest.mark.usefixtures("no_ca_from_environment")
async def test_sparkpost_refuses_a_certificate_it_does_not_trust(env: Env) -> None:
    server = _https_sparkpost(env)
    try:
        base_url = server.url.replace("http://", "https://")
        channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=base_url, timeout=5)
        async with channel:
            with pytest.raises(PermanentError, match=r"certificate .* could not be verified") as caught:
                await channel.send(rigs.message_for("sparkpost"))
    finally:
        server.stop()
    assert [] == server.received
    assert [] == sentinels.leaked(str(caught.value))


async def test_sparkpost_trusts_the_users_own_certificate_authority(env: Env) -> None:
    server = _https_sparkpost(env)
    try:
        base_url = server.url.replace("http://", "https://")
        async with SparkpostChannel(API_KEY, domains=["example.com"], base_url=base_url, timeout=5,
                                    tls_context=env.client_tls) as channel:
            await channel.send(rigs.message_for("sparkpost"))
    finally:
        server.stop()
    assert 1 == len(server.delivered)


# -- no plaintext fallback ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "script", "certificate"),
    [
        ("STARTTLS not offered", {}, None),
        ("STARTTLS refused for now", {"starttls": "454 4.7.0 TLS not available due to temporary reason"},
         "trusted"),
        ("STARTTLS refused", {"starttls": "502 5.5.1 Command not implemented"}, "trusted"),
        ("handshake: untrusted certificate", {}, "untrusted"),
        ("handshake: wrong host name", {}, "wrong-host"),
        ("handshake: server answers in plaintext", {"starttls": "220 2.0.0 Ready"}, None),
    ],
)
@pytest.mark.parametrize("kind", ["smtp", "office365"])
async def test_no_command_or_credential_goes_in_plaintext_when_starttls_fails(
    env: Env, kind: str, case: str, script: dict[str, str], certificate: str | None
) -> None:
    """Whatever goes wrong with STARTTLS, the server never sees AUTH, MAIL, RCPT or DATA in plaintext,
    even when a retry layer tries again."""
    tls = "starttls" if certificate is not None else "none"
    if case == "handshake: server answers in plaintext":
        # The server says 220 to STARTTLS but has no TLS: it answers the handshake in plaintext.
        script = {**script, "extensions": ("PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN")}
    servers_tls = env.server_tls(certificate) if certificate is not None else None
    async with ScriptedServer(Script(**script), certificates=servers_tls, tls=tls) as server:
        channel = rigs.smtp_channel(kind, server.port, tls_context=env.client_tls)
        message = office365_message() if kind == "office365" else smtp_message()
        async with Retrying(channel, RetryPolicy(attempts=3, initial=0.0, jitter=False)) as layer:
            with pytest.raises(SendError):
                await layer.send(message)
    assert set() == _AFTER_TLS_ONLY.intersection(verbs(server.commands)), server.commands
    assert [] == server.messages
    assert [] == sentinels.leaked(" ".join(server.commands))


# -- no credentials over an unencrypted connection -----------------------------------------------------


@pytest.mark.parametrize(
    "credential",
    [{"password": sentinels.PASSWORD}, {"token_provider": lambda: None}],
    ids=["password", "xoauth2-token"],
)
def test_a_credential_without_tls_is_refused_before_anything_is_sent(credential: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_auth=True") as caught:
        SmtpChannel("smtp.example.com", 25, username="bob", tls="none", **credential)  # type: ignore[arg-type]
    assert [] == sentinels.leaked(str(caught.value))


def test_a_url_with_a_password_and_no_tls_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_auth") as caught:
        channel_from_url(f"smtp://bob:{sentinels.PASSWORD}@smtp.example.com:25?tls=none")
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value))


async def _token() -> str:
    return sentinels.TOKEN


@pytest.mark.parametrize("credential", ["password", "token"])
async def test_a_server_offering_auth_without_starttls_never_gets_the_credential(
    env: Env, credential: str
) -> None:
    """A server (or a man in the middle) that strips STARTTLS and offers AUTH in plaintext gets nothing."""
    script = Script(extensions=("PIPELINING", "AUTH PLAIN LOGIN XOAUTH2"))
    async with ScriptedServer(script, tls="none") as server:
        options = {"token_provider": _token} if credential == "token" else {"password": sentinels.PASSWORD}
        async with SmtpChannel(HOST, server.port, username="bob", tls_context=env.client_tls, timeout=5,
                               **options) as channel:  # type: ignore[arg-type]
            with pytest.raises(PermanentError, match="does not offer STARTTLS"):
                await channel.send(smtp_message())
    assert ["EHLO"] == verbs(server.commands)[:1]
    assert "AUTH" not in verbs(server.commands)
    assert [] == sentinels.leaked(" ".join(server.commands))


async def test_allow_insecure_auth_is_the_only_way_to_log_in_over_plaintext() -> None:
    async with SmtpServer(tls="none", credentials={"bob": sentinels.PASSWORD}) as server:
        channel = SmtpChannel(HOST, server.port, username="bob", password=sentinels.PASSWORD, tls="none",
                              allow_insecure_auth=True, timeout=5)
        async with channel:
            await channel.send(smtp_message())
    assert [("bob", True)] == [(a.login, a.success) for a in server.auth_attempts]


# -- TLS 1.2 or later for Office 365 ----------------------------------------------------------------------


def _permissive_context(env: Env) -> ssl.SSLContext:
    """A client context that accepts TLS 1.0 and 1.1 (to prove the outdated server really offers them)."""
    context = env.certificates.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def test_office365_refuses_a_server_that_offers_only_tls_1_0_and_1_1(env: Env) -> None:
    with OutdatedTlsServer(env.tls_below_12.server_context()) as server:
        # The control: a client that allows old versions gets TLS 1.1 from this server.
        async with SmtpChannel(HOST, server.port, tls_context=_permissive_context(env), timeout=5) as control:
            await control.verify()
        assert ["TLSv1.1"] == server.negotiated

        channel = Office365Channel(ALICE, password=sentinels.PASSWORD, host=HOST, port=server.port,
                                   tls_context=env.client_tls, timeout=5)
        async with channel:
            with pytest.raises(PermanentError, match=r"TLS handshake .* failed .*PROTOCOL_VERSION"):
                await channel.send(office365_message())
    assert ["TLSv1.1"] == server.negotiated  # nothing more was negotiated
    assert set() == _AFTER_TLS_ONLY.intersection(verbs(server.commands))
    assert [] == sentinels.leaked(" ".join(server.commands))


async def test_office365_sends_over_a_server_capped_at_tls_1_2(env: Env) -> None:
    double = Office365Double(certificates=env.certificates, mailboxes={ALICE: sentinels.PASSWORD})
    double._tls_context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with double:
        channel = Office365Channel(ALICE, password=sentinels.PASSWORD, host=HOST, port=double.port,
                                   tls_context=env.client_tls, timeout=5)
        async with channel:
            await channel.send(office365_message())
    assert 1 == len(double.messages)


def test_office365s_own_context_requires_tls_1_2() -> None:
    context = Office365Channel(ALICE, password=sentinels.PASSWORD)._endpoint.tls_context
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_office365_refuses_a_context_that_allows_tls_older_than_1_2(env: Env) -> None:
    with pytest.raises(ConfigurationError, match=r"TLS 1\.2"):
        Office365Channel(ALICE, password=sentinels.PASSWORD, tls_context=_permissive_context(env))
