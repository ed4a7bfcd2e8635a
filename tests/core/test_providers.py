"""Provider descriptions: read by the registry, the lazy imports and the command line; the answer tables
shared by every provider; built-in schemes registered from the start."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sendchannel import ConfigurationError, register_channel
from sendchannel._answers import first, parse_codes, table, when
from sendchannel._providers import Provider, builtin_providers
from sendchannel._registry import described
from sendchannel._urls import comma_list, read_options, seconds, split_url
from sendchannel.errors import (
    AuthenticationError,
    MessageRejectedError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from sendchannel.testing import FakeChannel


def test_every_builtin_scheme_is_described_by_its_own_package() -> None:
    providers = builtin_providers()
    assert {"memory", "smtp", "smtps", "office365", "gmail", "sparkpost"} <= set(providers)
    for scheme, provider in providers.items():
        assert scheme == provider.scheme
        module = provider.factory.partition(":")[0]
        assert module.startswith("sendchannel.")
    assert "sparkpost" == providers["sparkpost"].extra
    assert providers["sparkpost"].key_in_user
    assert "api_key" == providers["sparkpost"].credential_keyword


def test_describing_a_scheme_imports_no_channel_module() -> None:
    """Reading the descriptions (registry, CLI, lazy names) loads neither aiohttp, Google's client nor
    aiosmtplib."""
    code = textwrap.dedent(
        """
        import sys
        from sendchannel._registry import described, schemes
        schemes()
        for scheme in ("smtp", "office365", "gmail", "sparkpost"):
            assert described(scheme) is not None
        heavy = [m for m in ("aiohttp", "googleapiclient", "aiosmtplib") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_channel_refuses_a_builtin_scheme_before_its_module_is_loaded() -> None:
    """register_channel('smtp', f) is refused even when sendchannel._smtp's channel was never imported,
    and the message names both sources."""
    code = textwrap.dedent(
        """
        import sys
        from sendchannel import ConfigurationError, register_channel
        def mine(url, **overrides):
            raise AssertionError
        assert "sendchannel._smtp._urls" not in sys.modules
        try:
            register_channel("smtp", mine)
        except ConfigurationError as exc:
            print(exc)
        else:
            raise SystemExit("accepted")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sendchannel._smtp:SMTP (built into sendchannel)" in run.stdout
    assert "<module>.mine" in run.stdout or ".mine" in run.stdout


def test_register_channel_refuses_a_loaded_builtin_scheme_too() -> None:
    def mine(url: object, **overrides: object) -> FakeChannel:  # pragma: no cover
        return FakeChannel()

    with pytest.raises(ConfigurationError, match=r"sparkpost.*built into sendchannel.*mine"):
        register_channel("sparkpost", mine)


def test_the_cli_and_registry_read_one_description() -> None:
    provider = described("office365")
    assert isinstance(provider, Provider)
    assert provider.credential_required
    assert described("no-such-scheme") is None


def test_url_options_go_through_the_described_converters() -> None:
    url = split_url("x://host?domains=a.com,b.com&domains=c.com&timeout=2.5")
    options = read_options(url, {"domains": comma_list, "timeout": seconds})
    assert {"domains": ["a.com", "b.com", "c.com"], "timeout": 2.5} == options
    with pytest.raises(ConfigurationError, match="positive, finite"):
        read_options(split_url("x://host?timeout=inf"), {"timeout": seconds})
    with pytest.raises(ConfigurationError, match="unknown option 'colour'"):
        read_options(split_url("x://host?colour=red"), {"timeout": seconds})


def test_split_url_decodes_the_user_part_once() -> None:
    """A user part written ab%2525cd is ab%25cd (decoded once), not ab%cd."""
    assert "ab%25cd" == split_url("sparkpost://ab%2525cd@us").username


# -- the shared answer table ------------------------------------------------------------------------

RULES = (
    when(ThrottledError, "slow down ({shown})", code="429"),
    when(AuthenticationError, "key refused for {reading}", code="401,403", situations=("read",)),
    when(PermanentError, "domain", reasons={"7001"}),
    when(MessageRejectedError, "too big", code="413", text=r"too large"),
    when(TransientError, "failed for now", code="5xx"),
)


@pytest.mark.parametrize(
    ("code", "text", "reasons", "situation", "expected"),
    [
        (429, "", (), "send", ThrottledError),
        (403, "", (), "read", AuthenticationError),
        (403, "", (), "send", None),
        (400, "", ("1300", "7001"), "send", PermanentError),
        (413, "Payload Too LARGE", (), "send", MessageRejectedError),
        (413, "other", (), "send", None),
        (599, "", (), None, TransientError),
    ],
)
def test_the_first_rule_that_fits_decides(
    code: int, text: str, reasons: tuple[str, ...], situation: str | None, expected: type | None
) -> None:
    chosen = first(RULES, code, text, reasons=reasons, situation=situation)
    assert expected == (chosen.error if chosen is not None else None)


def test_code_specs_and_the_generated_table() -> None:
    assert ((421, 421), (400, 499), (500, 504)) == parse_codes("421, 4xx, 500-504")
    rows = table(RULES).splitlines()
    assert 5 == len(rows)
    assert rows[0].split() == ["429", "ThrottledError"]
    assert "in read" in rows[1]
