"""The Django email backend against FakeChannel (memory:// and a SENDCHANNEL_CHANNEL factory)."""

from __future__ import annotations

import asyncio
import threading
from email.mime.image import MIMEImage

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test.utils import override_settings

from sendchannel import (
    Attachment,
    CredentialScope,
    InvalidMessageError,
    Message,
    RecipientsRefusedError,
    SenderNotAllowedError,
    ThrottledError,
)
from sendchannel.contrib.django import EmailBackend, message_from_django
from sendchannel.errors import ConfigurationError
from sendchannel.testing import FakeChannel
from tests import sentinels

from .conftest import BACKEND

pytestmark = pytest.mark.usefixtures("sendchannel_backend")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

OFFICE = FakeChannel(
    scope=CredentialScope.per_address("alice@contoso.com", provider="Office 365"), name="office"
)


def office_channel() -> FakeChannel:
    """A SENDCHANNEL_CHANNEL factory, as a project writes one."""
    return OFFICE


def test_send_mail_goes_through_the_channel(outbox: list[Message]) -> None:
    count = mail.send_mail("Hello", "Hi Bob", "app@example.com", ["bob@example.com"])
    assert 1 == count
    [sent] = outbox
    assert ("app@example.com", ("bob@example.com",), "Hello", "Hi Bob", None) == (
        sent.sender,
        sent.to,
        sent.subject,
        sent.text,
        sent.html,
    )


def test_every_field_of_email_multi_alternatives_is_carried(outbox: list[Message]) -> None:
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo@example.com>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    email = EmailMultiAlternatives(
        subject="Rapport trimestriel",
        body="See the attached report.",
        from_email="Reports <reports@example.com>",
        to=["Bob <bob@example.com>"],
        cc=["carol@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "q3", "Message-ID": "<q3-report@example.com>"},
    )
    email.attach_alternative('<p>See the report. <img src="cid:logo@example.com"></p>', "text/html")
    email.attach("report.csv", "a,b\n1,2\n", "text/csv")
    email.attach("data.bin", b"\x00\x01\x02")
    email.attach(logo)
    assert 1 == email.send()
    [sent] = outbox
    assert (
        "Reports <reports@example.com>",
        ("Bob <bob@example.com>",),
        ("carol@example.com",),
        ("audit@example.com",),
        ("help@example.com",),
        "Rapport trimestriel",
        "See the attached report.",
        '<p>See the report. <img src="cid:logo@example.com"></p>',
        {"X-Campaign": "q3"},
        "<q3-report@example.com>",
    ) == (
        sent.sender,
        sent.to,
        sent.cc,
        sent.bcc,
        sent.reply_to,
        sent.subject,
        sent.text,
        sent.html,
        dict(sent.headers),
        sent.message_id,
    )
    assert [
        Attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@example.com"),
        Attachment("report.csv", b"a,b\n1,2\n", "text/csv"),
        Attachment("data.bin", b"\x00\x01\x02", "application/octet-stream"),
    ] == sorted(sent.attachments, key=lambda a: not a.inline)


def test_an_html_body_is_sent_as_html_with_a_text_alternative(outbox: list[Message]) -> None:
    email = EmailMultiAlternatives("Hi", "<b>Hi</b>", "app@example.com", ["bob@example.com"])
    email.content_subtype = "html"
    email.attach_alternative("Hi", "text/plain")
    email.send()
    assert [("Hi", "<b>Hi</b>")] == [(m.text, m.html) for m in outbox]


def test_from_and_reply_to_headers_set_the_sender_and_reply_to(outbox: list[Message]) -> None:
    EmailMessage(
        "Hi",
        "Hello",
        "app@example.com",
        ["bob@example.com"],
        headers={"From": "The App <app@example.com>", "Reply-To": "a@example.com, b@example.com"},
    ).send()
    [sent] = outbox
    assert ("The App <app@example.com>", ("a@example.com", "b@example.com")) == (
        sent.sender,
        sent.reply_to,
    )


def test_send_mass_mail_counts_the_messages_sent_and_skips_those_without_recipients(
    outbox: list[Message],
) -> None:
    connection = mail.get_connection()
    messages = [
        EmailMessage("One", "1", "app@example.com", ["a@example.com"]),
        EmailMessage("Nobody", "0", "app@example.com", []),
        EmailMessage("Two", "2", "app@example.com", ["b@example.com"]),
    ]
    assert 2 == connection.send_messages(messages)
    assert ["One", "Two"] == [m.subject for m in outbox]
    assert 0 == connection.send_messages([])


def test_mail_admins_uses_the_backend(outbox: list[Message]) -> None:
    mail.mail_admins("Disk full", "on web-1")
    assert [("server@example.com", ("ops@example.com",))] == [(m.sender, m.to) for m in outbox]


def test_a_failed_send_raises_the_channels_error_after_the_messages_before_it(
    fake_channel: FakeChannel,
) -> None:
    fake_channel.reject_recipients("gone@example.com")
    messages = [
        EmailMessage("One", "1", "app@example.com", ["a@example.com"]),
        EmailMessage("Gone", "x", "app@example.com", ["gone@example.com"]),
        EmailMessage("Three", "3", "app@example.com", ["c@example.com"]),
    ]
    with pytest.raises(RecipientsRefusedError):
        mail.get_connection().send_messages(messages)
    assert ["One"] == [m.subject for m in fake_channel.outbox]


def test_fail_silently_skips_failed_messages_and_counts_the_rest(fake_channel: FakeChannel) -> None:
    fake_channel.reject_recipients("gone@example.com")
    fake_channel.fail_next(ThrottledError("slow down", code=421))
    messages = [
        EmailMessage("Throttled", "1", "app@example.com", ["a@example.com"]),
        EmailMessage("Gone", "x", "app@example.com", ["gone@example.com"]),
        EmailMessage("Bad alternative", "x", "app@example.com", ["b@example.com"]),
        EmailMessage("Sent", "3", "app@example.com", ["c@example.com"]),
    ]
    messages[2].alternatives = [("BEGIN:VCALENDAR", "text/calendar")]
    assert 1 == mail.get_connection(fail_silently=True).send_messages(messages)
    assert ["Sent"] == [m.subject for m in fake_channel.outbox]


def test_a_partly_refused_message_counts_as_sent(fake_channel: FakeChannel) -> None:
    fake_channel.reject_recipients("gone@example.com")
    count = mail.send_mail("Hi", "x", "app@example.com", ["gone@example.com", "bob@example.com"])
    assert 1 == count


def test_an_alternative_other_than_html_or_text_is_refused_with_the_remedy() -> None:
    email = EmailMultiAlternatives("Invite", "x", "app@example.com", ["bob@example.com"])
    email.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
    with pytest.raises(InvalidMessageError, match=r"text/calendar alternative cannot be sent.*attach"):
        email.send()


def test_to_cc_and_date_headers_are_shown_while_the_envelope_keeps_the_fields() -> None:
    """Django's headers={"To": ...}: what the recipients see changes, not where the message goes."""
    email = EmailMessage(
        "Hi",
        "x",
        "app@example.com",
        ["bob@example.com"],
        cc=["carol@example.com"],
        headers={
            "To": "List <list@example.com>",
            "Cc": "archive@example.com",
            "Date": "Tue, 01 Dec 2026 10:00:00 +0000",
        },
    )
    message = message_from_django(email)
    parsed = message.to_email_message()
    assert ("bob@example.com", "carol@example.com") == message.recipients
    assert ("List <list@example.com>", "archive@example.com", "Tue, 01 Dec 2026 10:00:00 +0000") == (
        parsed["To"],
        parsed["Cc"],
        parsed["Date"],
    )


def test_a_message_rfc822_attachment_is_kept_as_the_inner_message(outbox: list[Message]) -> None:
    inner = EmailMessage("Inner", "inner body", "x@example.com", ["y@example.com"])
    outer = EmailMessage("Outer", "see attached", "app@example.com", ["bob@example.com"])
    outer.attach("forwarded.eml", inner, "message/rfc822")
    outer.send()
    [attachment] = outbox[0].attachments
    assert ("message/rfc822", True) == (attachment.content_type, b"inner body" in attachment.content)


def test_a_factory_setting_builds_the_channel_and_its_scope_is_enforced() -> None:
    OFFICE.clear()
    with override_settings(SENDCHANNEL_URL=None, SENDCHANNEL_CHANNEL=f"{__name__}.office_channel"):
        assert 1 == mail.send_mail("Hi", "x", "alice@contoso.com", ["bob@example.com"])
        with pytest.raises(SenderNotAllowedError, match="belong to one mailbox"):
            mail.send_mail("Hi", "x", "bob@contoso.com", ["carol@example.com"])
        assert 0 == mail.send_mail("Hi", "x", "bob@contoso.com", ["c@example.com"], fail_silently=True)
    assert ["alice@contoso.com"] == [m.sender for m in OFFICE.outbox]


def test_a_channel_object_in_the_setting_is_used_as_is() -> None:
    channel = FakeChannel(name="direct")
    with override_settings(SENDCHANNEL_URL=None, SENDCHANNEL_CHANNEL=channel):
        mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"])
    assert 1 == len(channel.outbox)


def test_both_settings_at_once_are_improperly_configured() -> None:
    with (
        override_settings(SENDCHANNEL_CHANNEL=f"{__name__}.office_channel"),
        pytest.raises(ImproperlyConfigured, match="Both SENDCHANNEL_URL and SENDCHANNEL_CHANNEL"),
    ):
        mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"])


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"SENDCHANNEL_URL": "nope://x"}, "Unknown channel URL scheme 'nope'"),
        ({"SENDCHANNEL_URL": None, "SENDCHANNEL_CHANNEL": "no.such.mod"}, "cannot import 'no.such.mod'"),
        ({"SENDCHANNEL_URL": None, "SENDCHANNEL_CHANNEL": "os.getcwd"}, "it gave str"),
    ],
)
def test_bad_settings_are_improperly_configured_even_with_fail_silently(
    setting: dict[str, object], match: str
) -> None:
    with override_settings(**setting), pytest.raises(ImproperlyConfigured, match=match):
        mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"], fail_silently=True)


def test_a_url_given_to_get_connection_wins_over_the_setting(outbox: list[Message]) -> None:
    from sendchannel.testing import memory_channel

    audit = memory_channel("audit")
    audit.clear()
    connection = mail.get_connection(BACKEND, url="memory://audit")
    mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"], connection=connection)
    assert (1, []) == (len(audit.outbox), outbox)


def test_backends_with_one_configuration_share_one_channel_until_the_setting_changes() -> None:
    first, second = EmailBackend(), EmailBackend()
    with first, second:
        assert first.connection is second.connection
        shared = first.connection
    assert shared is not None
    with override_settings(SENDCHANNEL_URL="memory://other"):
        assert shared.closed
        with EmailBackend() as third:
            assert third.connection is not shared


def test_sending_from_an_async_view_blocks_like_djangos_own_backends(outbox: list[Message]) -> None:
    async def view() -> int:
        sent: int = mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"])
        return sent

    assert 1 == asyncio.run(view())
    assert 1 == len(outbox)


def test_many_request_threads_send_at_once(outbox: list[Message]) -> None:
    threads = [
        threading.Thread(target=mail.send_mail, args=(f"m{i}", "x", "app@example.com", [f"u{i}@example.com"]))
        for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {f"m{i}" for i in range(16)} == {m.subject for m in outbox}


def test_djangos_settings_with_a_password_but_no_tls_are_refused_before_connecting() -> None:
    settings = {
        "SENDCHANNEL_URL": None,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": sentinels.PASSWORD,
    }
    with override_settings(**settings), pytest.raises(ImproperlyConfigured) as info:
        mail.send_mail("Hi", "x", "app@example.com", ["bob@example.com"])
    assert "set EMAIL_USE_TLS = True (STARTTLS, usually port 587) or EMAIL_USE_SSL = True" in str(info.value)
    assert not sentinels.leaked(str(info.value))


def test_both_email_use_tls_and_use_ssl_are_a_value_error_when_the_backend_is_built() -> None:
    """As in Django: a ValueError from the constructor (also a sendchannel ConfigurationError)."""
    with (
        override_settings(SENDCHANNEL_URL=None, EMAIL_USE_TLS=True, EMAIL_USE_SSL=True),
        pytest.raises(ConfigurationError, match="EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive"),
    ):
        mail.get_connection(BACKEND)
    with pytest.raises(ValueError, match="SSL is implicit TLS, usually on port 465"):
        EmailBackend(use_tls=True, use_ssl=True)
