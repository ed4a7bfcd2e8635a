"""A small SMTP server inside the process, on 127.0.0.1: for ``sendchannel demo``, ``sendchannel sink``
and tests. Built on aiosmtpd; it keeps every message it receives.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import attrs
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMessage", "SmtpSink"]


@attrs.frozen
class ReceivedMessage:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None = None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._sink.on_rcpt(address) if self._sink.on_rcpt is not None else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        auth = session.auth_data
        login = auth.decode("utf-8", "replace") if isinstance(auth, bytes) else None
        received = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data if isinstance(data, bytes) else data.encode(),
            login=login,
        )
        self._sink.messages.append(received)
        if self._sink.on_message is not None:
            self._sink.on_message(received)
        return f"250 2.0.0 Ok: queued as {len(self._sink.messages):08X}"


class SmtpSink:
    """An SMTP server on the running event loop that accepts and keeps every message.

    Args:
        host: The address to listen on (127.0.0.1 by default).
        port: The port; 0 picks a free one (read it from :attr:`port` after start).
        tls_context: A server-side SSL context; with it the server offers STARTTLS, or speaks TLS from
            the first byte when ``implicit_tls`` is set.
        implicit_tls: Wrap the connection in TLS at once (SMTPS) instead of offering STARTTLS.
        credentials: ``{username: password}``; when given, AUTH PLAIN/LOGIN is offered and required.
        on_message: Called with each ReceivedMessage as it arrives.
        on_rcpt: Called with each recipient address; return an SMTP reply such as
            ``"550 5.1.1 no such user"`` to refuse it, or None to accept it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: Mapping[str, str] | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        on_rcpt: Callable[[str], str | None] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._credentials = dict(credentials or {})
        self.on_message = on_message
        self.on_rcpt = on_rcpt
        self.messages: list[ReceivedMessage] = []
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "replace")
            expected = self._credentials.get(user)
            if expected is not None and hmac.compare_digest(expected.encode(), data.password):
                return AuthResult(success=True, auth_data=data.login)
        return AuthResult(success=False, handled=False)

    def _protocol(self) -> SMTP:
        return SMTP(
            _Handler(self),
            hostname="sendchannel-sink.localhost",
            ident="sendchannel sink",
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=None if self._implicit_tls else self._tls_context,
            auth_required=bool(self._credentials),
            auth_require_tls=self._tls_context is not None,
            authenticator=self._authenticate if self._credentials else None,
        )

    async def start(self) -> None:
        """Start listening."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self.host,
            self._port,
            ssl=self._tls_context if self._implicit_tls else None,
        )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the sink is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._server is not None:
            self._server.close()
            if hasattr(self._server, "close_clients"):  # Python 3.13+
                self._server.close_clients()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
