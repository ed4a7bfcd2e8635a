"""Edges of the Django backend: a client certificate and a timeout from Django's EMAIL_* settings, a
SENDCHANNEL_URL that is not a string, and alternatives given as bytes."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.test.utils import override_settings

from sendchannel import Message
from sendchannel._sink import SmtpSink
from tests import sentinels

pytestmark = pytest.mark.usefixtures("django_settings")
BACKEND = "sendchannel.contrib.django.EmailBackend"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def mutual_tls_server(ca: trustme.CA) -> AsyncIterator[SmtpSink]:
    """STARTTLS that requires a client certificate from ``ca``, then AUTH."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    async with SmtpSink(tls_context=context, credentials={"alice": sentinels.PASSWORD}) as sink:
        yield sink


async def test_email_ssl_certfile_keyfile_and_timeout_are_used(
    mutual_tls_server: SmtpSink, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses a client without a certificate; Django's EMAIL_SSL_CERTFILE/KEYFILE provide it."""
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    client = ca.issue_cert("app.example.com")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    settings = {
        "EMAIL_BACKEND": BACKEND,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": mutual_tls_server.port,
        "EMAIL_USE_TLS": True,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": sentinels.PASSWORD,
        "EMAIL_SSL_CERTFILE": str(tmp_path / "client.pem"),
        "EMAIL_SSL_KEYFILE": str(tmp_path / "client.key"),
        "EMAIL_TIMEOUT": 5,
    }
    send = functools.partial(mail.send_mail, "Hi", "Hello", "alice@example.com", ["bob@example.com"])
    with override_settings(**settings):
        assert 1 == await asyncio.to_thread(send)
        backend = mail.get_connection()
        backend.open()
        assert 5.0 == backend.connection.channel.timeout  # type: ignore[attr-defined]
        backend.close()
    assert ["alice"] == [m.login for m in mutual_tls_server.messages]


def test_a_sendchannel_url_that_is_not_a_string_is_improperly_configured() -> None:
    with override_settings(EMAIL_BACKEND=BACKEND, SENDCHANNEL_URL=["memory://"]), pytest.raises(
        ImproperlyConfigured, match="SENDCHANNEL_URL must be a string"
    ):
        mail.send_mail("Hi", "Hello", "alice@example.com", ["bob@example.com"])


def test_an_html_alternative_given_as_bytes_is_decoded(
    sendchannel_backend: None, outbox: list[Message]
) -> None:
    email = EmailMultiAlternatives("Hi", "Hello", "alice@example.com", ["bob@example.com"])
    email.attach_alternative("<p>Hell\u00f6</p>".encode(), "text/html")
    assert 1 == email.send()
    assert ("Hello", "<p>Hell\u00f6</p>") == (outbox[-1].text, outbox[-1].html)
