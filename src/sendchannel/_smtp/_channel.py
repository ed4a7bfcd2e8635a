"""SmtpChannel: any SMTP server, through a pool of reused aiosmtplib connections."""

from __future__ import annotations

import math
import ssl
from collections.abc import Sequence
from typing import ClassVar, Literal

from sendchannel._channel import BaseChannel
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._smtp._classify import SMTP_RULES, ReplyRule
from sendchannel._smtp._pool import Pool
from sendchannel._smtp._session import (
    Connection,
    Endpoint,
    StaleConnection,
    TokenProvider,
    open_connection,
    transact,
)
from sendchannel.errors import ConfigurationError, SendError

__all__ = ["SmtpChannel", "TlsMode"]

TlsMode = Literal["starttls", "implicit", "none"]

_DEFAULT_POOL_SIZE = 4


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    number_types = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, number_types)
        or not math.isfinite(value)
        or value <= 0
    ):
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigurationError(f"{name} must be {kind} greater than 0, got {value!r}")


class SmtpChannel(BaseChannel):
    """Send through an SMTP server, over a pool of reused connections.

    Each ``send`` borrows a connection from the pool (opening one when none is idle, up to
    ``pool_size``), runs one mail transaction and gives the connection back. Connections are retired
    after ``recycle_after`` messages, after ``max_idle`` seconds unused, after a 421, or when the server
    closed them; a reused connection found dead before anything was sent is replaced transparently.

    Certificates are verified against the system trust store (``ssl.create_default_context()``, so
    ``SSL_CERT_FILE`` works) unless ``tls_context`` is given. With ``tls="starttls"`` a server that does
    not offer STARTTLS is an error, never a silent fall back to plaintext.

    Args:
        host: The server's host name.
        port: The server's port: 587 for STARTTLS, 465 for implicit TLS, 25 for relays.
        username: The login, with ``password`` or ``token_provider``.
        password: The password; never shown in a repr, a log line or an error.
        token_provider: An async callable with no arguments returning an OAuth access token, for
            XOAUTH2. When the server refuses a token with 535, the channel asks for a fresh token once
            and logs in again (if the provider has an ``invalidate()`` method it is called first, so a
            caching provider knows to fetch a new token).
        tls: ``"starttls"`` (upgrade a plain connection, the default), ``"implicit"`` (TLS from the first
            byte, SMTPS) or ``"none"`` (plaintext; only on a trusted network).
        tls_context: An :class:`ssl.SSLContext` to use instead of the default, for example one that
            trusts a private certificate authority.
        allow_insecure_auth: Allow sending the password or token over a connection that is not
            encrypted (``tls="none"``). Off by default.
        scope: The senders the credential may send as; unrestricted by default (the server's owner
            decides).
        limits: What the server allows; none declared by default.
        pool_size: The most connections open at once (4 by default, and never more than
            ``limits.max_connections``).
        timeout: Seconds to wait for each network step: connecting, each reply, including the reply to
            the end of DATA.
        local_hostname: The name given in EHLO; the machine's fully qualified name by default.
        recycle_after: Close a connection after this many messages (None: never).
        max_idle: Close a connection unused for this many seconds (None: never).
        name: The channel's name in results, errors and logs (``"smtp"`` by default).

    Raises:
        ConfigurationError: Options that do not fit together, such as a password with ``tls="none"``
            and no ``allow_insecure_auth``, or a password and a token_provider at once.
    """

    name: str = "smtp"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.UNRESTRICTED
    default_limits: ClassVar[Limits] = Limits()
    provider_name: ClassVar[str | None] = None
    #: The reply table, first match wins (providers put their own rules in front).
    reply_rules: ClassVar[Sequence[ReplyRule]] = SMTP_RULES

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str | None = None,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        tls: TlsMode = "starttls",
        tls_context: ssl.SSLContext | None = None,
        allow_insecure_auth: bool = False,
        scope: CredentialScope | None = None,
        limits: Limits | None = None,
        pool_size: int | None = None,
        timeout: float = 60.0,
        local_hostname: str | None = None,
        recycle_after: int | None = 100,
        max_idle: float | None = 30.0,
        name: str | None = None,
    ) -> None:
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise ConfigurationError(f"host must be a host name such as 'smtp.example.com', got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be a whole number from 1 to 65535, got {port!r}")
        if tls not in ("starttls", "implicit", "none"):
            raise ConfigurationError(f"tls must be 'starttls', 'implicit' or 'none', got {tls!r}")
        if tls == "starttls" and port == 465:
            raise ConfigurationError(
                "port 465 speaks TLS from the first byte; use tls='implicit' (or an smtps:// URL), or "
                "port 587 for STARTTLS"
            )
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise ConfigurationError(
                f"tls_context must be an ssl.SSLContext, got {type(tls_context).__name__}"
            )
        if tls_context is not None and tls == "none":
            raise ConfigurationError("tls_context has no effect with tls='none'; leave one of them out")
        if password is not None and token_provider is not None:
            raise ConfigurationError(
                "give either password or token_provider, not both: the channel logs in one way only"
            )
        if password is not None and not isinstance(password, str):
            raise ConfigurationError(f"password must be a string, got {type(password).__name__}")
        if token_provider is not None and not callable(token_provider):
            raise ConfigurationError(
                "token_provider must be an async function with no arguments that returns an access token"
            )
        credential = password is not None or token_provider is not None
        if username is not None and (not isinstance(username, str) or not username):
            raise ConfigurationError(f"username must be a non-empty string, got {username!r}")
        if credential and username is None:
            raise ConfigurationError(
                "a password or token_provider needs a username (for Office 365 and Gmail, the mailbox "
                "address)"
            )
        if username is not None and not credential:
            raise ConfigurationError(
                f"username {username!r} was given without a password or token_provider"
            )
        if credential and tls == "none" and not allow_insecure_auth:
            raise ConfigurationError(
                "refusing to send a password or token over an unencrypted connection (tls='none'); use "
                "tls='starttls' or tls='implicit', or pass allow_insecure_auth=True on a trusted network"
            )
        _positive("timeout", timeout)
        if recycle_after is not None:
            _positive("recycle_after", recycle_after, integer=True)
        if max_idle is not None:
            _positive("max_idle", max_idle)
        if local_hostname is not None and (
            not isinstance(local_hostname, str)
            or not local_hostname
            or not local_hostname.isascii()
            or any(c.isspace() or not c.isprintable() for c in local_hostname)
        ):
            raise ConfigurationError(
                f"local_hostname must be an ASCII host name without spaces, got {local_hostname!r}"
            )
        self.limits = limits if limits is not None else self.default_limits
        if not isinstance(self.limits, Limits):
            raise ConfigurationError(f"limits must be a Limits, got {type(self.limits).__name__}")
        most = self.limits.max_connections
        if pool_size is None:
            pool_size = min(_DEFAULT_POOL_SIZE, most) if most is not None else _DEFAULT_POOL_SIZE
        _positive("pool_size", pool_size, integer=True)
        if most is not None and pool_size > most:
            raise ConfigurationError(
                f"pool_size={pool_size} is more than the {most} concurrent connections the limits allow; "
                "lower pool_size, or raise limits.max_connections if the server allows more"
            )
        self.scope = scope if scope is not None else CredentialScope.unrestricted(self.provider_name)
        if not isinstance(self.scope, CredentialScope):
            raise ConfigurationError(f"scope must be a CredentialScope, got {type(self.scope).__name__}")
        if name is not None:
            self.name = name
        self.host = host
        self.port = port
        self.tls: TlsMode = tls
        self.username = username
        self.pool_size = pool_size
        self.timeout = float(timeout)
        context = tls_context
        if context is None and tls != "none":
            context = self._default_tls_context()
        self._endpoint = Endpoint(
            host=host,
            port=port,
            tls=tls,
            tls_context=context,
            local_hostname=local_hostname,
            timeout=self.timeout,
            username=username,
            password=password,
            token_provider=token_provider,
            channel=self.name,
            rules=self.reply_rules,
        )
        self._pool = Pool(
            self._open,
            size=pool_size,
            recycle_after=recycle_after,
            max_idle=max_idle,
            quit_timeout=min(self.timeout, 10.0),
        )

    @classmethod
    def _default_tls_context(cls) -> ssl.SSLContext:
        return ssl.create_default_context()

    async def _open(self) -> Connection:
        return await open_connection(self._endpoint)

    def _check_ready(self) -> None:
        """Raise before any I/O when the channel cannot work as configured (nothing by default)."""

    async def _send(self, message: Message) -> SendResult:
        self._check_ready()
        data = message.as_bytes()
        pool = self._pool
        for attempt in (1, 2):
            connection = await pool.acquire()
            try:
                result = await transact(connection, self._endpoint, message, data)
            except StaleConnection as stale:
                pool.release(connection)
                if attempt == 2:
                    raise stale.error from None
                continue
            except SendError:
                pool.release(connection)  # the transaction left it usable, or closed it
                raise
            except BaseException:
                # Cancelled (or worse) in the middle of a transaction: its state is unknown.
                connection.close()
                pool.release(connection)
                raise
            pool.release(connection)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def verify(self) -> None:
        """Connect, start TLS, log in and say QUIT, sending nothing.

        Raises:
            SendError: As ``send`` would, classified: ConnectionLostError when the server cannot be
                reached, AuthenticationError for rejected credentials, PermanentError for TLS
                failures, and so on.
        """
        self._check_ready()
        connection = await self._pool.open_fresh()
        await self._pool.discard(connection)

    async def aclose(self) -> None:
        """Close the pooled connections (saying QUIT); the channel cannot send afterwards."""
        await self._pool.aclose()

    def __repr__(self) -> str:
        login = f"{self.username}@" if self.username else ""
        return (
            f"<{type(self).__name__} {self.name!r} {login}{self.host}:{self.port} tls={self.tls} "
            f"scope={self.scope}>"
        )
