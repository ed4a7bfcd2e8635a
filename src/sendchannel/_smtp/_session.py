"""One SMTP connection: connect, TLS, authenticate, and run mail transactions, with every failure classified.

aiosmtplib connects, starts TLS and logs in; the mail transactions then run over a
:class:`~sendchannel._smtp._wire.ReplyReader` on the same transport, pipelined when the server allows.
This module decides what each reply and each failure means. It drives the transaction itself (MAIL, RCPT,
DATA, the message) rather than through ``SMTP.sendmail`` so that it knows at every moment whether the
message could already have been handed over: a connection lost or a timeout while waiting for the reply
to the end of DATA is :class:`~sendchannel.errors.DeliveryUnknownError`, anything earlier
:class:`~sendchannel.errors.ConnectionLostError`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiosmtplib

from sendchannel._message import Message
from sendchannel._refusals import all_refused_error, split_reply
from sendchannel._result import SendResult
from sendchannel._smtp._classify import (
    Credential,
    Reply,
    ReplyContext,
    ReplyRule,
    Stage,
    classify_reply,
    queue_id,
)
from sendchannel._smtp._wire import ConnectionGone, ReplyReader
from sendchannel.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    PermanentError,
    SenderNotAllowedError,
    SendError,
)

__all__ = ["Connection", "Endpoint", "Redactor", "StaleConnection", "TokenProvider"]

TokenProvider = Callable[[], Awaitable[str]]

#: Replies to RCPT that end the whole transaction rather than refuse one recipient.
_SESSION_REPLIES = frozenset({421, 432, 530})
_LOST = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)


class Redactor:
    """Removes secrets (and the base64 forms they travel in) from text before it reaches an error.

    A password is remembered for the life of the channel; access tokens rotate, so only the most recent
    ones are kept (a refused token is never older than that).
    """

    __slots__ = ("_fixed", "_pattern", "_rotating")

    def __init__(self) -> None:
        self._fixed: set[str] = set()
        self._rotating: collections.deque[str] = collections.deque(maxlen=16)
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str | None, *encoded: bytes, rotating: bool = False) -> None:
        """Remember ``secret`` and the base64 forms ``encoded`` in which it was sent."""
        values = [secret] if secret else []
        values.extend(base64.b64encode(blob).decode("ascii") for blob in encoded if blob)
        if secret:
            values.append(base64.b64encode(secret.encode("utf-8")).decode("ascii"))
        known = self._fixed.union(self._rotating)
        new = [value for value in dict.fromkeys(values) if value and value not in known]
        if not new:
            return
        if rotating:
            self._rotating.extend(new)
        else:
            self._fixed.update(new)
        ordered = sorted(self._fixed.union(self._rotating), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if self._pattern is None:
            return text
        return self._pattern.sub("***", text)


_fqdn: str | None = None


async def _local_hostname() -> str:
    # aiosmtplib looks the name up in a thread for every connection when none is given; do it once.
    global _fqdn
    if _fqdn is None:
        name = await asyncio.to_thread(socket.getfqdn)
        _fqdn = name if name and name.isascii() and not any(c.isspace() for c in name) else "localhost"
    return _fqdn


class Endpoint:
    """Everything needed to open an authenticated connection, and to explain its failures."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: str,
        tls_context: ssl.SSLContext | None,
        local_hostname: str | None,
        timeout: float,
        username: str | None,
        password: str | None,
        token_provider: TokenProvider | None,
        channel: str,
        rules: Sequence[ReplyRule],
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_context = tls_context
        self.local_hostname = local_hostname
        self.timeout = timeout
        self.username = username
        self._password = password
        self.token_provider = token_provider
        self.channel = channel
        self.rules = rules
        self.redact = Redactor()
        if password:
            self.redact.add(password)
        self.credential: Credential | None = (
            "token" if token_provider is not None else "password" if password is not None else None
        )
        self.server = f"{host}:{port}"
        #: The server refused MAIL FROM for now: until it accepts one, MAIL goes without the RCPTs and
        #: DATA pipelined behind it (shared by the pool's connections, since the limit is the server's).
        self.mail_alone = False

    def context(self, sender: str | None = None) -> ReplyContext:
        """The context for explaining a reply."""
        return ReplyContext(
            server=self.server,
            channel=self.channel,
            username=self.username,
            sender=sender,
            credential=self.credential,
        )

    def reply(self, code: int, text: str) -> Reply:
        """A Reply with the secrets removed and its lines joined."""
        return Reply(code, self.redact(" ".join(text.split("\n")).strip()))

    def refused(
        self,
        code: int,
        text: str,
        stage: Stage,
        sender: str | None = None,
        *,
        rejected: Mapping[str, str] | None = None,
    ) -> SendError:
        """The classified error for a reply that refused ``stage``."""
        return classify_reply(
            self.reply(code, text), stage, self.context(sender), self.rules, rejected=rejected
        )

    def lost(self, stage: Stage, exc: BaseException) -> SendError:
        """The error for a connection that failed or timed out at ``stage``."""
        timed_out = isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError))
        if stage is Stage.MESSAGE:
            what = (
                f"no reply came within {self.timeout:g} seconds"
                if timed_out
                else "the connection was lost"
            )
            return DeliveryUnknownError(
                f"The whole message was sent to {self.server}, but {what} before it confirmed the "
                "end of DATA, so the message may have been delivered. Check before sending it again.",
                channel=self.channel,
            )
        if timed_out:
            return ConnectionLostError(
                f"{self.server} did not answer {stage.value} within {self.timeout:g} seconds; the "
                "message was not sent. Try again later, or raise timeout if the server is slow.",
                channel=self.channel,
            )
        detail = self.redact(str(exc)) or type(exc).__name__
        return ConnectionLostError(
            f"The connection to {self.server} was lost at {stage.value} ({detail}); the message was "
            "not sent, so trying again is safe.",
            channel=self.channel,
        )

    def tls_failure(self, exc: ssl.SSLError) -> SendError:
        """The error for a failed TLS handshake."""
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return self.lost(Stage.STARTTLS if self.tls == "starttls" else Stage.HANDSHAKE, exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(
                f"The TLS certificate of {self.server} could not be verified "
                f"({exc.verify_message or exc.reason}), so nothing was sent. If the server uses a "
                "private certificate authority, pass tls_context=ssl.create_default_context("
                "cafile=...) (or set SSL_CERT_FILE); check that the host name matches the certificate.",
                channel=self.channel,
            )
        hint = (
            " If the port expects STARTTLS (usually 587), use tls='starttls'."
            if self.tls == "implicit"
            else ""
        )
        return PermanentError(
            f"The TLS handshake with {self.server} failed ({exc.reason or exc}), so nothing was "
            f"sent.{hint}",
            channel=self.channel,
        )

    async def token(self, fresh: bool) -> str:
        """An access token from the provider (after telling it the last one was refused, if ``fresh``)."""
        assert self.token_provider is not None
        if fresh:
            invalidate = getattr(self.token_provider, "invalidate", None)
            if callable(invalidate):
                invalidate()
        token = await self.token_provider()
        if not isinstance(token, str) or not token:
            what = "an empty string" if isinstance(token, str) else type(token).__name__
            raise AuthenticationError(
                f"token_provider returned {what} instead of an access token for {self.server}; it must "
                "be an async function returning the token string.",
                channel=self.channel,
            )
        username = self.username or ""
        self.redact.add(
            token, f"user={username}\x01auth=Bearer {token}\x01\x01".encode(), rotating=True
        )
        return token

    def remember_password_blobs(self) -> None:
        """Add the AUTH PLAIN and LOGIN encodings of the password to the redactor."""
        if self._password and self.username:
            user = self.username.encode("utf-8")
            password = self._password.encode("utf-8")
            self.redact.add(None, b"\0" + user + b"\0" + password, password)

    @property
    def password(self) -> str | None:
        """The password, for the login itself only."""
        return self._password

    def __repr__(self) -> str:
        return f"<Endpoint {self.server} tls={self.tls} user={self.username!r}>"


class StaleConnection(Exception):
    """A reused connection turned out to be closed before the server read anything; open another."""

    def __init__(self, error: SendError) -> None:
        super().__init__(str(error))
        self.error = error


class Connection:
    """One open, authenticated SMTP connection, with what the server advertised.

    aiosmtplib opened it; from the first transaction on, a :class:`ReplyReader` carries its replies.
    """

    __slots__ = (
        "broken",
        "eight_bit",
        "idle_handle",
        "last_used",
        "max_size",
        "messages",
        "opened",
        "pipelining",
        "reader",
        "size_extension",
        "smtputf8",
    )

    def __init__(self, reader: ReplyReader, extensions: dict[str, str]) -> None:
        self.reader = reader
        self.opened = self.last_used = time.monotonic()
        self.messages = 0
        self.broken = False
        self.idle_handle: asyncio.TimerHandle | None = None
        size = extensions.get("size", "")
        self.size_extension = "size" in extensions
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None
        self.smtputf8 = "smtputf8" in extensions
        self.eight_bit = "8bitmime" in extensions
        self.pipelining = "pipelining" in extensions

    @classmethod
    def take_over(cls, smtp: aiosmtplib.SMTP) -> Connection:
        """Move a connected, authenticated aiosmtplib client's transport to a ReplyReader."""
        transport = smtp.transport
        assert isinstance(transport, asyncio.Transport)
        reader = ReplyReader(transport)
        transport.set_protocol(reader)
        return cls(reader, dict(smtp.esmtp_extensions))

    @property
    def usable(self) -> bool:
        """Whether another transaction may run on it."""
        return not self.broken and self.reader.open

    def close(self) -> None:
        """Drop the connection without QUIT."""
        self.broken = True
        with contextlib.suppress(RuntimeError):  # the event loop it belonged to is closed
            self.reader.close()

    async def quit(self, wait: float) -> None:
        """Say QUIT (waiting at most ``wait`` seconds for the reply) and close; failures only close."""
        if self.usable:
            with contextlib.suppress(OSError):
                self.reader.write(b"QUIT\r\n")
                await self.reader.reply(wait)
        self.close()


# -- opening -----------------------------------------------------------------------------------------


async def open_connection(endpoint: Endpoint) -> Connection:
    """Connect, say EHLO, start TLS and log in, as the endpoint says.

    Raises:
        SendError: Classified: ConnectionLostError when the server could not be reached or dropped
            the connection, PermanentError for TLS failures, AuthenticationError for rejected
            credentials, and so on.
    """
    try:
        return await _open(endpoint, fresh_token=False)
    except AuthenticationError as exc:
        if endpoint.credential != "token" or exc.code != 535:
            raise
    # The token was refused: ask the provider for a fresh one, once, and log in again.
    return await _open(endpoint, fresh_token=True)


async def _open(endpoint: Endpoint, *, fresh_token: bool) -> Connection:
    local_hostname = endpoint.local_hostname or await _local_hostname()
    smtp = aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        local_hostname=local_hostname,
        timeout=endpoint.timeout,
        use_tls=endpoint.tls == "implicit",
        start_tls=False,
        tls_context=endpoint.tls_context,
    )
    stage = Stage.GREETING
    try:
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise endpoint.refused(exc.code, exc.message, Stage.GREETING) from None
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            if isinstance(exc.__cause__, aiosmtplib.SMTPTimeoutError):
                # Connected, but the server never greeted: not a matter of host, port or firewall.
                raise endpoint.lost(Stage.GREETING, exc.__cause__) from exc
            raise ConnectionLostError(
                f"Could not connect to {endpoint.server} within {endpoint.timeout:g} seconds; check "
                "the host and port, and that no firewall blocks the way.",
                channel=endpoint.channel,
            ) from exc
        except aiosmtplib.SMTPConnectError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise endpoint.tls_failure(cause) from exc
            if isinstance(cause, aiosmtplib.SMTPServerDisconnected):
                # The server took the connection, then closed it before its greeting.
                raise endpoint.lost(Stage.GREETING, cause) from exc
            if isinstance(cause, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
                # Reset after the connection was made: during the TLS handshake of implicit TLS.
                lost_at = Stage.HANDSHAKE if endpoint.tls == "implicit" else Stage.GREETING
                raise endpoint.lost(lost_at, cause) from exc
            raise ConnectionLostError(
                f"Could not connect to {endpoint.server} ({cause or exc}); check the host and port, "
                "and that the server is running.",
                channel=endpoint.channel,
            ) from exc
        stage = Stage.EHLO
        await _hello(smtp, endpoint)
        if endpoint.tls == "starttls":
            stage = Stage.STARTTLS
            await _starttls(smtp, endpoint)
            stage = Stage.EHLO
            await _hello(smtp, endpoint)
        if endpoint.credential is not None:
            stage = Stage.AUTH
            await _login(smtp, endpoint, fresh_token=fresh_token)
    except ssl.SSLError as exc:
        smtp.close()
        raise endpoint.tls_failure(exc) from exc
    except _LOST as exc:
        smtp.close()
        raise endpoint.lost(stage, exc) from exc
    except aiosmtplib.SMTPResponseException as exc:
        smtp.close()
        raise endpoint.refused(exc.code, exc.message, stage) from None
    except aiosmtplib.SMTPException as exc:
        # Anything else aiosmtplib objects to leaves the session unusable; nothing was sent.
        smtp.close()
        raise ConnectionLostError(
            f"The session with {endpoint.server} failed at {stage.value} ({endpoint.redact(exc.message)}); "
            "the message was not sent.",
            channel=endpoint.channel,
        ) from None
    except BaseException:
        smtp.close()
        raise
    return Connection.take_over(smtp)


async def _starttls(smtp: aiosmtplib.SMTP, endpoint: Endpoint) -> None:
    if not smtp.supports_extension("starttls"):
        raise PermanentError(
            f"{endpoint.server} does not offer STARTTLS, and tls='starttls' was asked for, so "
            "nothing was sent in plaintext. If the port speaks TLS from the start (usually "
            "465), use tls='implicit'; use tls='none' only on a trusted network.",
            channel=endpoint.channel,
        )
    try:
        await smtp.starttls()
    except aiosmtplib.SMTPResponseException as exc:
        raise endpoint.refused(exc.code, exc.message, Stage.STARTTLS) from None


async def _hello(smtp: aiosmtplib.SMTP, endpoint: Endpoint) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        # A server without ESMTP: HELO is enough when there is neither TLS nor a login to do.
        if 500 <= exc.code <= 504 and endpoint.tls == "none" and endpoint.credential is None:
            try:
                await smtp.helo()
                return
            except aiosmtplib.SMTPHeloError as helo_exc:
                exc = helo_exc
        raise endpoint.refused(exc.code, exc.message, Stage.EHLO) from None


async def _login(smtp: aiosmtplib.SMTP, endpoint: Endpoint, *, fresh_token: bool) -> None:
    offered = smtp.server_auth_methods
    username = endpoint.username or ""
    # One mechanism only: trying each advertised mechanism with the same bad password makes the server
    # count several failed logins.
    try:
        if endpoint.credential == "token":
            if "xoauth2" not in offered:
                raise AuthenticationError(
                    f"{endpoint.server} does not offer XOAUTH2 (it offers "
                    f"{_offered(offered)}), so the access token cannot be used; check the host, or "
                    "log in with a password.",
                    channel=endpoint.channel,
                )
            token = await endpoint.token(fresh_token)
            await smtp.auth_xoauth2(username, token)
            return
        password = endpoint.password or ""
        endpoint.remember_password_blobs()
        if "plain" in offered:
            await smtp.auth_plain(username, password)
        elif "login" in offered:
            await smtp.auth_login(username, password)
        else:
            raise AuthenticationError(
                f"{endpoint.server} offers no login mechanism sendchannel can use with a password "
                f"(it offers {_offered(offered)}; PLAIN or LOGIN are needed). Check the host and the "
                "tls setting: many servers offer AUTH only after STARTTLS.",
                channel=endpoint.channel,
            )
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise endpoint.refused(exc.code, exc.message, Stage.AUTH) from None


def _offered(methods: Sequence[str]) -> str:
    return ", ".join(m.upper() for m in methods) if methods else "no AUTH at all"


# -- sending -----------------------------------------------------------------------------------------

_CRLF_RE = re.compile(rb"\r\n|\r|\n")


def _data_payload(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, leading dots doubled, ended by ``.``."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _CRLF_RE.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


async def _reset(connection: Connection, wait: float) -> None:
    # Clear the envelope so the connection can serve the next message; drop it if that fails.
    if not connection.usable:
        connection.close()
        return
    try:
        connection.reader.write(b"RSET\r\n")
        code, _ = await connection.reader.reply(wait)
    except OSError:
        connection.close()
        return
    if not 200 <= code < 300:
        connection.close()


def _ok(code: int) -> bool:
    return 200 <= code < 300


def _too_many_recipients(code: int, text: str) -> bool:
    """Whether a refusal of RCPT is RFC 5321's "too many recipients" (452, 4.5.3)."""
    return code == 452 and (
        split_reply(f"{code} {text}")[1] == "4.5.3" or "too many recipients" in text.lower()
    )


def _mail_alone_after(code: int) -> bool:
    """Whether this reply to MAIL FROM makes the next transactions send MAIL alone.

    A server that refused MAIL for now (a rate limit, say) would refuse the RCPTs and DATA pipelined
    behind it too, and counts each of those 503s as an error: Postfix slows its replies down by a second
    for each and drops the connection after enough of them.
    """
    return 400 <= code < 500 and code != 421


def _stage_of(index: int, recipients: int) -> Stage:
    """The stage the ``index``-th reply of a transaction answers (MAIL, the RCPTs, then DATA)."""
    if index == 0:
        return Stage.MAIL
    return Stage.RCPT if index <= recipients else Stage.DATA


class _Outcome:
    """What one mail transaction did with its recipients."""

    __slots__ = ("accepted", "deferred", "queue_id", "rejected")

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.rejected: dict[str, str] = {}
        #: Refused as too many for this transaction (452 4.5.3): for the next one.
        self.deferred: list[str] = []
        self.queue_id: str | None = None


async def transact(
    connection: Connection, endpoint: Endpoint, message: Message, data: bytes
) -> SendResult:
    """Send one message on ``connection``: MAIL, RCPT for each recipient, DATA, the message.

    With PIPELINING, MAIL, the RCPTs and DATA go in one write and their replies are read afterwards;
    while the server is refusing MAIL for now, MAIL goes alone and the rest follows once it is accepted.
    Recipients the server refuses as too many for one transaction (452 4.5.3) after accepting others
    get the message in further transactions on the same connection (RFC 5321 4.5.3.1.10), as many as
    it takes; the result covers every recipient and carries the first transaction's queue id. Once a
    transaction has delivered the message, a later one that fails puts its recipients in
    ``SendResult.rejected`` with the reason instead of raising.

    Raises:
        StaleConnection: A reused connection turned out dead at MAIL FROM (nothing was sent).
        SendError: Classified from the reply or the failure.
    """
    sender = message.envelope_address  # MAIL FROM: the envelope sender when one is given
    utf8 = message.needs_smtputf8
    size = len(data)
    if connection.max_size is not None and size > connection.max_size:
        raise MessageRejectedError(
            f"The message is {size:,} bytes, but {endpoint.server} accepts at most "
            f"{connection.max_size:,} (its SIZE limit); send large files as links instead of "
            "attachments.",
            channel=endpoint.channel,
        )
    if utf8 and not connection.smtputf8:
        raise MessageRejectedError(
            f"An address of the message has non-ASCII characters before the @, which needs the "
            f"SMTPUTF8 extension, and {endpoint.server} does not offer it; use an ASCII address or "
            "another server.",
            channel=endpoint.channel,
        )
    encoding = "utf-8" if utf8 else "ascii"
    mail = b"MAIL FROM:<" + sender.encode(encoding) + b">"
    if connection.size_extension:
        mail += b" SIZE=%d" % size
    if utf8:
        mail += b" SMTPUTF8"
        if connection.eight_bit:
            mail += b" BODY=8BITMIME"
    envelope = _Envelope(sender, mail + b"\r\n", encoding, data)
    connection.messages += 1
    reused = connection.messages > 1
    accepted: list[str] = []
    rejected: dict[str, str] = {}
    queue_ids: list[str | None] = []
    pending: Sequence[str] = message.recipients
    while pending:
        try:
            outcome = await _transaction(
                connection, endpoint, envelope, pending, may_be_stale=reused and not queue_ids
            )
        except DeliveryUnknownError as error:
            if not queue_ids:
                raise
            # These recipients may have the message: not refused, unknown; and the first ones do have it.
            raise DeliveryUnknownError(
                f"{error} An earlier transaction on this connection had delivered the message to "
                f"{', '.join(accepted)} (queue id {queue_ids[0]}); do not send it to them again.",
                code=error.code,
                enhanced_code=error.enhanced_code,
                retry_after=error.retry_after,
                channel=error.channel,
                rejected=rejected or None,
                reply=error.reply,
            ) from error
        except SendError as error:
            if not queue_ids:
                raise
            # An earlier transaction delivered the message: the rest share this failure.
            reason = error.reply or str(error)
            rejected.update(error.rejected or dict.fromkeys(pending, reason))
            break
        accepted.extend(outcome.accepted)
        rejected.update(outcome.rejected)
        queue_ids.append(outcome.queue_id)
        pending = outcome.deferred
    return SendResult(
        message_id=message.message_id,
        provider_id=queue_ids[0],
        accepted=tuple(accepted),
        rejected=rejected,
        channel=endpoint.channel,
    )


class _Envelope:
    """What every transaction of one send shares."""

    __slots__ = ("data", "encoding", "mail", "sender")

    def __init__(self, sender: str, mail: bytes, encoding: str, data: bytes) -> None:
        self.sender = sender
        self.mail = mail
        self.encoding = encoding
        self.data = data


async def _transaction(
    connection: Connection,
    endpoint: Endpoint,
    envelope: _Envelope,
    recipients: Sequence[str],
    *,
    may_be_stale: bool,
) -> _Outcome:
    """One mail transaction for ``recipients``; raises as :func:`transact` does."""
    sender = envelope.sender
    commands = [envelope.mail]
    commands.extend(b"RCPT TO:<" + r.encode(envelope.encoding) + b">\r\n" for r in recipients)
    commands.append(b"DATA\r\n")
    reader = connection.reader
    timeout = endpoint.timeout
    replies: list[tuple[int, str]] = []
    stage = Stage.MAIL
    try:
        if connection.pipelining:
            # While the server refuses MAIL for now, MAIL goes alone: what would follow it is refused too.
            batches = [commands[:1], commands[1:]] if endpoint.mail_alone else [commands]
            for batch in batches:
                if replies and not _ok(replies[0][0]):
                    break
                reader.write(b"".join(batch))
                expected = len(replies) + len(batch)
                while len(replies) < expected:
                    stage = _stage_of(len(replies), len(recipients))
                    replies.append(await reader.reply(timeout))
                    if replies[-1][0] == 421 or replies[-1][0] < 0:
                        break  # the server is closing, or not speaking SMTP: no more replies will come
                if replies[-1][0] == 421 or replies[-1][0] < 0:
                    break
        else:
            while len(replies) < len(commands) and _worth_going_on(replies, len(recipients)):
                stage = _stage_of(len(replies), len(recipients))
                reader.write(commands[len(replies)])
                replies.append(await reader.reply(timeout))
        mail_code = replies[0][0]
        if _ok(mail_code):
            endpoint.mail_alone = False
        elif _mail_alone_after(mail_code):
            endpoint.mail_alone = True
        error = _envelope_error(endpoint, sender, recipients, replies)
        if error is not None:
            if may_be_stale and replies[0][0] == 421:
                # A 421 to the first command on a reused connection is usually the server's idle
                # timeout arriving late: nothing was sent, so a fresh connection is worth a try.
                connection.close()
                raise StaleConnection(error)
            if len(replies) == len(commands) and replies[-1][0] == 354:
                connection.close()  # DATA was accepted although the envelope failed: out of step
            elif any(code == 421 or code < 0 for code, _ in replies):
                connection.close()
            else:
                await _reset(connection, timeout)
            raise error
        # Until the last byte is out of our hands the server cannot have the end of DATA: a failure
        # while sending is still "not sent" (Stage.DATA); only waiting for the reply is ambiguous.
        stage = Stage.DATA
        await reader.send(_data_payload(envelope.data), timeout)
        stage = Stage.MESSAGE
        code, text = await reader.reply(timeout)
    except (OSError, TimeoutError) as exc:
        connection.close()
        lost = endpoint.lost(stage, exc)
        if may_be_stale and not replies and isinstance(exc, ConnectionGone):
            raise StaleConnection(lost) from exc
        raise lost from exc
    if not _ok(code):
        if code == 421 or code < 0:
            connection.close()
        raise endpoint.refused(code, text, Stage.MESSAGE, sender)
    outcome = _Outcome()
    outcome.queue_id = queue_id(endpoint.redact(text))
    for recipient, (rcpt_code, rcpt_text) in zip(recipients, replies[1:-1], strict=True):
        if _ok(rcpt_code):
            outcome.accepted.append(recipient)
        elif _too_many_recipients(rcpt_code, rcpt_text):
            outcome.deferred.append(recipient)  # at least one other was accepted, or DATA would fail
        else:
            outcome.rejected[recipient] = str(endpoint.reply(rcpt_code, rcpt_text))
    return outcome


def _worth_going_on(replies: list[tuple[int, str]], recipients: int) -> bool:
    """Without pipelining: whether to send the next command after these replies."""
    if not replies:
        return True
    code = replies[-1][0]
    if len(replies) == 1:
        return _ok(code)
    if code in _SESSION_REPLIES or code < 0:
        return False
    if len(replies) == recipients + 1:  # every RCPT answered: DATA only if one was accepted
        return any(_ok(c) for c, _ in replies[1:])
    return True


def _envelope_error(
    endpoint: Endpoint, sender: str, recipients: Sequence[str], replies: list[tuple[int, str]]
) -> SendError | None:
    """The error for the replies to MAIL, the RCPTs and DATA, or None when the message may follow."""
    code, text = replies[0]
    if not _ok(code):
        return endpoint.refused(code, text, Stage.MAIL, sender)
    rcpt_replies = replies[1 : 1 + len(recipients)]
    for code, text in rcpt_replies:
        if code in _SESSION_REPLIES or code < 0:
            return endpoint.refused(code, text, Stage.RCPT, sender)
    if not any(_ok(code) for code, _ in rcpt_replies):
        refused = {r: str(endpoint.reply(c, t)) for r, (c, t) in zip(recipients, rcpt_replies, strict=True)}
        for code, text in dict.fromkeys(reply for reply in rcpt_replies if reply[0] >= 500):
            # A server that delays its rejections refuses the sender here, once for each recipient (the
            # same reply each time: each different one is classified once).
            error = endpoint.refused(code, text, Stage.RCPT, sender, rejected=refused)
            if isinstance(error, SenderNotAllowedError):
                return error
        return all_refused_error(refused, channel=endpoint.channel, server=endpoint.server)
    code, text = replies[1 + len(recipients)]
    if code != 354:
        return endpoint.refused(code, text, Stage.DATA, sender)
    return None
