"""Switching EMAIL_BACKEND changes nothing else: Django's exceptions, address rules, header semantics,
open() and the settings attributes, as Django's own SMTP backend has them."""

from __future__ import annotations

import asyncio
import functools
import pickle
import smtplib
import socket
from collections.abc import AsyncIterator, Callable
from email import message_from_bytes, policy

import pytest
from django.core import mail
from django.core.mail import BadHeaderError, EmailMessage
from django.test.utils import override_settings
from django.utils.translation import gettext_lazy

from sendchannel import Message, errors
from sendchannel._sink import SmtpSink
from sendchannel.contrib.django import EmailBackend, message_from_django
from sendchannel.testing import FakeChannel
from tests import sentinels

from .conftest import BACKEND

pytestmark = pytest.mark.usefixtures("django_settings")


async def in_thread(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Django's blocking API in a worker thread, as a request thread calls it; the server runs here."""
    return await asyncio.to_thread(functools.partial(function, *args, **kwargs))


def send(**kwargs: object) -> int:
    fields: dict[str, object] = {"subject": "Hi", "body": "x", "to": ["bob@example.com"], **kwargs}
    sent: int = EmailMessage(**fields).send()
    return sent


# -- errors ----------------------------------------------------------------------------------------


class PluginThrottled(errors.ThrottledError):
    """A channel's own subclass, as a plugin may define one."""


@pytest.mark.parametrize(
    ("error", "djangos"),
    [
        (errors.ThrottledError("slow down", code=421, retry_after=30.0), smtplib.SMTPResponseException),
        (errors.ConnectionLostError("gone"), ConnectionError),
        (errors.ConnectionLostError("gone"), smtplib.SMTPServerDisconnected),
        (errors.AuthenticationError("bad password", code=535), smtplib.SMTPAuthenticationError),
        (errors.SenderNotAllowedError("not yours", code=550), smtplib.SMTPSenderRefused),
        (errors.MessageRejectedError("spam", code=554), smtplib.SMTPDataError),
        (errors.QuotaExceededError("daily quota", code=550, resets_at=1.0e9), smtplib.SMTPResponseException),
        (errors.DeliveryUnknownError("maybe sent"), smtplib.SMTPServerDisconnected),
        (errors.PermanentError("no"), smtplib.SMTPException),
        (errors.TransientError("later"), smtplib.SMTPException),
        (PluginThrottled("plugin says wait", code=421), smtplib.SMTPResponseException),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_a_send_error_is_also_the_exception_djangos_backend_raises(
    sendchannel_backend: None, fake_channel: FakeChannel, error: errors.SendError, djangos: type
) -> None:
    fake_channel.fail_next(error)
    with pytest.raises(type(error)) as info:
        send(from_email="app@example.com")
    raised = info.value
    assert isinstance(raised, djangos)
    assert isinstance(raised, OSError)
    assert (error.message, error.code, error.retry_after, error.transient) == (
        raised.message,
        raised.code,
        raised.retry_after,
        raised.transient,
    )
    if isinstance(raised, smtplib.SMTPResponseException):
        assert (error.code, error.message.encode()) == (raised.smtp_code, raised.smtp_error)


def test_a_refused_sender_and_refused_recipients_carry_smtplibs_fields(
    sendchannel_backend: None, fake_channel: FakeChannel
) -> None:
    fake_channel.fail_next(errors.SenderNotAllowedError("not yours", code=550))
    with pytest.raises(smtplib.SMTPSenderRefused) as sender_info:
        send(from_email="Shop <shop@example.com>")
    fake_channel.reject_recipients("bob@example.com", reply="550 5.1.1 no such user")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as recipients_info:
        send(from_email="shop@example.com")
    assert "shop@example.com" == sender_info.value.sender
    assert {"bob@example.com": (550, b"550 5.1.1 no such user")} == recipients_info.value.recipients
    assert isinstance(recipients_info.value, errors.RecipientsRefusedError)


def test_the_django_twin_of_an_error_pickles_as_itself(
    sendchannel_backend: None, fake_channel: FakeChannel
) -> None:
    """Errors cross process boundaries (logging handlers, task queues) unchanged."""
    fake_channel.fail_next(errors.ThrottledError("slow down", code=421, retry_after=5.0))
    with pytest.raises(errors.ThrottledError) as info:
        send(from_email="app@example.com")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(info.value), "slow down", 5.0) == (type(copy), str(copy), copy.retry_after)


@pytest.mark.parametrize("subject", ["Hi\nBcc: victim@example.com", "Hi\rthere", "Hi\u2028there"])
def test_a_line_break_in_a_header_is_djangos_bad_header_error(
    sendchannel_backend: None, subject: str
) -> None:
    with pytest.raises(BadHeaderError) as info:
        send(subject=subject, from_email="app@example.com")
    assert isinstance(info.value, errors.InvalidMessageError)


@pytest.mark.parametrize(
    "address", ["to@other.com <to@example.com>", "to@other.com@example.com", "to@", "to\nevil@example.com"]
)
def test_an_address_django_refuses_is_refused_and_nothing_is_sent(
    sendchannel_backend: None, fake_channel: FakeChannel, address: str
) -> None:
    with pytest.raises(errors.InvalidMessageError, match=r"bcc\[0\]: Invalid address"):
        send(from_email="app@example.com", bcc=[address])
    assert [] == fake_channel.attempts


# -- addresses and headers on the wire -------------------------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as server:
        with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
            yield server


async def test_lazy_addresses_and_addresses_without_a_domain_go_out_as_django_sends_them(
    sink: SmtpSink,
) -> None:
    """Django ticket #15042 (local mailboxes) and #24416 (lazy strings)."""
    _ = gettext_lazy
    assert 1 == await in_thread(mail.send_mail, _("Subject"), "Content", _("tester"), [_("django")])
    [received] = sink.messages
    headers = message_from_bytes(received.data, policy=policy.default)
    assert ("tester", ("django",), "tester", "django") == (
        received.mail_from,
        received.rcpt_tos,
        headers["From"],
        headers["To"],
    )


async def test_header_overrides_change_what_is_shown_and_the_envelope_stays(sink: SmtpSink) -> None:
    email = EmailMessage(
        "Digest",
        "x",
        "bounces@example.org",
        ["bob@example.com"],
        bcc=["audit@example.com"],
        headers={"From": "News <news@example.com>", "To": "Subscribers <list@example.com>"},
    )
    assert 1 == await in_thread(email.send)
    [received] = sink.messages
    headers = message_from_bytes(received.data, policy=policy.default)
    assert ("bounces@example.org", ("bob@example.com", "audit@example.com")) == (
        received.mail_from,
        received.rcpt_tos,
    )
    assert ("News <news@example.com>", "Subscribers <list@example.com>", None) == (
        headers["From"],
        headers["To"],
        headers["Bcc"],
    )


# -- open() ----------------------------------------------------------------------------------------


class CountingSink(SmtpSink):
    """An SMTP server that counts the connections it was given."""

    connections = 0

    def _protocol(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super()._protocol()


def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port: int = unused.getsockname()[1]
    return port


async def test_open_checks_the_connection_until_it_worked_and_again_after_it_was_lost() -> None:
    async with CountingSink() as server:
        with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
            assert True is await in_thread(EmailBackend().open)
            assert 1 == server.connections  # connected, said QUIT
            assert True is await in_thread(EmailBackend().open)
            assert 1 == server.connections  # known to work: no round trip
            await server.stop()
            with pytest.raises(ConnectionError):
                await in_thread(mail.send_mail, "Hi", "x", "app@example.com", ["bob@example.com"])
            with pytest.raises(errors.ConnectionLostError) as info:
                await in_thread(EmailBackend().open)  # checked again, and down
    assert isinstance(info.value, ConnectionRefusedError | ConnectionError)


def test_open_with_fail_silently_returns_none_and_nothing_is_sent() -> None:
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=closed_port()):
        backend = EmailBackend(fail_silently=True)
        assert (None, None) == (backend.open(), backend.connection)
        assert 0 == backend.send_messages([EmailMessage("Hi", "x", "app@example.com", ["bob@example.com"])])
        assert 0 == mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"], fail_silently=True)
        with pytest.raises(ConnectionError):
            EmailBackend().open()


def test_a_channel_known_to_work_opens_without_a_round_trip_and_send_messages_closes_what_it_opened(
    sendchannel_backend: None,
) -> None:
    backend = EmailBackend()
    assert 1 == backend.send_messages([EmailMessage("Hi", "x", "app@example.com", ["bob@example.com"])])
    assert None is backend.connection
    with backend:
        assert (False, backend.connection) == (backend.open(), backend.connection)
        assert backend.connection is not None


# -- settings attributes ---------------------------------------------------------------------------


def test_the_email_settings_are_readable_and_keyword_arguments_override_them() -> None:
    settings = {
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 2525,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": sentinels.PASSWORD,
        "EMAIL_USE_TLS": True,
        "EMAIL_TIMEOUT": 7,
        "EMAIL_SSL_CERTFILE": "/etc/client.pem",
        "EMAIL_SSL_KEYFILE": "/etc/client.key",
    }
    with override_settings(**settings):
        backend = EmailBackend()
        overridden = EmailBackend(host="other.example.com", port=465, use_tls=False, use_ssl=True, timeout=3)
    read = (
        backend.host,
        backend.port,
        backend.username,
        backend.password,
        backend.use_tls,
        backend.use_ssl,
        backend.timeout,
        backend.ssl_certfile,
        backend.ssl_keyfile,
    )
    expected = ("smtp.example.com", 2525, "alice", sentinels.PASSWORD, True, False, 7)
    assert (*expected, "/etc/client.pem", "/etc/client.key") == read
    assert ("other.example.com", 465, False, True, 3) == (
        overridden.host,
        overridden.port,
        overridden.use_tls,
        overridden.use_ssl,
        overridden.timeout,
    )
    assert not sentinels.leaked(repr(backend))
    assert "smtp.example.com:2525" in repr(backend)


def test_the_repr_shows_no_secret_of_a_url() -> None:
    backend = EmailBackend(url=f"smtp://alice:{sentinels.PASSWORD}@smtp.example.com:587")
    assert "<EmailBackend smtp://... open=False>" == repr(backend)


# -- Django's mail.outbox ----------------------------------------------------------------------------


def test_through_memory_the_backend_keeps_djangos_mail_outbox_as_locmem_does(
    sendchannel_backend: None,
) -> None:
    mail.outbox = []
    email = EmailMessage("Kept", "x", "app@example.com", ["bob@example.com"])
    assert 1 == email.send()
    email.subject = "changed afterwards"
    assert ["Kept"] == [m.subject for m in mail.outbox]


# -- displayed headers and APIs that read recipients from the headers -------------------------------


def test_an_api_that_takes_recipients_from_the_headers_sees_the_envelope_not_the_shown_to() -> None:
    """The Gmail API delivers to the To, Cc and Bcc headers: a shown To must not redirect the message."""
    from sendchannel._mime import render

    email = EmailMessage(
        "Hi",
        "x",
        "app@example.com",
        ["bob@example.com"],
        bcc=["audit@example.com"],
        headers={"To": "Subscribers <list@example.com>"},
    )
    parsed = message_from_bytes(render(message_from_django(email), bcc_header=True), policy=policy.default)
    shown = message_from_bytes(message_from_django(email).as_bytes(), policy=policy.default)
    assert ("bob@example.com", "audit@example.com") == (parsed["To"], parsed["Bcc"])
    assert "Subscribers <list@example.com>" == shown["To"]


def test_a_message_from_django_equals_the_same_message_built_directly() -> None:
    email = EmailMessage("Hi", "x", "app@example.com", ["bob@example.com"], headers={"Message-ID": "<1@x>"})
    direct = Message("app@example.com", ["bob@example.com"], subject="Hi", text="x", message_id="<1@x>")
    assert direct == message_from_django(email)
