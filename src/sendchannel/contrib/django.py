"""A Django email backend that sends through a sendchannel channel.

In ``settings.py``::

    EMAIL_BACKEND = "sendchannel.contrib.django.EmailBackend"

With nothing else set, the backend builds an :class:`~sendchannel.SmtpChannel` from Django's own
``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``,
``EMAIL_USE_SSL``, ``EMAIL_TIMEOUT``, ``EMAIL_SSL_CERTFILE`` and ``EMAIL_SSL_KEYFILE``, so switching
``EMAIL_BACKEND`` is the one change a project needs. To send through another provider, set one of:

``SENDCHANNEL_URL``
    A channel URL, such as ``"office365://alice@contoso.com"`` or ``"memory://"`` in tests; keyword
    arguments of the channel go in ``SENDCHANNEL_OPTIONS`` (a dict).
``SENDCHANNEL_DIRECTORY``
    A :class:`~sendchannel.ChannelDirectory`'s database URL: each message goes through the entry its
    sender routes to, for the owner ``SENDCHANNEL_DIRECTORY_OWNER`` names (a string, or a function of the
    :class:`~sendchannel.Message`; None: shared entries only). The keys come from
    ``SENDCHANNEL_SECRET_KEYS``.
``SENDCHANNEL_CHANNEL``
    A channel, or a function without arguments that returns one, or the dotted path to either
    (``"myproject.mail.build_channel"``): the place to build a :func:`~sendchannel.pipeline` with a
    throttler shared by every worker.

Every backend instance with the same configuration sends through one channel per process, kept open
(and its connections pooled) for the life of the process, so a throttler's budget and an SMTP
connection pool are shared by all requests. Changing these settings with ``override_settings`` in
tests closes the channels built from the old values.

The backend is a drop-in for Django's SMTP backend (Django's own mail backend tests run against it):
its errors are also the ``smtplib``, ``OSError`` and ``BadHeaderError`` classes Django raises
(:class:`DjangoAuthenticationError` and the others below), it follows Django's address rules and the
meaning of ``headers=``, :meth:`EmailBackend.open` connects, and the ``EMAIL_*`` settings can be read
from the backend's attributes.
"""

from __future__ import annotations

import copy
import email.message
import email.utils
import smtplib
import ssl
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from email.mime.base import MIMEBase
from email.utils import getaddresses
from typing import Any

from django.conf import settings
from django.core import mail as django_mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import BadHeaderError as _DjangosBadHeaderError
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address
from django.core.mail.utils import DNS_NAME
from django.core.signals import setting_changed
from django.utils.encoding import force_str
from django.utils.module_loading import import_string

from sendchannel import errors
from sendchannel._channel import Channel
from sendchannel._message import _BREAKS, Attachment, Message
from sendchannel._registry import channel_from_url
from sendchannel.errors import ConfigurationError, InvalidMessageError
from sendchannel.sync import SyncChannel

__all__ = [
    "DjangoAuthenticationError",
    "DjangoBadHeaderError",
    "DjangoConnectionLostError",
    "DjangoDeliveryUnknownError",
    "DjangoMessageRejectedError",
    "DjangoPermanentError",
    "DjangoQuotaExceededError",
    "DjangoRecipientsRefusedError",
    "DjangoSendError",
    "DjangoSenderNotAllowedError",
    "DjangoTLSError",
    "DjangoThrottledError",
    "DjangoTransientError",
    "EmailBackend",
    "close_channels",
    "message_from_django",
]

#: Headers Django shows instead of the ones built from the fields, while the envelope stays.
_DISPLAYED_HEADERS = {"to", "cc", "date"}

_SETTINGS = frozenset(
    {
        "SENDCHANNEL_URL",
        "SENDCHANNEL_OPTIONS",
        "SENDCHANNEL_CHANNEL",
        "SENDCHANNEL_DIRECTORY",
        "SENDCHANNEL_DIRECTORY_OWNER",
        "EMAIL_HOST",
        "EMAIL_PORT",
        "EMAIL_HOST_USER",
        "EMAIL_HOST_PASSWORD",
        "EMAIL_USE_TLS",
        "EMAIL_USE_SSL",
        "EMAIL_TIMEOUT",
        "EMAIL_SSL_CERTFILE",
        "EMAIL_SSL_KEYFILE",
    }
)


class _Shared:
    """The process's channel for one configuration, and whether it is known to connect."""

    __slots__ = ("channel", "working")

    def __init__(self, channel: SyncChannel) -> None:
        self.channel = channel
        self.working = False


_shared: dict[Hashable, _Shared] = {}
_shared_lock = threading.Lock()


def close_channels(*, wait: bool = True) -> None:
    """Close every channel the backend opened in this process (new ones open on the next send).

    Call it when a worker shuts down, to end its SMTP sessions politely. It is also called, without
    waiting, when a test changes the backend's settings.

    Args:
        wait: Wait until the sends in flight finished and the connections are closed. Without waiting,
            the channels refuse new sends at once and close in a background thread.

    Raises:
        RuntimeError: ``wait`` was set in a thread that runs an event loop.
    """
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
    for entry in entries:
        if wait:
            entry.channel.close()
        else:
            entry.channel._close_soon()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _SETTINGS:
        # override_settings may run in an async test's event loop, where the SMTP server under test
        # runs too: closing must not block it.
        close_channels(wait=False)


setting_changed.connect(_on_setting_changed, dispatch_uid="sendchannel.contrib.django")


# -- errors that Django code catches ---------------------------------------------------------------
#
# Django's SMTP backend raises smtplib's exceptions, OSError (ConnectionRefusedError, ssl.SSLError,
# TimeoutError) and BadHeaderError, and applications catch those. Every error the backend raises is
# therefore both the sendchannel error (its classification: transient, retry_after, rejected...) and
# the class Django's own backend would have raised in its place.


class DjangoSendError(errors.SendError, smtplib.SMTPException):
    """A :class:`sendchannel.errors.SendError` that is also an :class:`smtplib.SMTPException`."""


class DjangoTransientError(errors.TransientError, smtplib.SMTPException):
    """A :class:`sendchannel.errors.TransientError` that is also an :class:`smtplib.SMTPException`."""


class DjangoThrottledError(errors.ThrottledError, smtplib.SMTPResponseException):
    """A :class:`sendchannel.errors.ThrottledError` that is also an :class:`smtplib.SMTPResponseException`."""


class DjangoConnectionLostError(
    errors.ConnectionLostError, smtplib.SMTPServerDisconnected, ConnectionError
):
    """A :class:`sendchannel.errors.ConnectionLostError` that is also ``SMTPServerDisconnected`` and
    ``ConnectionError`` (what Django's backend raises for a server that is down or hangs up)."""


class DjangoPermanentError(errors.PermanentError, smtplib.SMTPException):
    """A :class:`sendchannel.errors.PermanentError` that is also an :class:`smtplib.SMTPException`."""


class DjangoTLSError(errors.PermanentError, ssl.SSLError):
    """A failed TLS handshake: a :class:`sendchannel.errors.PermanentError` and an :class:`ssl.SSLError`."""


class DjangoAuthenticationError(errors.AuthenticationError, smtplib.SMTPAuthenticationError):
    """A :class:`sendchannel.errors.AuthenticationError` that is also ``SMTPAuthenticationError``."""


class DjangoSenderNotAllowedError(errors.SenderNotAllowedError, smtplib.SMTPSenderRefused):
    """A :class:`sendchannel.errors.SenderNotAllowedError` that is also ``SMTPSenderRefused``."""


class DjangoRecipientsRefusedError(errors.RecipientsRefusedError, smtplib.SMTPRecipientsRefused):
    """A :class:`sendchannel.errors.RecipientsRefusedError` that is also ``SMTPRecipientsRefused``
    (``recipients`` maps each address to ``(code, reply)`` as smtplib's does)."""


class DjangoMessageRejectedError(errors.MessageRejectedError, smtplib.SMTPDataError):
    """A :class:`sendchannel.errors.MessageRejectedError` that is also an :class:`smtplib.SMTPDataError`."""


class DjangoQuotaExceededError(errors.QuotaExceededError, smtplib.SMTPResponseException):
    """A :class:`sendchannel.errors.QuotaExceededError` that is also ``SMTPResponseException``."""


class DjangoDeliveryUnknownError(errors.DeliveryUnknownError, smtplib.SMTPServerDisconnected):
    """A :class:`sendchannel.errors.DeliveryUnknownError` that is also ``SMTPServerDisconnected``."""


class DjangoBadHeaderError(InvalidMessageError, _DjangosBadHeaderError):  # type: ignore[misc]
    """A header value with a line break: an :class:`~sendchannel.errors.InvalidMessageError` that is
    also Django's :class:`django.core.mail.BadHeaderError`."""


# Most specific first: the first sendchannel class an error is an instance of picks its twin.
_TWINS: tuple[tuple[type[errors.SendError], type[errors.SendError]], ...] = (
    (errors.ThrottledError, DjangoThrottledError),
    (errors.ConnectionLostError, DjangoConnectionLostError),
    (errors.AuthenticationError, DjangoAuthenticationError),
    (errors.SenderNotAllowedError, DjangoSenderNotAllowedError),
    (errors.RecipientsRefusedError, DjangoRecipientsRefusedError),
    (errors.MessageRejectedError, DjangoMessageRejectedError),
    (errors.QuotaExceededError, DjangoQuotaExceededError),
    (errors.DeliveryUnknownError, DjangoDeliveryUnknownError),
    (errors.TransientError, DjangoTransientError),
    (errors.PermanentError, DjangoPermanentError),
    (errors.SendError, DjangoSendError),
)
_TWIN_CLASSES = frozenset(twin for _, twin in _TWINS) | {DjangoTLSError}
_subclass_twins: dict[tuple[type, type], type] = {}


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


def _twin_class(error: errors.SendError) -> type[errors.SendError]:
    kind = type(error)
    if kind in _TWIN_CLASSES:
        return kind
    if kind is errors.PermanentError and _caused_by(error, ssl.SSLError):
        return DjangoTLSError
    base, twin = next((base, twin) for base, twin in _TWINS if isinstance(error, base))
    if kind is base:
        return twin
    # A channel's own subclass (a plugin's): keep it, and add the smtplib class of its nearest base.
    smtplib_base = twin.__mro__[twin.__mro__.index(errors.SendError) + 1]
    key = (kind, smtplib_base)
    made = _subclass_twins.get(key)
    if made is None:
        made = type(kind.__name__, (kind, smtplib_base), {"__module__": __name__, "__doc__": twin.__doc__})
        _subclass_twins[key] = made
    return made


def _reply_code(reply: str) -> int:
    head = reply[:3]
    return int(head) if head.isdigit() else -1


def django_error(error: errors.SendError, sender: str | None = None) -> errors.SendError:
    """The same error, as an instance of a class that Django code catches too (smtplib's, ``OSError``).

    Args:
        error: A sendchannel error.
        sender: The envelope sender, for ``SMTPSenderRefused.sender``.
    """
    twin = _twin_class(error)
    if type(error) is twin:
        return error
    copied = twin.__new__(twin, error.message)
    copied.__dict__.update(error.__dict__)
    reply = error.reply or error.message
    # What smtplib's classes carry, for handlers that read it.
    copied.smtp_code = error.code if error.code is not None else -1  # type: ignore[attr-defined]
    copied.smtp_error = reply.encode("utf-8", "replace")  # type: ignore[attr-defined]
    if isinstance(copied, smtplib.SMTPSenderRefused):
        copied.sender = sender or ""
    if isinstance(copied, smtplib.SMTPRecipientsRefused):
        copied.recipients = {
            address: (_reply_code(text), text.encode("utf-8", "replace"))
            for address, text in error.rejected.items()
        }
    copied.__cause__ = error.__cause__
    copied.__suppress_context__ = error.__suppress_context__
    copied.__context__ = error.__context__
    copied.__traceback__ = error.__traceback__
    return copied


# -- configuration ---------------------------------------------------------------------------------


def _smtp_from_django_settings(options: dict[str, Any]) -> tuple[Hashable, Callable[[], Channel]]:
    """An SmtpChannel from the backend's SMTP settings (Django's EMAIL_* or its keyword arguments)."""
    host, port, username, password = (options[k] for k in ("host", "port", "username", "password"))
    timeout, certfile, keyfile = (options[k] for k in ("timeout", "ssl_certfile", "ssl_keyfile"))
    tls = "implicit" if options["use_ssl"] else "starttls" if options["use_tls"] else "none"
    if tls == "none" and username and password:
        raise ImproperlyConfigured(
            "EMAIL_HOST_PASSWORD is set but neither EMAIL_USE_TLS nor EMAIL_USE_SSL, and sendchannel does "
            "not send a password over an unencrypted connection; set EMAIL_USE_TLS = True (STARTTLS, "
            "usually port 587) or EMAIL_USE_SSL = True (port 465)."
        )
    key = ("django-smtp", host, port, username, password, tls, timeout, certfile, keyfile)

    def build() -> Channel:
        from sendchannel._smtp import SmtpChannel

        keywords: dict[str, Any] = {"tls": tls}
        # Django logs in only with both a user name and a password.
        if username and password:
            keywords["username"] = username
            keywords["password"] = password
        if timeout is not None:
            keywords["timeout"] = float(timeout)
        if certfile:
            context = ssl.create_default_context()
            context.load_cert_chain(certfile, keyfile)
            keywords["tls_context"] = context
        return SmtpChannel(host, int(port), **keywords)

    return key, build


def _configuration(options: dict[str, Any]) -> tuple[Hashable, Callable[[], Channel]]:
    directory = getattr(settings, "SENDCHANNEL_DIRECTORY", None)
    if directory and not options.get("url"):
        from sendchannel._directory._adapter import DirectoryChannel

        owner = getattr(settings, "SENDCHANNEL_DIRECTORY_OWNER", None)
        return ("directory", directory, id(owner)), lambda: DirectoryChannel(directory, owner)
    url = options.get("url") or getattr(settings, "SENDCHANNEL_URL", None)
    factory = getattr(settings, "SENDCHANNEL_CHANNEL", None)
    if url and factory is not None and not options.get("url"):
        raise ImproperlyConfigured("Both SENDCHANNEL_URL and SENDCHANNEL_CHANNEL are set; keep one of them.")
    if url:
        if not isinstance(url, str):
            raise ImproperlyConfigured(
                f"SENDCHANNEL_URL must be a string such as 'smtp://user:password@host:587', "
                f"not {type(url).__name__}"
            )
        overrides = dict(getattr(settings, "SENDCHANNEL_OPTIONS", None) or {})
        key = ("url", url, tuple(sorted((name, id(value)) for name, value in overrides.items())))
        return key, lambda: channel_from_url(url, **overrides)
    if factory is not None:
        return ("factory", factory if isinstance(factory, str) else id(factory)), lambda: _from_factory(
            factory
        )
    return _smtp_from_django_settings(options)


def _from_factory(factory: object) -> Channel:
    if isinstance(factory, str):
        try:
            factory = import_string(factory)
        except ImportError as exc:
            raise ImproperlyConfigured(f"SENDCHANNEL_CHANNEL: cannot import {factory!r}: {exc}") from exc
    channel = factory() if callable(factory) and not isinstance(factory, Channel) else factory
    if not isinstance(channel, Channel):
        raise ImproperlyConfigured(
            "SENDCHANNEL_CHANNEL must be a channel, or a function without arguments that returns one, "
            f"or the dotted path to either; it gave {type(channel).__name__}"
        )
    return channel


def _shared_channel(options: dict[str, Any]) -> _Shared:
    key, build = _configuration(options)
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            try:
                entry = _Shared(SyncChannel(build()))
            except ConfigurationError as exc:
                raise ImproperlyConfigured(f"sendchannel email backend: {exc}") from exc
            _shared[key] = entry
        return entry


# -- messages --------------------------------------------------------------------------------------


def _attachment(item: object, index: int) -> Attachment:
    if isinstance(item, MIMEBase):
        payload = item.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        content_id = item.get("Content-ID")
        disposition = item.get_content_disposition()
        inline = disposition == "inline" or (content_id is not None and disposition is None)
        filename = item.get_filename() or (
            str(content_id).strip("<>") if content_id else f"attachment-{index + 1}"
        )
        return Attachment(
            filename,
            content,
            item.get_content_type(),
            inline=inline,
            content_id=str(content_id) if content_id else None,
        )
    name, content, mimetype = _triple(item)
    if isinstance(content, EmailMessage):
        content = content.message().as_bytes()
    elif isinstance(content, email.message.Message):
        content = content.as_bytes()
    elif isinstance(content, str):
        content = content.encode("utf-8")
    # Without a type, Attachment guesses it from the file name.
    return Attachment(name or f"attachment-{index + 1}", content, mimetype)  # type: ignore[arg-type]


def _triple(item: Any) -> tuple[str | None, Any, str | None]:
    filename, content, mimetype = item
    return filename, content, mimetype


def _bodies(email_message: EmailMessage) -> tuple[str | None, str | None]:
    body = email_message.body
    text: str | None = None
    html: str | None = None
    if email_message.content_subtype == "html":
        html = body
    else:
        text = body
    alternatives: Sequence[Any] = getattr(email_message, "alternatives", ())
    for content, mimetype in alternatives:
        kind = (mimetype or "").split(";")[0].strip().lower()
        if isinstance(content, bytes):
            content = content.decode("utf-8")
        if kind == "text/html" and html is None:
            html = content
        elif kind == "text/plain" and not text:
            text = content
        else:
            raise InvalidMessageError(
                f"sendchannel sends one plain-text and one HTML body; the {mimetype} alternative "
                "cannot be sent as a body. Attach it with attach() instead."
            )
    return text, html


def _line(value: object, header: str) -> str:
    """A header value as text (Django allows lazy strings), refused as Django refuses it: with a break."""
    text = str(force_str(value))
    if not _BREAKS.isdisjoint(text):
        raise DjangoBadHeaderError(
            f"Header values can't contain newlines (got {text!r} for header {header!r})"
        )
    return text


def _envelope_address(value: object, field: str) -> str:
    """An address as Django's SMTP backend accepts it for the envelope, or InvalidMessageError."""
    text = str(force_str(value))
    try:
        sanitize_address(text, "utf-8")
    except ValueError as exc:
        raise InvalidMessageError(f"{field}: {exc}") from None
    if not _BREAKS.isdisjoint(text):  # breaks other than CR and LF, which Django lets through
        raise InvalidMessageError(f"{field}: Invalid address {text!r}: it contains a line break")
    return text


def _addresses(values: Iterable[object], field: str) -> list[str]:
    # Django skips empty entries (EmailMessage.recipients()).
    return [_envelope_address(v, f"{field}[{i}]") for i, v in enumerate(values) if v]


def message_from_django(email_message: EmailMessage) -> Message:
    """Convert a Django ``EmailMessage`` (or ``EmailMultiAlternatives``) into a :class:`~sendchannel.Message`.

    Django's rules hold: lazy strings are accepted, and so are addresses without a domain (``"webmaster"``,
    Django ticket #15042); an address Django's SMTP backend refuses is refused. The body becomes the text
    (or the HTML when ``content_subtype`` is ``"html"``), a ``text/html`` alternative the HTML body,
    attachments (files, ``MIMEBase`` parts, inline images with a ``Content-ID``) become
    :class:`~sendchannel.Attachment`, and ``headers`` are kept. As in Django, ``headers`` may change
    what the recipients see without changing the envelope: ``From`` is shown while ``from_email`` stays
    the envelope sender (``Message.envelope_sender``), ``To`` and ``Cc`` are shown while the message
    goes to ``to``, ``cc`` and ``bcc``; ``Reply-To``, ``Date`` and ``Message-ID`` replace the ones
    sendchannel would write.

    Raises:
        DjangoBadHeaderError: A header value or the subject holds a line break (it is also Django's
            ``BadHeaderError``).
        InvalidMessageError: The message cannot be sent as built: an address Django refuses (the text
            says ``Invalid address``), or an alternative other than HTML or plain text.
    """
    from_email = _envelope_address(email_message.from_email, "from_email")
    to = _addresses(email_message.to, "to")
    cc = _addresses(email_message.cc, "cc")
    bcc = _addresses(email_message.bcc, "bcc")
    reply_to = [_line(address, "Reply-To") for address in email_message.reply_to]
    subject = _line(email_message.subject, "Subject")
    sender = from_email
    envelope_sender: str | None = None
    headers: dict[str, str] = {}
    displayed: dict[str, str] = {}
    message_id: str | None = None
    for name, value in email_message.extra_headers.items():
        text = _line(value, name)
        lowered = name.lower()
        if lowered == "from":
            sender, envelope_sender = text, from_email
        elif lowered == "reply-to":
            reply_to = [part.strip() for part in _split_addresses(text)]
        elif lowered == "message-id":
            message_id = text
        elif lowered in _DISPLAYED_HEADERS:
            displayed[name] = text
        else:
            headers[name] = text
    text_body, html = _bodies(email_message)
    extra: dict[str, Any] = {}
    if message_id is not None:
        extra["message_id"] = message_id
    elif "@" not in sender.rpartition("<")[2]:
        # A local mailbox has no domain of its own to make a Message-ID with: Django uses the host's.
        extra["message_id"] = f"<{_make_msgid()}>"
    return Message(
        sender,
        to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        text=text_body,
        html=html,
        headers=headers,
        attachments=[_attachment(item, i) for i, item in enumerate(email_message.attachments)],
        envelope_sender=envelope_sender,
        _local_mailboxes=True,
        _displayed=displayed,
        **extra,
    )


def _split_addresses(value: str) -> list[str]:
    """The addresses of a header value such as ``'A <a@example.com>, b@example.com'``, as strings."""
    out = []
    for name, address in getaddresses([value]):
        if address:
            out.append(f'"{email.utils.quote(name)}" <{address}>' if name else address)
    return out


def _make_msgid() -> str:
    from email.utils import make_msgid

    return make_msgid(domain=str(DNS_NAME)).strip("<>")


# -- the backend -----------------------------------------------------------------------------------


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Django's email backend interface over a sendchannel channel, a drop-in for Django's SMTP backend.

    Set ``EMAIL_BACKEND = "sendchannel.contrib.django.EmailBackend"``; see the module documentation for
    how the channel is configured. ``django.core.mail.get_connection()`` passes its keyword arguments
    here. As with Django's SMTP backend, the ``EMAIL_*`` settings (or the keyword arguments that
    override them) can be read back: ``host``, ``port``, ``username``, ``password``, ``use_tls``,
    ``use_ssl``, ``timeout``, ``ssl_certfile``, ``ssl_keyfile``; they describe the channel only when
    neither ``SENDCHANNEL_URL`` nor ``SENDCHANNEL_CHANNEL`` is set.

    Errors are raised as classes that are both the sendchannel error and the exception Django's SMTP
    backend raises in its place (:class:`smtplib.SMTPException`, :class:`ConnectionError`,
    :class:`ssl.SSLError`, :class:`~django.core.mail.BadHeaderError`), so existing handlers keep
    catching them.

    Args:
        fail_silently: Skip messages that fail (a :class:`~sendchannel.errors.SendError`, or an
            :class:`~sendchannel.errors.InvalidMessageError` for a message that cannot be sent) instead
            of raising; they are not counted as sent. A channel that cannot connect makes :meth:`open`
            return None. Configuration errors always raise.
        url: A channel URL for this connection, instead of ``SENDCHANNEL_URL``.
        host, port, username, password, use_tls, use_ssl, timeout, ssl_keyfile, ssl_certfile: Django's
            SMTP backend's arguments; each overrides its ``EMAIL_*`` setting.

    Raises:
        ConfigurationError: ``use_tls`` and ``use_ssl`` are both set (a ``ValueError``, as in Django).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        *,
        url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently)
        # Read as Django's SMTP backend reads them, so code that inspects a connection sees the same.
        self.host: str = host or settings.EMAIL_HOST
        self.port: int = port or settings.EMAIL_PORT
        self.username: str = settings.EMAIL_HOST_USER if username is None else username
        self.password: str = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls: bool = settings.EMAIL_USE_TLS if use_tls is None else use_tls
        self.use_ssl: bool = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
        self.timeout: float | None = settings.EMAIL_TIMEOUT if timeout is None else timeout
        self.ssl_keyfile: str | None = settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
        self.ssl_certfile: str | None = (
            settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
        )
        if self.use_ssl and self.use_tls:
            raise ConfigurationError(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those settings to "
                "True. (TLS is STARTTLS, usually on port 587; SSL is implicit TLS, usually on port 465.)"
            )
        self.url = url
        #: The channel (a :class:`~sendchannel.sync.SyncChannel`) while the backend is open, else None.
        self.connection: SyncChannel | None = None
        self._entry: _Shared | None = None
        self._lock = threading.RLock()

    def open(self) -> bool | None:
        """Open the process's channel for this configuration and check that it connects.

        The check (connect, TLS, log in, as :meth:`~sendchannel.Channel.verify` does) runs until it
        succeeds once for a configuration, and again after a send through it lost its connection or
        was refused the login; a channel known to work is opened without a round trip.

        Returns:
            True when this call opened it, False when it was already open, None when it could not
            connect and ``fail_silently`` is set (Django's convention).

        Raises:
            django.core.exceptions.ImproperlyConfigured: The settings do not describe a channel.
            SendError: The channel cannot connect or log in (not with ``fail_silently``); for example a
                :class:`DjangoConnectionLostError`, which is also a :class:`ConnectionError`.
        """
        current = self.connection
        if current is not None and not getattr(current, "closed", False):
            return False
        self.connection = self._entry = None
        entry = _shared_channel(self._options())
        if not entry.working:
            try:
                # Blocking, even in an async view, as Django's own backends block (see _send).
                entry.channel._call(entry.channel.channel.verify, in_event_loop=True)
            except errors.SendError as exc:
                if self.fail_silently:
                    return None
                raise django_error(exc) from exc.__cause__
            entry.working = True
        self._entry = entry
        self.connection = entry.channel
        return True

    def _options(self) -> dict[str, Any]:
        """The configuration as read now (code may change the attributes before opening, as in Django)."""
        names = ("host", "port", "username", "password", "use_tls", "use_ssl", "timeout")
        options = {name: getattr(self, name) for name in (*names, "ssl_certfile", "ssl_keyfile")}
        options["url"] = self.url
        return options

    def close(self) -> None:
        """Release this backend's hold on the channel (the shared channel and its connections stay)."""
        self.connection = self._entry = None

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        """Send each message in turn and return how many were sent.

        Messages without recipients are skipped. A message with some recipients refused still counts as
        sent. Without ``fail_silently`` the first failure is raised (the messages before it were sent).

        Raises:
            SendError: A send failed (not with ``fail_silently``), as a class Django code catches too.
            InvalidMessageError: A message cannot be sent as built (not with ``fail_silently``).
            DjangoBadHeaderError: A header value holds a line break (not with ``fail_silently``).
            django.core.exceptions.ImproperlyConfigured: The settings do not describe a channel.
        """
        messages = list(email_messages)
        if not messages:
            return 0
        with self._lock:
            opened = self.open()
            channel = self.connection
            if channel is None or opened is None:
                return 0  # open() failed silently
            try:
                return sum(self._send(channel, email_message) for email_message in messages)
            finally:
                if opened:
                    self.close()

    def _send(self, channel: SyncChannel, email_message: EmailMessage) -> bool:
        if not email_message.recipients():
            return False
        try:
            message = message_from_django(email_message)
            # Django's own backends block the calling thread, even in an async view; so does this one
            # (the send runs on the channel's own loop thread, so it cannot deadlock).
            channel._call(channel.channel.send, message, in_event_loop=True)
        except InvalidMessageError:
            if not self.fail_silently:
                raise
            return False
        except errors.SendError as exc:
            if isinstance(exc, (errors.ConnectionLostError, errors.AuthenticationError)) and self._entry:
                self._entry.working = False  # the next open() checks the connection again
            if not self.fail_silently:
                raise django_error(exc, message.envelope_address) from exc.__cause__
            return False
        _keep_outbox(channel, email_message)
        return True

    def __deepcopy__(self, memo: dict[int, Any]) -> EmailBackend:
        # A message keeps the connection it was sent through; a copy of the message (Django's mail.outbox
        # holds copies) shares it rather than copying a channel and its threads.
        return self

    def __repr__(self) -> str:
        # Never the password, nor a URL (it may hold a secret): its scheme only.
        url = self.url or getattr(settings, "SENDCHANNEL_URL", None)
        if isinstance(url, str) and url:
            where = url.partition(":")[0] + "://..."
        else:
            where = f"{self.host}:{self.port}" + (f" user={self.username!r}" if self.username else "")
        return f"<{type(self).__name__} {where} open={self.connection is not None}>"


def _keep_outbox(channel: SyncChannel, email_message: EmailMessage) -> None:
    """Through a FakeChannel (``memory://``), keep Django's ``mail.outbox`` as its locmem backend does."""
    from sendchannel.testing import FakeChannel

    if isinstance(channel.channel, FakeChannel):
        if not hasattr(django_mail, "outbox"):
            django_mail.outbox = []
        django_mail.outbox.append(copy.deepcopy(email_message))
