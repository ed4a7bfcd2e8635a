"""The suite-wide guard: a sentinel secret in a log record, a captured output, an error's text or a
sendchannel object's repr fails the test that produced it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import sentinels

pytest_plugins = ["pytester"]
TESTS = Path(__file__).parent.parent

LEAKY_SUITE = """\
import base64, logging
from sendchannel import SmtpChannel
from sendchannel.errors import AuthenticationError
from tests import secret_sweep, sentinels

def test_log_plain():
    logging.getLogger('anything').debug('pw=%s', sentinels.PASSWORD)

def test_log_base64_sasl():
    logging.getLogger('x').info(base64.b64encode(b'\\0alice\\0' + sentinels.PASSWORD.encode()).decode())

def test_error_text():
    AuthenticationError(f'login refused for {sentinels.TOKEN}')

def test_printed():
    print('key', sentinels.API_KEY)

def test_output_noted():
    secret_sweep.note('Password: ' + sentinels.PASSWORD)

def test_clean():
    logging.getLogger('sendchannel').warning('nothing secret here')
    SmtpChannel('127.0.0.1', 587, username='alice', password=sentinels.PASSWORD)
    AuthenticationError('login refused')
    print('nothing secret here either')
    assert secret_sweep.watched() >= 2
"""


def test_a_leaked_secret_fails_the_test(pytester: pytest.Pytester) -> None:
    package = pytester.mkpydir("tests")
    for name in ("sentinels.py", "conftest.py", "secret_sweep.py"):
        (package / name).write_text((TESTS / name).read_text())
    (package / "test_leaky.py").write_text(LEAKY_SUITE)
    # Not pytester.runpytest_*: they echo the inner run's output, which holds the secrets, into ours.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-rA", "tests"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = [line for line in run.stdout.splitlines() if line.startswith(("PASSED", "FAILED", "ERROR"))]
    outcomes = {line.split()[1].split("::")[-1]: line.split()[0] for line in summary}
    assert {
        "test_log_plain": "ERROR",
        "test_log_base64_sasl": "ERROR",
        "test_error_text": "ERROR",
        "test_printed": "FAILED",
        "test_output_noted": "ERROR",
        "test_clean": "PASSED",
    } == outcomes, run.stdout[-3000:]
    assert "leaked into log records" in run.stdout
    assert "leaked into reprs, error texts or output" in run.stdout
    assert "leaked into captured stdout call" in run.stdout
    assert [] == sentinels.leaked(run.stderr)
