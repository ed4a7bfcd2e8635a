"""The Django email backend against real SMTP servers (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage as ParsedMessage
from email.mime.image import MIMEImage

import pytest
import trustme
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.test.utils import override_settings

from sendchannel import Message, RecipientsRefusedError
from sendchannel._sink import SmtpSink
from tests import sentinels

pytestmark = [
    pytest.mark.usefixtures("django_settings"),
]

BACKEND = "sendchannel.contrib.django.EmailBackend"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def submission_server(ca: trustme.CA) -> AsyncIterator[SmtpSink]:
    """STARTTLS with a certificate from a private CA, then AUTH (alice and the sentinel password)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with SmtpSink(tls_context=context, credentials={"alice": sentinels.PASSWORD}) as sink:
        yield sink


@pytest.fixture
async def refusing_server() -> AsyncIterator[SmtpSink]:
    """Plain SMTP that refuses gone@example.com."""
    refuse = {"gone@example.com": "550 5.1.1 no such user"}
    async with SmtpSink(on_rcpt=lambda address: refuse.get(address.lower())) as sink:
        yield sink


def parse(data: bytes) -> ParsedMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, ParsedMessage)
    return message


async def test_djangos_own_email_settings_are_enough(
    submission_server: SmtpSink,
    ca: trustme.CA,
    tmp_path: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EMAIL_BACKEND switched, everything else from EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS and the login."""
    ca_file = tmp_path / "ca.pem"  # type: ignore[operator]
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    settings = {
        "EMAIL_BACKEND": BACKEND,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": submission_server.port,
        "EMAIL_USE_TLS": True,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": sentinels.PASSWORD,
    }
    with override_settings(**settings):
        sent = await _in_thread(mail.send_mail, "Hi", "Hello Bob", "alice@example.com", ["bob@example.com"])
    assert 1 == sent
    [received] = submission_server.messages
    assert ("alice", "alice@example.com", ("bob@example.com",)) == (
        received.login,
        received.mail_from,
        received.rcpt_tos,
    )
    body = parse(received.data)
    assert ("7bit", "Hello Bob") == (body["Content-Transfer-Encoding"], Message.from_email_message(body).text)


async def test_every_part_of_a_django_message_arrives(refusing_server: SmtpSink) -> None:
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo@example.com>")
    email = EmailMultiAlternatives(
        subject="Rapport trimestriel",
        body="See the attached report.",
        from_email="Reports <reports@example.com>",
        to=["Bob <bob@example.com>", "gone@example.com"],
        cc=["carol@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "q3"},
    )
    email.attach_alternative('<p>Report <img src="cid:logo@example.com"></p>', "text/html")
    email.attach("report.csv", "a,b\n1,2\n", "text/csv")
    email.attach(logo)
    with override_settings(
        EMAIL_BACKEND=BACKEND, SENDCHANNEL_URL=f"smtp://127.0.0.1:{refusing_server.port}?tls=none"
    ):
        assert 1 == await _in_thread(email.send)
    [received] = refusing_server.messages
    message = parse(received.data)
    assert ("reports@example.com", ("bob@example.com", "carol@example.com", "audit@example.com")) == (
        received.mail_from,
        received.rcpt_tos,
    )
    assert {
        "From": "Reports <reports@example.com>",
        "To": "Bob <bob@example.com>, gone@example.com",
        "Cc": "carol@example.com",
        "Bcc": None,
        "Reply-To": "help@example.com",
        "Subject": "Rapport trimestriel",
        "X-Campaign": "q3",
    } == {name: message[name] for name in ("From", "To", "Cc", "Bcc", "Reply-To", "Subject", "X-Campaign")}
    assert '<p>Report <img src="cid:logo@example.com"></p>' == message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    parts = {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}
    csv = parts["text/csv"].get_payload(decode=True)
    assert isinstance(csv, bytes)
    assert b"a,b\n1,2\n" == csv.replace(b"\r\n", b"\n")
    assert (PNG, "<logo@example.com>") == (
        parts["image/png"].get_payload(decode=True),
        parts["image/png"]["Content-ID"],
    )


async def test_a_refused_message_raises_unless_fail_silently(refusing_server: SmtpSink) -> None:
    url = f"smtp://127.0.0.1:{refusing_server.port}?tls=none"
    with override_settings(EMAIL_BACKEND=BACKEND, SENDCHANNEL_URL=url):
        with pytest.raises(RecipientsRefusedError, match=r"gone@example\.com"):
            await _in_thread(mail.send_mail, "Hi", "x", "app@example.com", ["gone@example.com"])
        quiet = await _in_thread(
            mail.send_mail, "Hi", "x", "app@example.com", ["gone@example.com"], fail_silently=True
        )
    assert (0, []) == (quiet, refusing_server.messages)


async def test_channel_options_come_from_sendchannel_options(
    submission_server: SmtpSink, ca: trustme.CA
) -> None:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    settings = {
        "EMAIL_BACKEND": BACKEND,
        "SENDCHANNEL_URL": f"smtp://alice@127.0.0.1:{submission_server.port}",
        "SENDCHANNEL_OPTIONS": {"password": sentinels.PASSWORD, "tls_context": client},
    }
    with override_settings(**settings):
        assert 1 == await _in_thread(mail.send_mail, "Hi", "x", "alice@example.com", ["bob@example.com"])
    assert ["alice"] == [m.login for m in submission_server.messages]


async def _in_thread(function: object, *args: object, **kwargs: object) -> int:
    """Call Django's blocking API in a worker thread, as a request thread would; the server runs here."""
    import asyncio
    import functools

    assert callable(function)
    result: int = await asyncio.to_thread(functools.partial(function, *args, **kwargs))
    return result
