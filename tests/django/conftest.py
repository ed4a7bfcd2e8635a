"""Django configured as its own test runner configures it (settings.configure, then the test environment)."""

from __future__ import annotations

from collections.abc import Iterator

import django
import pytest
from django.conf import settings
from django.test.utils import override_settings, setup_test_environment, teardown_test_environment

from sendchannel.contrib.django import close_channels

BACKEND = "sendchannel.contrib.django.EmailBackend"


@pytest.fixture(scope="session")
def django_settings() -> Iterator[None]:
    """Minimal settings, then Django's test environment (it sets the locmem backend, as for any project)."""
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests",
            INSTALLED_APPS=["django.contrib.contenttypes"],
            DEFAULT_FROM_EMAIL="webmaster@example.com",
            SERVER_EMAIL="server@example.com",
            ADMINS=[("Ops", "ops@example.com")],
            USE_TZ=True,
        )
        django.setup()
    setup_test_environment()
    yield
    teardown_test_environment()
    close_channels()


@pytest.fixture
def sendchannel_backend(django_settings: None) -> Iterator[None]:
    """The project switched to sendchannel, sending to ``memory://``."""
    with override_settings(EMAIL_BACKEND=BACKEND, SENDCHANNEL_URL="memory://"):
        yield
