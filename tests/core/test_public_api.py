"""The public surface: every name importable, __all__ sorted, optional providers lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sendchannel
from sendchannel import errors

DESIGN_NAMES = {
    "Message",
    "Attachment",
    "SendResult",
    "Channel",
    "CredentialScope",
    "ScopeKind",
    "Rate",
    "Limits",
    "SmtpChannel",
    "Office365Channel",
    "GmailOAuthChannel",
    "SparkpostChannel",
    "FailoverChannel",
    "Throttler",
    "MemoryStore",
    "SqliteStore",
    "RedisStore",
    "RetryPolicy",
    "Retrying",
    "pipeline",
    "send_all",
    "BulkReport",
    "register_channel",
    "channel_from_url",
    "schemes",
}


def test_all_is_sorted_and_holds_every_design_name_and_error() -> None:
    assert sorted(sendchannel.__all__) == sendchannel.__all__
    assert set(sendchannel.__all__) >= DESIGN_NAMES
    assert set(errors.__all__) <= set(sendchannel.__all__)


def test_every_public_name_resolves() -> None:
    for name in sendchannel.__all__:
        assert getattr(sendchannel, name) is not None, name


def test_import_is_light() -> None:
    """``import sendchannel`` imports neither Google's client, httpx, redis nor aiosmtplib."""
    code = (
        "import sys, sendchannel; "
        "heavy = [m for m in ('googleapiclient', 'google.auth', 'httpx', 'redis', 'aiosmtplib', 'tenacity') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "[]" == out.stdout.strip()


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        sendchannel.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
