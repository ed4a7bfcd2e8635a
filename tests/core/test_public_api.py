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
    "Office365GraphChannel",
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
    """``import sendchannel`` imports neither Google's client, httpx, aiohttp, msal, redis nor aiosmtplib."""
    code = (
        "import sys, sendchannel; "
        "heavy = [m for m in ('googleapiclient', 'google.auth', 'httpx', 'aiohttp', 'msal', 'redis', "
        "'aiosmtplib', 'tenacity') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "[]" == out.stdout.strip()


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        sendchannel.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize(("name", "module", "extra"), [("SparkpostChannel", "aiohttp", "sparkpost"),
                                                       ("GmailOAuthChannel", "googleapiclient", "gmail"),
                                                       ("Office365GraphChannel", "aiohttp", "msgraph")])
def test_a_missing_optional_dependency_names_the_extra_to_install(name: str, module: str, extra: str) -> None:
    """As on a machine without the extra: the import fails with the pip command that fixes it."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"  # what Python does for a module that is not installed
        "import sendchannel\n"
        f"try:\n    sendchannel.{name}\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert f'install it with: pip install "sendchannel[{extra}]"' in out.stdout
    assert f"sendchannel.{name} needs the optional dependency {module!r}" in out.stdout


def test_an_unknown_name_is_an_attribute_error_and_dir_lists_the_lazy_names() -> None:
    with pytest.raises(AttributeError, match="no attribute 'SmtpChanel'"):
        sendchannel.SmtpChanel  # noqa: B018
    assert {"SmtpChannel", "GmailOAuthChannel", "pipeline", "send_all"} <= set(dir(sendchannel))


def test_clocks_say_what_they_are() -> None:
    from sendchannel._clock import SystemClock
    from sendchannel.testing import VirtualClock

    assert "SystemClock()" == repr(SystemClock())
    assert "VirtualClock(now=5.0, sleepers=0)" == repr(VirtualClock(start=5.0))
