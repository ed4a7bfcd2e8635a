"""Fixtures for the SMTP tests: servers from tests.smtp.fixtures, and messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sendchannel import Message
from tests.smtp.fixtures import (  # noqa: F401 - fixtures are found by name
    certificates,
    client_tls,
    office365_double,
    plain_server,
    smtp_servers,
    starttls_server,
)


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """Build a Message from app@example.com to bob@example.net, with fields overridden."""

    def build(**changes: Any) -> Message:
        fields: dict[str, Any] = {
            "sender": "App <app@example.com>",
            "to": ["bob@example.net"],
            "subject": "Your order has shipped",
            "text": "Hello Bob,\n\nyour order is on its way.\n",
        }
        fields.update(changes)
        return Message(**fields)

    return build
