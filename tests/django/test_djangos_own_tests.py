"""Django's own mail backend tests, inherited unchanged, with sendchannel's backend in place of Django's.

``django.core.mail.backends.smtp.EmailBackend`` (and, for the locmem tests, ``locmem.EmailBackend`` with
``SENDCHANNEL_URL = "memory://"``) is sendchannel's backend while each class runs; Django's aiosmtpd
fixture is the server. The few tests that cannot pass on purpose are listed in :data:`EXCEPTIONS` with their
reason (docs/django.md carries the same list).
"""

from __future__ import annotations

import unittest
from typing import Any

import django
import pytest
from django.core.mail.backends import locmem, smtp
from django.test import override_settings

from sendchannel.contrib.django import EmailBackend
from tests.django import djangosuite

if django.VERSION[:2] != (5, 2):
    pytest.skip(
        f"Django's own mail tests are run with Django 5.2 (the exceptions below are written for its tests); "
        f"Django {django.__version__} is installed",
        allow_module_level=True,
    )
try:
    django_tests = djangosuite.load_mail_tests()
except djangosuite.Unavailable as exc:
    pytest.skip(f"Django's own mail tests are not available: {exc}", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("django_settings")

_PLAINTEXT = (
    "sends a password over an unencrypted connection, which sendchannel refuses on purpose "
    "(ImproperlyConfigured before connecting, instead of smtplib's 'SMTP AUTH extension not supported')"
)
#: Django's tests that read Django's smtplib objects, or that need a password sent in plaintext.
EXCEPTIONS: dict[str, str] = {
    "test_auth_attempted": _PLAINTEXT,
    "test_reopen_replaces_partial_connection": _PLAINTEXT + "; also reads Django's _partial_connection",
    "test_server_open": "reads Django's private _partial_connection (an smtplib.SMTP object)",
    "test_connection_timeout_custom": "reads connection.timeout of Django's smtplib.SMTP object "
    "(backend.timeout is 42 as the test wants)",
    "test_email_msg_uses_crlf": "spies on smtplib.SMTP.send, which sendchannel does not use "
    "(CRLF line ends are pinned by sendchannel's own DATA framing tests)",
    "test_email_tls_attempts_starttls": "expects smtplib's wording 'STARTTLS extension not supported by "
    "server.'; the error raised is an smtplib.SMTPException as the test wants, with sendchannel's text",
}


def _with_exceptions(cls: type) -> type:
    for name, reason in EXCEPTIONS.items():
        if hasattr(cls, name):
            setattr(cls, name, unittest.skip(reason)(getattr(cls, name)))
    return cls


@_with_exceptions
class SMTPBackendTests(django_tests.SMTPBackendTests):  # type: ignore[misc,name-defined]
    @classmethod
    def setUpClass(cls) -> Any:
        cls.enterClassContext(unittest.mock.patch.object(smtp, "EmailBackend", EmailBackend))
        super().setUpClass()


@_with_exceptions
class SMTPBackendStoppedServerTests(django_tests.SMTPBackendStoppedServerTests):  # type: ignore[misc,name-defined]
    @classmethod
    def setUpClass(cls) -> Any:
        cls.enterClassContext(unittest.mock.patch.object(smtp, "EmailBackend", EmailBackend))
        super().setUpClass()


@_with_exceptions
class LocmemBackendTests(django_tests.LocmemBackendTests):  # type: ignore[misc,name-defined]
    @classmethod
    def setUpClass(cls) -> Any:
        cls.enterClassContext(unittest.mock.patch.object(locmem, "EmailBackend", EmailBackend))
        cls.enterClassContext(override_settings(SENDCHANNEL_URL="memory://"))
        super().setUpClass()
