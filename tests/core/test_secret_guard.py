"""The suite-wide guard: a sentinel secret in any log record fails the test that logged it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
TESTS = Path(__file__).parent.parent


def test_a_leaked_secret_fails_the_test(pytester: pytest.Pytester) -> None:
    package = pytester.mkpydir("tests")
    (package / "sentinels.py").write_text((TESTS / "sentinels.py").read_text())
    (package / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (package / "test_leaky.py").write_text(
        "import base64, logging\n"
        "from tests import sentinels\n"
        "def test_plain():\n"
        "    logging.getLogger('anything').debug('pw=%s', sentinels.PASSWORD)\n"
        "def test_base64():\n"
        "    logging.getLogger('x').info(base64.b64encode(sentinels.TOKEN.encode()).decode())\n"
        "def test_clean():\n"
        "    logging.getLogger('sendchannel').warning('nothing secret here')\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*secret(s) leaked into log records*"])
