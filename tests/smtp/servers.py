"""Real SMTP servers on 127.0.0.1 for tests: reusable by any test in the project.

* :class:`Certificates` - a trustme certificate authority, with server and client SSL contexts.
* :class:`SmtpServer` - aiosmtpd: plaintext, STARTTLS or implicit TLS; AUTH PLAIN/LOGIN and XOAUTH2;
  SIZE, SMTPUTF8 and recipient refusals on request. It keeps what it received.
* :class:`ScriptedServer` - a raw asyncio SMTP server that answers each stage (greeting, EHLO,
  STARTTLS, AUTH, MAIL, RCPT, DATA, end of DATA) as a :class:`Script` says: any reply, ``DROP`` (close
  the connection) or ``STALL`` (never answer).
* :class:`Office365Double` - behaves as Exchange Online's SMTP AUTH submission documents: STARTTLS
  required, AUTH LOGIN and XOAUTH2 after TLS only, 3 concurrent connections a mailbox (``432 4.3.2``),
  Send As checks (``550 5.7.60``), the recipient quota (``554 5.2.0 ...SubmissionQuotaExceeded...``),
  ``535 5.7.3`` for a bad password or token, ``535 5.7.139`` with Basic auth disabled, ``550 5.7.30``
  with it retired.

Every server runs on the event loop of the test (``async with SmtpServer() as server``) or, for code
that runs its own loop (``asyncio.run``, a sync facade, a CLI), on a loop in a background thread
(``with server.in_thread():``). Read ``server.port`` once it is started.

Example::

    async def test_something(certificates):
        async with SmtpServer(tls="starttls", certificates=certificates,
                              credentials={"bob": "pw"}) as server:
            channel = SmtpChannel("127.0.0.1", server.port, username="bob", password="pw",
                                  tls_context=certificates.client_context())
            await channel.send(message)
        assert [message.recipients] == [m.rcpt_tos for m in server.messages]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import hmac
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "DROP",
    "STALL",
    "Certificates",
    "Office365Double",
    "Received",
    "ScriptedServer",
    "Script",
    "SmtpServer",
]

HOST = "127.0.0.1"


# -- certificates ---------------------------------------------------------------------------------------


class Certificates:
    """A private certificate authority and a certificate for 127.0.0.1 and localhost (trustme)."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_certificate = self.ca.issue_cert(HOST, "localhost")

    def server_context(self, *, minimum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A server-side context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if minimum_version is not None:
            context.minimum_version = minimum_version
        self.server_certificate.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this authority (and only it)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def write_ca(self, path: str) -> str:
        """Write the authority's certificate as PEM to ``path`` (for SSL_CERT_FILE or --ca-file)."""
        self.ca.cert_pem.write_to_path(path)
        return path


# -- what a server received -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as a server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()
    login: str | None = None

    def parsed(self) -> email.message.EmailMessage:
        """The data parsed with the stdlib's default policy."""
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        return message


@dataclass
class AuthAttempt:
    """One AUTH command the server answered."""

    mechanism: str
    login: str | None
    success: bool


# -- running a server on the test's loop or in a thread ---------------------------------------------------


class _Runnable:
    """start/stop on the running loop, ``async with``, and ``in_thread()`` for code with its own loop."""

    _server: asyncio.AbstractServer | None = None

    async def _serve(self) -> asyncio.AbstractServer:
        raise NotImplementedError

    async def start(self) -> None:
        """Start listening on 127.0.0.1 (a free port; see :attr:`port`)."""
        self._server = await self._serve()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        port: int = self._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return port

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        await self._before_stop()
        if self._server is not None:
            self._server.close()
            close_clients = getattr(self._server, "close_clients", None)
            if close_clients is not None:  # Python 3.13+
                close_clients()
            for transport in list(self._transports):
                transport.close()
            await self._server.wait_closed()
            self._server = None

    async def _before_stop(self) -> None:
        pass

    @property
    def _transports(self) -> set[asyncio.BaseTransport]:
        transports: set[asyncio.BaseTransport] = self.__dict__.setdefault("_open_transports", set())
        return transports

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[Any]:
        """Run the server on an event loop in a background thread while the block runs."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="smtp-test-server", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


# -- aiosmtpd server ----------------------------------------------------------------------------------


def _xoauth2_login(blob: bytes) -> tuple[str, str] | None:
    # "user=" user "\x01auth=Bearer " token "\x01\x01"
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    user = fields.get("user")
    auth = fields.get("auth", "")
    if user is None or not auth.startswith("Bearer "):
        return None
    return user, auth.removeprefix("Bearer ")


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol, telling its owner when connections open and close."""

    def __init__(self, owner: _AiosmtpdServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        fresh = self.transport is None
        super().connection_made(transport)
        if fresh:
            self._owner._connection_opened(self, transport)

    def connection_lost(self, error: Exception | None) -> None:
        transport = self.transport
        super().connection_lost(error)
        self._owner._connection_closed(self, transport)


class _AiosmtpdServer(_Runnable):
    """What SmtpServer and Office365Double share: aiosmtpd with connection bookkeeping."""

    hostname = "smtp-test.localhost"

    def __init__(self, *, tls: str, certificates: Certificates | None) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be 'none', 'starttls' or 'implicit', got {tls!r}")
        if tls != "none" and certificates is None:
            raise ValueError("a TLS server needs certificates=Certificates()")
        self.tls = tls
        self.certificates = certificates
        self._tls_context = certificates.server_context() if certificates is not None else None
        #: Messages received, in order.
        self.messages: list[Received] = []
        #: Every AUTH command answered, in order.
        self.auth_attempts: list[AuthAttempt] = []
        #: Connections accepted so far, and the most open at once.
        self.connections = 0
        self.active = 0
        self.peak_active = 0

    def _connection_opened(self, protocol: SMTP, transport: asyncio.BaseTransport) -> None:
        self.connections += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        self._transports.add(transport)

    def _connection_closed(self, protocol: SMTP, transport: asyncio.BaseTransport | None) -> None:
        self.active -= 1
        if transport is not None:
            self._transports.discard(transport)

    def _protocol_options(self) -> dict[str, Any]:
        raise NotImplementedError

    def _handler(self) -> Any:
        raise NotImplementedError

    async def _serve(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        options = self._protocol_options()
        handler = self._handler()

        def factory() -> SMTP:
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without TLS; plaintext AUTH is what some tests are about.
                warnings.simplefilter("ignore", UserWarning)
                return _CountingSMTP(
                    self,
                    handler,
                    hostname=self.hostname,
                    tls_context=None if self.tls == "implicit" else self._tls_context,
                    loop=loop,
                    **options,
                )

        return await loop.create_server(
            factory, HOST, 0, ssl=self._tls_context if self.tls == "implicit" else None
        )


class SmtpServer(_AiosmtpdServer):
    """An aiosmtpd server on 127.0.0.1 that keeps what it receives.

    Args:
        tls: ``"none"``, ``"starttls"`` (offered, and required before MAIL when ``require_tls``) or
            ``"implicit"``.
        certificates: The certificate authority for TLS.
        credentials: ``{login: password}``; with it AUTH PLAIN and LOGIN are offered and required.
        tokens: ``{access_token: login}``; with it AUTH XOAUTH2 is offered (and required). A refused
            token gets Gmail's answer: a ``334`` challenge with a JSON error, then
            ``535 5.7.8 Username and Password not accepted``.
        mechanisms: The mechanisms to offer (default: PLAIN and LOGIN with credentials, XOAUTH2 with
            tokens).
        require_tls: With STARTTLS, refuse MAIL and AUTH before TLS (default True).
        smtputf8: Offer SMTPUTF8.
        size_limit: Offer SIZE with this limit and refuse larger messages (None: aiosmtpd's 33 MiB).
        refuse: ``{recipient: reply}`` for RCPT TO (``"550 5.1.1 no such user"``).
        data_reply: Called with the Envelope at the end of DATA; returns the reply (default
            ``250 2.0.0 Ok: queued as <n>``).
    """

    def __init__(
        self,
        *,
        tls: str = "none",
        certificates: Certificates | None = None,
        credentials: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        mechanisms: Sequence[str] | None = None,
        require_tls: bool = True,
        smtputf8: bool = True,
        size_limit: int | None = None,
        refuse: Mapping[str, str] | None = None,
        data_reply: Callable[[Envelope], str] | None = None,
    ) -> None:
        super().__init__(tls=tls, certificates=certificates)
        self.credentials = dict(credentials or {})
        self.tokens = dict(tokens or {})
        if mechanisms is None:
            mechanisms = (["PLAIN", "LOGIN"] if self.credentials else []) + (
                ["XOAUTH2"] if self.tokens else []
            )
        self.mechanisms = [m.upper() for m in mechanisms]
        self.require_tls = require_tls
        self.smtputf8 = smtputf8
        self.size_limit = size_limit
        self.refuse = {k.lower(): v for k, v in (refuse or {}).items()}
        self.data_reply = data_reply

    @property
    def _auth_enabled(self) -> bool:
        return bool(self.credentials or self.tokens)

    def _protocol_options(self) -> dict[str, Any]:
        excluded = [m for m in ("PLAIN", "LOGIN", "XOAUTH2") if m not in self.mechanisms]
        options: dict[str, Any] = {
            "enable_SMTPUTF8": self.smtputf8,
            "decode_data": False,
            "require_starttls": self.tls == "starttls" and self.require_tls,
            "auth_required": self._auth_enabled,
            "auth_require_tls": self.tls != "none",
            "auth_exclude_mechanism": excluded,
            "authenticator": self._authenticate,
        }
        if self.size_limit is not None:
            options["data_size_limit"] = self.size_limit
        return options

    def _handler(self) -> Any:
        return _SmtpHandler(self)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login = data.login.decode("utf-8", "replace")
            expected = self.credentials.get(login)
            ok = expected is not None and hmac.compare_digest(expected.encode(), data.password)
            self.auth_attempts.append(AuthAttempt(mechanism, login, ok))
            if ok:
                return AuthResult(success=True, auth_data=data.login)
        return AuthResult(success=False, handled=False)


class _SmtpHandler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._server.refuse.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        auth = session.auth_data
        self._server.messages.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data if isinstance(data, bytes) else data.encode(),
                mail_options=tuple(envelope.mail_options),
                login=auth.decode() if isinstance(auth, bytes) else None,
            )
        )
        if self._server.data_reply is not None:
            return self._server.data_reply(envelope)
        return f"250 2.0.0 Ok: queued as Q{len(self._server.messages):06d}"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        owner = self._server
        if len(args) > 1:
            blob_text = args[1]
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob_text = base64.b64encode(answer).decode()
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode")
        parsed = _xoauth2_login(blob)
        ok = parsed is not None and owner.tokens.get(parsed[1]) == parsed[0]
        owner.auth_attempts.append(AuthAttempt("XOAUTH2", parsed[0] if parsed else None, ok))
        if ok:
            assert parsed is not None
            return AuthResult(success=True, auth_data=parsed[0].encode())
        error = b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
        await server.challenge_auth(error, encode_to_b64=True)
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.8 Username and Password not accepted. Learn more at https://support.example",
        )


# -- scripted server --------------------------------------------------------------------------------


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Close the connection instead of answering.
DROP = _Sentinel("DROP")
#: Never answer (until the server stops).
STALL = _Sentinel("STALL")

Action = str | _Sentinel
#: One action, or one per use (the last one repeats), or a function of the server.
Actions = Action | Sequence[Action] | Callable[["ScriptedServer"], Action]


@dataclass
class Script:
    """What a :class:`ScriptedServer` answers at each stage.

    Each field is a reply (``"250 2.1.0 Ok"``, several lines with ``\\n``), ``DROP``, ``STALL``, a list
    of those used one per command (the last one repeats), or a function of the server returning one.
    ``rcpt`` may also map recipients to actions. ``extensions`` are the EHLO keywords (STARTTLS is
    added when the server has a TLS context for STARTTLS).
    """

    greeting: Actions = "220 scripted.localhost ESMTP ready"
    ehlo: Actions | None = None
    helo: Actions = "250 scripted.localhost"
    extensions: Sequence[str] = ("PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES",
                                 "SMTPUTF8", "AUTH PLAIN LOGIN XOAUTH2")
    starttls: Actions = "220 2.0.0 Ready to start TLS"
    auth: Actions = "235 2.7.0 Authentication successful"
    mail: Actions = "250 2.1.0 Ok"
    rcpt: Actions | Mapping[str, Actions] = "250 2.1.5 Ok"
    data: Actions = "354 End data with <CR><LF>.<CR><LF>"
    message: Actions = "250 2.0.0 Ok: queued as SCRIPTED1"
    rset: Actions = "250 2.0.0 Ok"
    noop: Actions = "250 2.0.0 Ok"
    quit: Actions = "221 2.0.0 Bye"
    #: After answering DATA with 354, read the message (False: stop reading, as a stuck server would).
    read_data: bool = True
    uses: dict[str, int] = field(default_factory=dict)


class ScriptedServer(_Runnable):
    """A raw SMTP server on 127.0.0.1 whose every answer comes from a :class:`Script`.

    Args:
        script: The answers.
        certificates: With ``tls="starttls"`` or ``"implicit"``, the certificate authority.
        tls: ``"none"``, ``"starttls"`` (STARTTLS offered and carried out after a 220 answer) or
            ``"implicit"``.

    Attributes:
        commands: Every command line received, in order, across connections (AUTH payloads included).
        messages: The message data received (dot-unstuffed), in order.
        connections: How many connections were accepted.
    """

    def __init__(
        self, script: Script | None = None, *, certificates: Certificates | None = None, tls: str = "none"
    ) -> None:
        if tls != "none" and certificates is None:
            raise ValueError("a TLS server needs certificates=Certificates()")
        self.script = script or Script()
        self.tls = tls
        self._tls_context = certificates.server_context() if certificates is not None else None
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve(self) -> asyncio.AbstractServer:
        self._stopping = asyncio.Event()
        return await asyncio.start_server(
            self._client, HOST, 0, ssl=self._tls_context if self.tls == "implicit" else None
        )

    async def _before_stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def action(self, stage: str, key: str | None = None) -> Action:
        """The action for the next use of ``stage`` (counted per stage)."""
        spec: Any = getattr(self.script, stage)
        if key is not None and isinstance(spec, Mapping):
            spec = spec.get(key.lower(), spec.get("*", "250 2.1.5 Ok"))
        count = self.script.uses.get(stage, 0)
        self.script.uses[stage] = count + 1
        if callable(spec):
            return spec(self)
        if isinstance(spec, (str, _Sentinel)):
            return spec
        return spec[min(count, len(spec) - 1)]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        self.connections += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self._transports.discard(writer.transport)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, action: Action) -> bool:
        """Send ``action``; False when the conversation is over."""
        if action is DROP:
            writer.transport.abort()
            return False
        if action is STALL:
            await self._stopping.wait()
            return False
        assert isinstance(action, str)
        lines = action.split("\n")
        out = []
        for index, line in enumerate(lines):
            code, rest = line[:3], line[4:]
            separator = "-" if index < len(lines) - 1 else " "
            out.append(f"{code}{separator}{rest}" if rest or separator == "-" else code)
        writer.write(("\r\n".join(out) + "\r\n").encode("utf-8"))
        await writer.drain()
        return True

    def _ehlo_reply(self, tls_active: bool) -> str:
        lines = ["250 scripted.localhost greets you"]
        extensions = list(self.script.extensions)
        if self.tls == "starttls" and not tls_active:
            extensions.append("STARTTLS")
        lines.extend(f"250 {extension}" for extension in extensions)
        return "\n".join(lines)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls_active = self.tls == "implicit"
        mail_ok = rcpt_ok = False  # as a real server, refuse RCPT without MAIL and DATA without RCPT
        if not await self._answer(writer, self.action("greeting")):
            return
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "HELO":
                action = self.action("helo")
            elif verb == "EHLO":
                action = (
                    self.action("ehlo") if self.script.ehlo is not None else self._ehlo_reply(tls_active)
                )
            elif verb == "STARTTLS":
                action = self.action("starttls")
                if isinstance(action, str) and action.startswith("220") and self._tls_context:
                    if not await self._answer(writer, action):
                        return
                    await writer.start_tls(self._tls_context)
                    tls_active = True
                    continue
            elif verb == "AUTH":
                action = self.action("auth")
                parts = text.split()
                if isinstance(action, str) and action.startswith("235"):
                    if len(parts) == 2 and parts[1].upper() == "LOGIN":
                        for prompt in ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"):
                            await self._answer(writer, prompt)
                            self.commands.append((await reader.readline()).decode().rstrip("\r\n"))
                    elif len(parts) == 3 and parts[1].upper() == "LOGIN":
                        await self._answer(writer, "334 UGFzc3dvcmQ6")
                        self.commands.append((await reader.readline()).decode().rstrip("\r\n"))
            elif verb == "MAIL":
                action = self.action("mail")
                mail_ok = isinstance(action, str) and action.startswith("2")
                rcpt_ok = False
            elif verb == "RCPT":
                if not mail_ok:
                    action = "503 5.5.1 Error: need MAIL command"
                else:
                    address = text.partition(":")[2].strip().split(" ")[0].strip("<>")
                    action = self.action("rcpt", address)
                    rcpt_ok = rcpt_ok or (isinstance(action, str) and action.startswith("2"))
            elif verb == "DATA":
                action = self.action("data") if rcpt_ok else "554 5.5.1 Error: no valid recipients"
                mail_ok = rcpt_ok = False
                if isinstance(action, str) and action.startswith("354"):
                    if not await self._answer(writer, action):
                        return
                    if not self.script.read_data:
                        await self._stopping.wait()
                        return
                    body = bytearray()
                    while True:
                        chunk = await reader.readline()
                        if not chunk:
                            return
                        if chunk == b".\r\n":
                            break
                        body.extend(chunk[1:] if chunk.startswith(b"..") else chunk)
                    self.messages.append(bytes(body))
                    action = self.action("message")
            elif verb == "RSET":
                action = self.action("rset")
                mail_ok = rcpt_ok = False
            elif verb == "NOOP":
                action = self.action("noop")
            elif verb == "QUIT":
                await self._answer(writer, self.action("quit"))
                return
            else:
                action = "502 5.5.2 Command not recognized"
            if not await self._answer(writer, action):
                return


# -- Office 365 double ------------------------------------------------------------------------------


class Office365Double(_AiosmtpdServer):
    """An SMTP server that behaves as Exchange Online's SMTP AUTH client submission documents.

    Args:
        certificates: The certificate authority (the double speaks STARTTLS only).
        mailboxes: ``{address: password}`` of mailboxes that may log in with Basic auth.
        tokens: ``{access_token: address}`` of OAuth tokens accepted by XOAUTH2.
        send_as: ``{address: [other addresses it has Send As permission for]}``.
        basic_auth: ``"enabled"``, ``"disabled"`` (535 5.7.139) or ``"retired"`` (550 5.7.30).
        recipient_quota: Recipients a mailbox may send to in any 24 hours (10,000).
        max_connections: Concurrent connections a mailbox may have (3).
        clock: The time source for the 24-hour window (``time.monotonic``).
    """

    hostname = "SN7PR04MB0000.namprd04.prod.outlook.test"

    def __init__(
        self,
        *,
        certificates: Certificates,
        mailboxes: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        send_as: Mapping[str, Sequence[str]] | None = None,
        basic_auth: str = "enabled",
        recipient_quota: int = 10_000,
        max_connections: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(tls="starttls", certificates=certificates)
        self._tls_context = certificates.server_context(minimum_version=ssl.TLSVersion.TLSv1_2)
        self.mailboxes = {k.lower(): v for k, v in (mailboxes or {}).items()}
        self.tokens = {k: v.lower() for k, v in (tokens or {}).items()}
        self.send_as = {k.lower(): {a.lower() for a in v} for k, v in (send_as or {}).items()}
        if basic_auth not in ("enabled", "disabled", "retired"):
            raise ValueError("basic_auth must be 'enabled', 'disabled' or 'retired'")
        self.basic_auth = basic_auth
        self.recipient_quota = recipient_quota
        self.max_connections = max_connections
        self.clock = clock
        #: Live signed-in connections by mailbox, in the order they signed in.
        self.sessions: dict[str, list[int]] = {}
        #: The most signed-in connections a mailbox had at once.
        self.peak_sessions: dict[str, int] = {}
        self._sent: dict[str, list[tuple[float, int]]] = {}
        self._mailbox_of: dict[int, str] = {}

    def tag(self) -> str:
        """The ``[Hostname=...]`` tag Exchange Online ends its replies with."""
        return f"[Hostname={self.hostname}]"

    def _protocol_options(self) -> dict[str, Any]:
        return {
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "require_starttls": True,
            "auth_required": False,
            "auth_require_tls": True,
            "auth_exclude_mechanism": ["PLAIN", "CRAM-MD5"],
            "authenticator": self._authenticate,
            "data_size_limit": 35 * 1024 * 1024 + 1024 * 1024,
        }

    def _handler(self) -> Any:
        return _Office365Handler(self)

    def _connection_closed(self, protocol: SMTP, transport: asyncio.BaseTransport | None) -> None:
        super()._connection_closed(protocol, transport)
        mailbox = self._mailbox_of.pop(id(protocol), None)
        live = self.sessions.get(mailbox or "", [])
        if id(protocol) in live:
            live.remove(id(protocol))

    def _signed_in(self, protocol: SMTP, mailbox: str) -> None:
        self._mailbox_of[id(protocol)] = mailbox
        live = self.sessions.setdefault(mailbox, [])
        live.append(id(protocol))
        self.peak_sessions[mailbox] = max(self.peak_sessions.get(mailbox, 0), len(live))

    def _over_connection_cap(self, protocol: SMTP) -> bool:
        mailbox = self._mailbox_of.get(id(protocol))
        if mailbox is None:
            return False
        return id(protocol) in self.sessions.get(mailbox, [])[self.max_connections :]

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode("utf-8", "replace").lower()
        if self.basic_auth == "disabled":
            self.auth_attempts.append(AuthAttempt(mechanism, login, False))
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
                f"for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. {self.tag()}",
            )
        if self.basic_auth == "retired":
            self.auth_attempts.append(AuthAttempt(mechanism, login, False))
            return AuthResult(
                success=False,
                handled=False,
                message="550 5.7.30 Basic authentication is not supported for Client Submission. "
                f"{self.tag()}",
            )
        expected = self.mailboxes.get(login)
        ok = expected is not None and hmac.compare_digest(expected.encode(), data.password)
        self.auth_attempts.append(AuthAttempt(mechanism, login, ok))
        if not ok:
            return AuthResult(
                success=False, handled=False, message=f"535 5.7.3 Authentication unsuccessful {self.tag()}"
            )
        self._signed_in(server, login)
        return AuthResult(success=True, auth_data=login.encode())

    def _allowed_senders(self, mailbox: str) -> set[str]:
        return {mailbox} | self.send_as.get(mailbox, set())

    def _quota_left(self, mailbox: str, now: float) -> int:
        window = [(t, n) for t, n in self._sent.get(mailbox, []) if t > now - 86400]
        self._sent[mailbox] = window
        return self.recipient_quota - sum(n for _, n in window)


class _Office365Handler:
    def __init__(self, double: Office365Double) -> None:
        self._double = double

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        double = self._double
        if len(args) < 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode response")
        try:
            parsed = _xoauth2_login(base64.b64decode(args[1], validate=True))
        except ValueError:
            parsed = None
        ok = parsed is not None and double.tokens.get(parsed[1]) == parsed[0].lower()
        double.auth_attempts.append(AuthAttempt("XOAUTH2", parsed[0] if parsed else None, ok))
        if not ok:
            return AuthResult(
                success=False, handled=False, message=f"535 5.7.3 Authentication unsuccessful {double.tag()}"
            )
        assert parsed is not None
        double._signed_in(server, parsed[0].lower())
        return AuthResult(success=True, auth_data=parsed[0].lower().encode())

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        double = self._double
        if not session.authenticated:
            return f"530 5.7.57 Client not authenticated to send mail. {double.tag()}"
        if double._over_connection_cap(server):
            return (
                "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
                f"for more information. {double.tag()}"
            )
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        double = self._double
        mailbox = double._mailbox_of.get(id(server), "")
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        header_from = [a.addr_spec.lower() for a in getattr(parsed.get("From"), "addresses", ())]
        allowed = double._allowed_senders(mailbox)
        senders = {str(envelope.mail_from).lower(), *header_from}
        if not senders <= allowed:
            return (
                "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
                f"{double.tag()}"
            )
        now = double.clock()
        if double._quota_left(mailbox, now) < len(envelope.rcpt_tos):
            return (
                "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
                "process message due to a permanent exception with message [BeginDiagnosticData]Message "
                f"submission quota exceeded.[EndDiagnosticData] {double.tag()}"
            )
        double._sent.setdefault(mailbox, []).append((now, len(envelope.rcpt_tos)))
        double.messages.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                mail_options=tuple(envelope.mail_options),
                login=mailbox,
            )
        )
        message_id = parsed.get("Message-ID", "<unknown>")
        return f"250 2.0.0 OK {message_id} {double.tag()}"
