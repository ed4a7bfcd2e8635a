"""Fixtures for the Postfix tier: private Postfix instances (see tests/postfix/instance.py).

Without root, or without the postfix and dovecot-core packages, every test here is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import sentinels
from tests.postfix.instance import PostfixInstance, unavailable
from tests.smtp import fixtures as smtp_fixtures
from tests.smtp.servers import Certificates

certificates = smtp_fixtures.certificates

#: Mailboxes at example.net that exist on every instance.
MAILBOXES = ("bob", "carol", "dave", "busy", *(f"r{index}" for index in range(12)), "jöran")
LOGIN = "sender@example.net"


def _start(certificates: Certificates, **options: object) -> PostfixInstance:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    instance = PostfixInstance(certificates=certificates, **options)  # type: ignore[arg-type]
    instance.start()
    return instance


@pytest.fixture(scope="session")
def postfix(certificates: Certificates) -> Iterator[PostfixInstance]:
    """A private Postfix: STARTTLS and implicit TLS, AUTH through Dovecot, smtpd_recipient_limit=5,
    message_size_limit=1 MiB, access tables for busy@, refused@ and blocked-sender@example.com."""
    instance = _start(
        certificates,
        users={LOGIN: sentinels.PASSWORD},
        mailboxes=MAILBOXES,
        recipient_access={
            "busy@example.net": "450 4.2.1 Mailbox busy, try again in 2 minutes",
            "refused@example.net": "REJECT",
        },
        sender_access={"blocked@example.com": "REJECT Access denied"},
    )
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def rate_limited_postfix(certificates: Certificates) -> Iterator[PostfixInstance]:
    """A private Postfix whose anvil allows a client 3 messages a minute."""
    instance = _start(
        certificates,
        users={LOGIN: sentinels.PASSWORD},
        mailboxes=MAILBOXES,
        settings={"smtpd_client_message_rate_limit": "3", "anvil_rate_time_unit": "60s"},
    )
    yield instance
    instance.stop()

client_tls = smtp_fixtures.client_tls
