"""The Django backend sending through a ChannelDirectory (SENDCHANNEL_DIRECTORY): each message goes through
the entry its sender routes to, for the owner SENDCHANNEL_DIRECTORY_OWNER names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from django.core import mail
from django.test.utils import override_settings

from sendchannel import ChannelDirectory, Message
from sendchannel.contrib.django import close_channels
from sendchannel.errors import SenderNotAllowedError
from tests.directory.scheme import channel
from tests.django.conftest import BACKEND


@pytest.fixture
def django_configured() -> None:
    """Django set up as tests/django's session fixture sets it up (without its test environment, which
    that fixture starts once per session)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(  # the same settings as tests/django/conftest.py
            DEBUG=False,
            SECRET_KEY="tests",
            INSTALLED_APPS=["django.contrib.contenttypes"],
            DEFAULT_FROM_EMAIL="webmaster@example.com",
            SERVER_EMAIL="server@example.com",
            ADMINS=[("Ops", "ops@example.com")],
            USE_TZ=True,
        )
        django.setup()


@pytest.fixture
def directory_database(sqlite_url: str, secret_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SENDCHANNEL_SECRET_KEYS", secret_key)

    async def connect() -> None:
        async with ChannelDirectory(sqlite_url) as directory:
            await directory.connect("alice", "dirtest://alice?address=alice@contoso.com")
            await directory.connect("sales", "dirtest://team?domains=contoso.com", shared=True)

    asyncio.run(connect())
    yield sqlite_url
    close_channels()


@pytest.mark.usefixtures("django_configured")
def test_django_mail_is_routed_by_sender_for_the_configured_owner(directory_database: str) -> None:
    def owner(message: Message) -> str | None:
        return "alice" if message.sender.endswith("<alice@contoso.com>") else None

    with override_settings(
        EMAIL_BACKEND=BACKEND, SENDCHANNEL_DIRECTORY=directory_database, SENDCHANNEL_DIRECTORY_OWNER=owner
    ):
        mail.send_mail("Quote", "Hello", "Alice <alice@contoso.com>", ["lead@example.org"])
        mail.send_mail("Hi", "Hello", "carol@contoso.com", ["lead@example.org"])
        assert ["Quote"] == [m.subject for m in channel("alice").outbox]
        assert ["Hi"] == [m.subject for m in channel("team").outbox]
        with pytest.raises(SenderNotAllowedError, match=r"no channel is connected for elsewhere\.org"):
            mail.send_mail("No", "Hello", "x@elsewhere.org", ["lead@example.org"])
