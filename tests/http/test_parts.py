"""Small parts of the shared base: the proxy lookup, redaction of changing secrets, URL converters and
the missing-extra message."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sendchannel._http import HttpClient, Redactor
from sendchannel._providers import Hint
from sendchannel._urls import boolean, integer, seconds
from sendchannel.errors import AuthenticationError, ThrottledError
from tests import sentinels


def test_the_proxy_comes_from_the_environment_once_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    http = HttpClient(provider="Example", owner="ExampleChannel", timeout=5.0)
    assert "http://proxy.example:3128" == http._proxy_for("https://api.example/v1/send")
    assert http._proxy_for("https://internal.example/v1/send") is None
    monkeypatch.delenv("HTTPS_PROXY")
    # Looked up once for each scheme and host: a later change of the environment is not seen.
    assert "http://proxy.example:3128" == http._proxy_for("https://api.example/v1/other")


def test_a_redactor_asks_its_source_for_the_current_secrets() -> None:
    current = [sentinels.TOKEN]
    redact = Redactor(lambda: current)
    assert "token ***" == redact(f"token {sentinels.TOKEN}")
    current[0] = sentinels.REFRESH_TOKEN
    redact.add(sentinels.CLIENT_SECRET)
    assert "*** ***" == redact(f"{sentinels.REFRESH_TOKEN} {sentinels.CLIENT_SECRET}")
    assert "a source" in repr(redact)


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [(boolean, "Yes", True), (boolean, "off", False), (integer, "12", 12), (seconds, "2.5", 2.5)],
)
def test_url_converters_read_their_values(convert: object, value: str, expected: object) -> None:
    assert expected == convert(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("convert", "value", "complaint"),
    [
        (boolean, "perhaps", "must be true or false"),
        (integer, "1.5", "must be a whole number"),
        (seconds, "soon", "must be a number of seconds"),
        (seconds, "0", "positive, finite"),
    ],
)
def test_url_converters_say_what_is_wrong(convert: object, value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        convert(value)  # type: ignore[operator]


def test_hints_fit_by_class_and_words() -> None:
    hint = Hint(AuthenticationError, "advice", words=("5.7.139",))
    assert hint.applies(AuthenticationError("535 5.7.139 Authentication unsuccessful"))
    assert not hint.applies(AuthenticationError("535 5.7.3 bad password"))
    assert not hint.applies(ThrottledError("421 5.7.139"))
    assert Hint(AuthenticationError, "any").applies(AuthenticationError("x"))


def test_a_scheme_whose_extra_is_missing_names_the_extra_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aiohttp"] = None  # as on a machine without the sparkpost extra
        from sendchannel import ConfigurationError, channel_from_url
        try:
            channel_from_url("sparkpost://key@us?domains=example.com")
        except ConfigurationError as exc:
            print(exc)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "The sparkpost:// scheme needs the optional dependency 'aiohttp'" in run.stdout
    assert 'pip install "sendchannel[sparkpost]"' in run.stdout
