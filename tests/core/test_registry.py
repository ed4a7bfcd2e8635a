"""channel_from_url, register_channel, schemes() and plugins through the entry point group."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sendchannel import ConfigurationError, Message, channel_from_url, register_channel, schemes
from sendchannel._registry import _unregister
from sendchannel._urls import redact_url, split_url
from sendchannel.testing import FakeChannel

DISTS = Path(__file__).parent.parent / "plugin_dist"


def pip_install(name: str, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(DISTS / name),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example plugin distribution, really installed (pip) into a directory on sys.path."""
    target = tmp_path_factory.mktemp("site")
    pip_install("example", target)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    _unregister("example")
    for name in [m for m in sys.modules if m.startswith("sendchannel_example")]:
        del sys.modules[name]


def test_plugin_scheme_is_listed_loaded_lazily_and_built(installed_plugin: Path) -> None:
    assert "example" in schemes()
    assert "sendchannel_example" not in sys.modules
    channel = channel_from_url("example://user:s%40cret@contoso.com", region="x")
    assert "sendchannel_example" in sys.modules
    assert "example" == channel.name
    assert channel.scope.allows("a@contoso.com")
    assert "s@cret" == channel._token  # type: ignore[attr-defined]
    assert {"region": "x"} == channel.options  # type: ignore[attr-defined]


async def test_plugin_channel_sends_through_the_base_checks(installed_plugin: Path) -> None:
    channel = channel_from_url("example://u:t@contoso.com")
    result = await channel.send(Message("a@contoso.com", ["b@example.com"]))
    assert "ex-1" == result.provider_id


def test_registering_a_scheme_a_plugin_declares_names_both(installed_plugin: Path) -> None:
    def mine(url: object, **overrides: object) -> FakeChannel:  # pragma: no cover
        return FakeChannel()

    with pytest.raises(ConfigurationError) as info:
        register_channel("example", mine)
    text = str(info.value)
    assert "sendchannel_example:from_url" in text
    assert "sendchannel-example-plugin" in text
    assert "test_registering_a_scheme_a_plugin_declares_names_both.<locals>.mine" in text


def test_two_plugins_declaring_one_scheme_are_refused(installed_plugin: Path, tmp_path: Path) -> None:
    pip_install("duplicate", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigurationError, match="declared by two installed plugins") as info:
            schemes()
        assert "sendchannel_example:from_url" in str(info.value)
        assert "sendchannel_duplicate:from_url" in str(info.value)
    finally:
        sys.path.remove(str(tmp_path))


def test_register_channel_and_duplicate_registration() -> None:
    def first(url: object, **overrides: object) -> FakeChannel:
        return FakeChannel(name="first")

    def second(url: object, **overrides: object) -> FakeChannel:  # pragma: no cover
        return FakeChannel(name="second")

    register_channel("TestScheme", first)
    try:
        assert "first" == channel_from_url("testscheme://x").name
        assert "testscheme" in schemes()
        with pytest.raises(ConfigurationError, match=r"already registered by .*first.*second"):
            register_channel("testscheme", second)
    finally:
        _unregister("testscheme")


@pytest.mark.parametrize("scheme", ["", "1abc", "a b", "ü"])
def test_invalid_scheme_names_are_refused(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match="not a valid URL scheme"):
        register_channel(scheme, FakeChannel)


def test_unknown_scheme_lists_the_installed_ones_and_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        channel_from_url("mailgun://api:topsecret@example.com")
    text = str(info.value)
    assert "Unknown channel URL scheme 'mailgun'" in text
    assert "memory" in text
    assert "smtp" in text
    assert "topsecret" not in text


def test_not_a_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError, match="not a channel URL"):
        channel_from_url("user:topsecret")


def test_split_url_percent_decodes_the_password() -> None:
    parts = split_url("smtp://us%40er:p%3Aa%2Fss%20w@mail.example.com:2525")
    assert (
        parts.username,
        parts.password,
        parts.hostname,
        parts.port,
    ) == ("us@er", "p:a/ss w", "mail.example.com", 2525)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://user:topsecret@host:587", "smtp://user:***@host:587"),
        ("sparkpost://topsecret@eu?domains=a.com", "sparkpost://***@eu?domains=a.com"),
        ("gmail://a@b.com?credentials=/p&token=topsecret", "gmail://a@b.com?credentials=/p&token=***"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_secrets(url: str, shown: str) -> None:
    assert shown == redact_url(url)
