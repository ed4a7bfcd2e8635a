"""Fault rigs for the reliability suite: the project's real test servers, armed with one fault each.

Nothing here is a new mail server: SMTP faults come from :class:`tests.smtp.servers.ScriptedServer` and
:class:`~tests.smtp.servers.Office365Double`, Gmail faults from :class:`tests.gmail.server.GmailServer`
(with scripted answers at its token endpoint too), SparkPost faults from
:class:`tests.sparkpost.server.SparkpostServer` (with TLS when a case needs it), Microsoft Graph faults from
:class:`tests.graph.server.GraphDouble`. What is added are the
network faults no server answers with: a port nobody listens on, a port whose listen queue is full (the
connection never completes), and a bare TCP listener that drops or ignores whoever connects.

Each rig is an async context manager that yields a ready channel pointed at the armed server, with a
timeout of :data:`TIMEOUT` seconds, and stops everything afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import socket
import ssl
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import google.oauth2.credentials

from sendchannel import (
    GmailOAuthChannel,
    Message,
    Office365Channel,
    Office365GraphChannel,
    SmtpChannel,
    SparkpostChannel,
)
from tests import sentinels
from tests.gmail.server import CLIENT_ID, CLIENT_SECRET, GMAIL_SEND, REFRESH_TOKEN, GmailServer
from tests.graph.server import Answer as GraphAnswer
from tests.graph.server import GraphDouble
from tests.smtp.servers import HOST, Certificates, Office365Double, Script, ScriptedServer
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer

#: Seconds each network wait may take in the matrix: stalls cost this much, so keep it short, but long
#: enough that a loaded machine never reaches it on a step that is answered (0.3 s did, under load).
TIMEOUT = 1.0

GMAIL_ADDRESS = "alice@example.com"
OFFICE365_ADDRESS = "alice@contoso.com"

#: Who each channel sends as (a sender its scope allows).
SENDERS = {
    "smtp": "app@example.com",
    "office365": OFFICE365_ADDRESS,
    "gmail": GMAIL_ADDRESS,
    "sparkpost": "app@example.com",
    "msgraph": OFFICE365_ADDRESS,
}


def message_for(channel: str) -> Message:
    """A small message the named channel may send."""
    return Message(SENDERS[channel], ["bob@example.net"], subject="Fault matrix", text="Hello.\n")


# -- certificates for the TLS faults --------------------------------------------------------------------


class IssuedFor(Certificates):
    """A certificate from ``ca`` for other names than 127.0.0.1 (a host-name mismatch)."""

    def __init__(self, ca: Any, *names: str) -> None:
        self.ca = ca
        self.server_certificate = ca.issue_cert(*names)


class TlsBelow12(Certificates):
    """The trusted certificate, served only over TLS 1.0 and 1.1 (as an outdated server would)."""

    def __init__(self, trusted: Certificates) -> None:
        self.ca = trusted.ca
        self.server_certificate = trusted.server_certificate

    def server_context(self, *, minimum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        # OpenSSL's default security level refuses TLS below 1.2 altogether; level 0 lets it offer them.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.server_certificate.configure_cert(context)
        return context


@dataclass
class Env:
    """What every rig needs: the trusted test authority and the certificates that must be refused.

    Attributes:
        certificates: The authority the client trusts (its certificate names 127.0.0.1).
        client_tls: A client context trusting ``certificates`` (and nothing else).
        untrusted: Another authority, which no client context trusts.
        wrong_host: A certificate from the trusted authority, for ``mail.wrong.example`` only.
        tls_below_12: The trusted certificate, on a server that offers only TLS 1.0 and 1.1.
    """

    certificates: Certificates
    untrusted: Certificates = field(default_factory=Certificates)
    wrong_host: Certificates = field(init=False)
    tls_below_12: Certificates = field(init=False)

    def __post_init__(self) -> None:
        self.wrong_host = IssuedFor(self.certificates.ca, "mail.wrong.example")
        self.tls_below_12 = TlsBelow12(self.certificates)

    @property
    def client_tls(self) -> ssl.SSLContext:
        return self.certificates.client_context()

    def server_tls(self, certificate: str) -> Certificates:
        """``"trusted"``, ``"untrusted"``, ``"wrong-host"`` or ``"tls1.1-only"``."""
        return {
            "trusted": self.certificates,
            "untrusted": self.untrusted,
            "wrong-host": self.wrong_host,
            "tls1.1-only": self.tls_below_12,
        }[certificate]


# -- network faults without a server ----------------------------------------------------------------------


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full and never accepted from: a new connection never completes."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    try:
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextlib.asynccontextmanager
async def bare_listener(mode: str) -> AsyncIterator[int]:
    """A TCP listener on the test's loop that ``"drop"``s each connection at once or ``"stall"``s it."""
    stopping = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if mode == "drop":
            writer.transport.abort()
            return
        await stopping.wait()
        writer.transport.abort()

    server = await asyncio.start_server(client, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        stopping.set()
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


# -- SMTP and Office 365 -------------------------------------------------------------------------------------


class OutdatedTlsServer:
    """An SMTP server that offers STARTTLS with TLS 1.0 and 1.1 only, on a thread with blocking sockets.

    The asyncio servers cannot play this part: asyncio aborts a connection whose TLS handshake failed
    without sending the alert, so the client sees a dropped connection. An OpenSSL server (Postfix, Exim,
    an old appliance) sends the ``protocol_version`` alert first, and so does this one.

    Attributes:
        commands: Every command line received in plaintext, in order (AUTH, MAIL, DATA must never be).
        negotiated: The TLS version of each handshake that succeeded.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.commands: list[str] = []
        self.negotiated: list[str] = []
        self._listener = socket.socket()
        self._listener.bind((HOST, 0))
        self._listener.listen()
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="outdated-tls-server", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def __enter__(self) -> OutdatedTlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    self._converse(connection)

    def _converse(self, connection: socket.socket) -> None:
        plain: socket.socket | ssl.SSLSocket = connection
        encrypted = False
        plain.sendall(b"220 outdated.example ESMTP\r\n")
        reader = plain.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            if not encrypted:
                self.commands.append(command)
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                offer = b"250-AUTH PLAIN LOGIN\r\n" if encrypted else b"250-STARTTLS\r\n"
                plain.sendall(b"250-outdated.example\r\n" + offer + b"250 8BITMIME\r\n")
            elif verb == "STARTTLS" and not encrypted:
                plain.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                plain = self.context.wrap_socket(connection, server_side=True)  # sends the alert on failure
                self.negotiated.append(str(plain.version()))
                encrypted = True
                reader = plain.makefile("rb")
            elif verb == "QUIT":
                plain.sendall(b"221 2.0.0 Bye\r\n")
                return
            elif encrypted:
                plain.sendall(b"250 2.0.0 Ok\r\n")
            else:
                plain.sendall(b"530 5.7.0 Must issue a STARTTLS command first\r\n")


@contextlib.asynccontextmanager
async def outdated_tls(env: Env, kind: str) -> AsyncIterator[SmtpChannel]:
    """A server offering only TLS 1.0/1.1 after STARTTLS, and a channel that trusts its certificate."""
    with OutdatedTlsServer(env.tls_below_12.server_context()) as server:
        async with smtp_channel(kind, server.port, tls_context=env.client_tls) as channel:
            yield channel


def smtp_channel(
    kind: str,
    port: int,
    *,
    tls: str = "starttls",
    tls_context: ssl.SSLContext | None = None,
    **options: Any,
) -> SmtpChannel:
    """An SmtpChannel (``kind="smtp"``) or Office365Channel logging in with the sentinel password."""
    if "token_provider" not in options:
        options.setdefault("password", sentinels.PASSWORD)
    if kind == "office365":
        return Office365Channel(
            OFFICE365_ADDRESS, host=HOST, port=port, tls_context=tls_context, timeout=TIMEOUT, **options
        )
    return SmtpChannel(
        HOST, port, username="bob", tls=tls, tls_context=tls_context, timeout=TIMEOUT,  # type: ignore[arg-type]
        **options,
    )


@contextlib.asynccontextmanager
async def scripted(
    env: Env,
    kind: str,
    script: dict[str, Any],
    *,
    server_tls: str = "starttls",
    channel_tls: str = "starttls",
    certificate: str = "trusted",
) -> AsyncIterator[SmtpChannel]:
    """A ScriptedServer answering as ``script`` says, and a channel that trusts the test authority."""
    certificates = env.server_tls(certificate) if server_tls != "none" else None
    async with ScriptedServer(Script(**script), certificates=certificates, tls=server_tls) as server:
        channel = smtp_channel(kind, server.port, tls=channel_tls, tls_context=env.client_tls)
        async with channel:
            yield channel


@contextlib.asynccontextmanager
async def unreachable_smtp(env: Env, kind: str, how: str) -> AsyncIterator[SmtpChannel]:
    """A channel whose server refuses the connection (``"refused"``) or never completes it (``"stall"``)."""
    if how == "refused":
        async with smtp_channel(kind, closed_port(), tls_context=env.client_tls) as channel:
            yield channel
        return
    with full_backlog() as port:
        async with smtp_channel(kind, port, tls_context=env.client_tls) as channel:
            yield channel


@contextlib.asynccontextmanager
async def office365_double(
    env: Env,
    *,
    basic_auth: str = "enabled",
    password: str | None = sentinels.PASSWORD,
    token_provider: Callable[[], Any] | None = None,
    max_connections: int = 3,
    recipient_quota: int = 10_000,
) -> AsyncIterator[SmtpChannel]:
    """The Office 365 double (alice@contoso.com, the sentinel password and token) and a channel for it."""
    async with Office365Double(
        certificates=env.certificates,
        mailboxes={OFFICE365_ADDRESS: sentinels.PASSWORD},
        tokens={sentinels.TOKEN: OFFICE365_ADDRESS},
        basic_auth=basic_auth,
        max_connections=max_connections,
        recipient_quota=recipient_quota,
    ) as double:
        options: dict[str, Any] = (
            {"token_provider": token_provider} if token_provider is not None else {"password": password}
        )
        async with smtp_channel("office365", double.port, tls_context=env.client_tls, **options) as channel:
            yield channel


# -- Gmail ------------------------------------------------------------------------------------------------


class FaultyGmailServer(GmailServer):
    """The local Gmail API server, whose token endpoint can also be scripted.

    ``token_faults`` holds the next answers of ``POST /token``: ``"drop"`` (read the request, close
    without answering), ``"stall"`` (never answer) or ``(status, body)`` with a JSON-able or bytes body.
    """

    def __init__(self, address: str = GMAIL_ADDRESS, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, tls=tls)
        self.token_faults: collections.deque[Any] = collections.deque()
        self.released = threading.Event()

    def start(self) -> FaultyGmailServer:
        super().start()
        assert self._httpd is not None
        base = self._httpd.RequestHandlerClass
        owner = self

        class Handler(base):  # type: ignore[valid-type,misc]
            def _handle(self) -> None:
                if self.path.split("?")[0] == "/token" and owner.token_faults:
                    fault = owner.token_faults.popleft()
                    self._record()
                    if fault == "stall":
                        owner.released.wait(10)
                        self.close_connection = True
                    elif fault == "drop":
                        self._drop()
                    else:
                        status, body = fault
                        self._answer(status, body)
                    return
                super()._handle()

        self._httpd.RequestHandlerClass = Handler
        # Clients give up on purpose here (timeouts): a handler writing to a closed socket is expected.
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        self.released.set()
        super().stop()

    def grant_token(self, token: str) -> None:
        """Accept ``token`` for sending as if this server had issued it (no refresh needed first)."""
        with self._lock:
            self._tokens[token] = [GMAIL_SEND]


def gmail_credentials(token_uri: str, token: str | None = None) -> google.oauth2.credentials.Credentials:
    """An authorised-user grant refreshing at ``token_uri``; with ``token``, one valid for an hour."""
    credentials = google.oauth2.credentials.Credentials(
        token,
        refresh_token=REFRESH_TOKEN,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_uri=token_uri,
        scopes=[GMAIL_SEND],
    )
    if token is not None:
        credentials.expiry = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
            hours=1
        )
    return credentials


@contextlib.asynccontextmanager
async def gmail(
    env: Env,
    arm: Callable[[FaultyGmailServer], None] = lambda server: None,
    *,
    certificate: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    fresh_token: bool = True,
    api_port: int | None = None,
    token_port: int | None = None,
    https: bool = False,
) -> AsyncIterator[GmailOAuthChannel]:
    """The local Gmail API server, armed by ``arm``, and a channel for alice@example.com.

    Args:
        certificate: Serve HTTPS with this certificate (``"trusted"``, ``"untrusted"``, ``"wrong-host"``).
        tls_context: The channel's TLS context (the test authority's by default; see ``tls_default``).
        fresh_token: Give the channel no access token, so the first call refreshes it; otherwise the
            channel holds a valid token and its first call goes straight to the API.
        api_port: Point the API endpoint at this port instead of the server's.
        token_port: Point the token endpoint at this port instead of the server's.
        https: Speak https to the server even when it serves plain HTTP.
    """
    tls = env.server_tls(certificate).server_context() if certificate is not None else None
    with FaultyGmailServer(tls=tls) as server:
        arm(server)
        scheme = "https" if tls is not None or https else "http"
        api = f"{scheme}://{HOST}:{api_port or server.port}/"
        token_uri = f"{scheme}://{HOST}:{token_port or server.port}/token"
        token = None
        if not fresh_token:
            token = f"{sentinels.TOKEN}-granted"
            server.grant_token(token)
        channel = GmailOAuthChannel(
            gmail_credentials(token_uri, token),
            address=GMAIL_ADDRESS,
            api_endpoint=api,
            timeout=TIMEOUT,
            tls_context=tls_context if tls_context is not None else env.client_tls,
        )
        async with channel:
            yield channel


# -- SparkPost --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sparkpost(
    env: Env,
    answer: Answer | None = None,
    *,
    times: int = 4,
    certificate: str | None = None,
    trust: bool = True,
    port: int | None = None,
    https: bool = False,
) -> AsyncIterator[SparkpostChannel]:
    """The local SparkPost server answering the next ``times`` requests with ``answer``, and a channel.

    Args:
        certificate: Serve HTTPS with this certificate (``"trusted"``, ``"untrusted"``, ``"wrong-host"``).
        trust: Give the channel a tls_context that trusts the test authority (else the system's).
        port: Point the channel at this port instead of the server's.
        https: Speak https to the server even when it serves plain HTTP.
    """
    server = SparkpostServer()
    if certificate is not None:
        context = env.server_tls(certificate).server_context()
        server._httpd.socket = context.wrap_socket(server._httpd.socket, server_side=True)
    server.start()
    try:
        if answer is not None:
            server.script(answer, times=times)
        scheme = "https" if certificate is not None or https else "http"
        base_url = f"{scheme}://{HOST}:{port or server._httpd.server_address[1]}/api/v1"
        context = env.client_tls if trust and scheme == "https" else None
        channel = SparkpostChannel(
            API_KEY, domains=["example.com"], base_url=base_url, timeout=TIMEOUT, tls_context=context
        )
        async with channel:
            yield channel
    finally:
        server.stop()


# -- Office 365 through Microsoft Graph ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def graph(
    env: Env,
    answer: GraphAnswer | None = None,
    *,
    times: int = 4,
    certificate: str | None = None,
    port: int | None = None,
    token: str = sentinels.TOKEN,
) -> AsyncIterator[Office365GraphChannel]:
    """The local Graph double answering the next ``times`` requests with ``answer``, and Alice's channel.

    Args:
        certificate: Serve HTTPS with this certificate (``"trusted"``, ``"untrusted"``, ``"wrong-host"``);
            the channel trusts the test authority.
        port: Point the channel at this port instead of the double's (https when ``certificate`` is set).
        token: The token the channel presents (the double accepts the sentinel token for Alice).
    """
    context = env.server_tls(certificate).server_context() if certificate is not None else None
    with GraphDouble(ssl_context=context) as server:
        server.grant(sentinels.TOKEN, mailbox=OFFICE365_ADDRESS)
        if answer is not None:
            server.script(answer, times=times)

        async def token_provider() -> str:
            return token

        scheme = "https" if certificate is not None else "http"
        channel = Office365GraphChannel(
            OFFICE365_ADDRESS,
            token_provider=token_provider,
            base_url=f"{scheme}://{HOST}:{port or server.port}/v1.0",
            timeout=TIMEOUT,
            tls_context=env.client_tls if certificate is not None else None,
        )
        async with channel:
            yield channel


__all__ = [
    "SENDERS",
    "TIMEOUT",
    "Env",
    "FaultyGmailServer",
    "bare_listener",
    "closed_port",
    "OutdatedTlsServer",
    "full_backlog",
    "gmail",
    "gmail_credentials",
    "graph",
    "message_for",
    "office365_double",
    "outdated_tls",
    "scripted",
    "smtp_channel",
    "sparkpost",
    "unreachable_smtp",
]
