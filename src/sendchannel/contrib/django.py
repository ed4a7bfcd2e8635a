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
"""

from __future__ import annotations

import email.message
import ssl
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from email.mime.base import MIMEBase
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from sendchannel._channel import Channel
from sendchannel._message import Attachment, Message
from sendchannel._registry import channel_from_url
from sendchannel.errors import ConfigurationError, InvalidMessageError, SendError
from sendchannel.sync import SyncChannel

__all__ = ["EmailBackend", "close_channels", "message_from_django"]

#: Headers that Django lets ``headers=`` override but that sendchannel writes from the message's fields.
_FIELD_HEADERS = {"from", "reply-to", "message-id"}
_UNSUPPORTED_HEADERS = {
    "to": "sendchannel writes To from the recipients; put hidden recipients in bcc",
    "cc": "sendchannel writes Cc from the recipients; put hidden recipients in bcc",
    "date": "sendchannel writes the Date header itself when the message is sent",
}

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

_shared: dict[Hashable, SyncChannel] = {}
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
        channels = list(_shared.values())
        _shared.clear()
    for channel in channels:
        if wait:
            channel.close()
        else:
            channel._close_soon()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _SETTINGS:
        # override_settings may run in an async test's event loop, where the SMTP server under test
        # runs too: closing must not block it.
        close_channels(wait=False)


setting_changed.connect(_on_setting_changed, dispatch_uid="sendchannel.contrib.django")


# -- configuration ---------------------------------------------------------------------------------


def _smtp_from_django_settings(options: dict[str, Any]) -> tuple[Hashable, Callable[[], Channel]]:
    """An SmtpChannel from Django's EMAIL_* settings, overridden by the backend's keyword arguments."""
    host = options.get("host") or settings.EMAIL_HOST
    port = options.get("port") or settings.EMAIL_PORT
    username = options.get("username")
    username = settings.EMAIL_HOST_USER if username is None else username
    password = options.get("password")
    password = settings.EMAIL_HOST_PASSWORD if password is None else password
    use_tls = options.get("use_tls")
    use_tls = settings.EMAIL_USE_TLS if use_tls is None else use_tls
    use_ssl = options.get("use_ssl")
    use_ssl = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
    timeout = options.get("timeout")
    timeout = settings.EMAIL_TIMEOUT if timeout is None else timeout
    certfile = options.get("ssl_certfile") or settings.EMAIL_SSL_CERTFILE
    keyfile = options.get("ssl_keyfile") or settings.EMAIL_SSL_KEYFILE
    if use_tls and use_ssl:
        raise ImproperlyConfigured(
            "EMAIL_USE_TLS and EMAIL_USE_SSL are both set; set one of them (TLS is STARTTLS on port "
            "587, SSL is implicit TLS on port 465)."
        )
    tls = "implicit" if use_ssl else "starttls" if use_tls else "none"
    if tls == "none" and password:
        raise ImproperlyConfigured(
            "EMAIL_HOST_PASSWORD is set but neither EMAIL_USE_TLS nor EMAIL_USE_SSL, and sendchannel does "
            "not send a password over an unencrypted connection; set EMAIL_USE_TLS = True (STARTTLS, "
            "usually port 587) or EMAIL_USE_SSL = True (port 465)."
        )
    key = ("django-smtp", host, port, username, password, tls, timeout, certfile, keyfile)

    def build() -> Channel:
        from sendchannel._smtp import SmtpChannel

        keywords: dict[str, Any] = {"tls": tls}
        if username:
            keywords["username"] = username
        if password:
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


def _shared_channel(options: dict[str, Any]) -> SyncChannel:
    key, build = _configuration(options)
    with _shared_lock:
        channel = _shared.get(key)
        if channel is None:
            try:
                channel = SyncChannel(build())
            except ConfigurationError as exc:
                raise ImproperlyConfigured(f"sendchannel email backend: {exc}") from exc
            _shared[key] = channel
        return channel


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


def message_from_django(email_message: EmailMessage) -> Message:
    """Convert a Django ``EmailMessage`` (or ``EmailMultiAlternatives``) into a :class:`~sendchannel.Message`.

    The body becomes the text (or the HTML when ``content_subtype`` is ``"html"``), a ``text/html``
    alternative the HTML body, attachments (files, ``MIMEBase`` parts, inline images with a
    ``Content-ID``) become :class:`~sendchannel.Attachment`, and ``headers`` are kept, except that
    ``From``, ``Reply-To`` and ``Message-ID`` set the sender, reply-to addresses and Message-ID.

    Raises:
        InvalidMessageError: The message cannot be sent as built: a malformed address, an alternative
            other than HTML or plain text, or a ``To``, ``Cc`` or ``Date`` header, which sendchannel
            writes itself.
    """
    headers: dict[str, str] = {}
    sender = email_message.from_email
    reply_to = list(email_message.reply_to)
    message_id: str | None = None
    for name, value in email_message.extra_headers.items():
        lowered = name.lower()
        if lowered in _UNSUPPORTED_HEADERS:
            raise InvalidMessageError(f"headers: {name!r} cannot be set: {_UNSUPPORTED_HEADERS[lowered]}")
        if lowered == "from":
            sender = str(value)
        elif lowered == "reply-to":
            reply_to = [part.strip() for part in str(value).split(",") if part.strip()]
        elif lowered == "message-id":
            message_id = str(value)
        else:
            headers[name] = str(value)
    text, html = _bodies(email_message)
    if message_id is not None:
        extra: dict[str, Any] = {"message_id": message_id}
    else:
        extra = {}
    return Message(
        sender,
        list(email_message.to),
        cc=list(email_message.cc),
        bcc=list(email_message.bcc),
        reply_to=reply_to,
        subject=str(email_message.subject),
        text=text,
        html=html,
        headers=headers,
        attachments=[_attachment(item, i) for i, item in enumerate(email_message.attachments)],
        **extra,
    )


# -- the backend -----------------------------------------------------------------------------------


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Django's email backend interface over a sendchannel channel.

    Set ``EMAIL_BACKEND = "sendchannel.contrib.django.EmailBackend"``; see the module documentation for
    how the channel is configured. ``django.core.mail.get_connection()`` passes its keyword arguments
    here.

    Args:
        fail_silently: Skip messages that fail (a :class:`~sendchannel.errors.SendError`, or an
            :class:`~sendchannel.errors.InvalidMessageError` for a message that cannot be sent) instead
            of raising; they are not counted as sent. Configuration errors always raise.
        url: A channel URL for this connection, instead of ``SENDCHANNEL_URL``.
        kwargs: Without a URL or ``SENDCHANNEL_CHANNEL``, the keyword arguments of Django's SMTP
            backend (``host``, ``port``, ``username``, ``password``, ``use_tls``, ``use_ssl``,
            ``timeout``, ``ssl_keyfile``, ``ssl_certfile``) override the ``EMAIL_*`` settings.

    Raises:
        django.core.exceptions.ImproperlyConfigured: The settings do not describe a channel (raised
            when sending, or by :meth:`open`).
    """

    _SMTP_OPTIONS = frozenset(
        {"host", "port", "username", "password", "use_tls", "use_ssl", "timeout"}
        | {"ssl_keyfile", "ssl_certfile"}
    )

    def __init__(self, fail_silently: bool = False, *, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self._options: dict[str, Any] = {k: v for k, v in kwargs.items() if k in self._SMTP_OPTIONS}
        if url is not None:
            self._options["url"] = url
        self._channel: SyncChannel | None = None

    def open(self) -> bool:
        """Build (or reuse) the process's channel for this configuration.

        Returns:
            True when this call opened it (Django's convention); False when it was already open.

        Raises:
            django.core.exceptions.ImproperlyConfigured: The settings do not describe a channel.
        """
        if self._channel is not None and not self._channel.closed:
            return False
        self._channel = _shared_channel(self._options)
        return True

    def close(self) -> None:
        """Release this backend's hold on the channel (the shared channel and its connections stay)."""
        self._channel = None

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        """Send each message in turn and return how many were sent.

        Messages without recipients are skipped. A message with some recipients refused still counts as
        sent. Without ``fail_silently`` the first failure is raised (the messages before it were sent).

        Raises:
            SendError: A send failed (not with ``fail_silently``).
            InvalidMessageError: A message cannot be sent as built (not with ``fail_silently``).
            django.core.exceptions.ImproperlyConfigured: The settings do not describe a channel.
        """
        messages = list(email_messages)
        if not messages:
            return 0
        self.open()
        channel = self._channel
        assert channel is not None
        sent = 0
        for email_message in messages:
            if not email_message.recipients():
                continue
            try:
                # Django's own backends block the calling thread, even in an async view; so does this one
                # (the send runs on the channel's own loop thread, so it cannot deadlock).
                channel._call(channel.channel.send, message_from_django(email_message), in_event_loop=True)
            except (SendError, InvalidMessageError):
                if not self.fail_silently:
                    raise
            else:
                sent += 1
        return sent
