"""Fixtures of the reliability suite, and the fault matrix's tally printed after the run."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.reliability.rigs import Env
from tests.smtp.fixtures import certificates, client_tls  # noqa: F401 - fixtures are found by name
from tests.smtp.servers import Certificates

_TALLY = pytest.StashKey[dict[str, tuple[str, bool]]]()


@pytest.fixture(scope="session")
def env(certificates: Certificates) -> Env:  # noqa: F811 - the fixture imported above
    """The trusted test authority, another one nobody trusts, and a certificate for the wrong host."""
    return Env(certificates)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Count each fault-matrix case: right when its setup, call and teardown all passed."""
    report = yield
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    channel = getattr(case, "channel", None)
    if isinstance(channel, str) and (report.when == "call" or report.failed):
        tally = item.config.stash.setdefault(_TALLY, {})
        previous = tally.get(item.nodeid, (channel, True))[1]
        tally[item.nodeid] = (channel, report.passed and (previous or report.when == "call"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault matrix's cases tried and right per channel."""
    tally = terminalreporter.config.stash.get(_TALLY, {})
    if not tally:
        return
    counts: dict[str, list[int]] = {}
    for channel, right in tally.values():
        tried_right = counts.setdefault(channel, [0, 0])
        tried_right[0] += 1
        tried_right[1] += int(right)
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(f"{'channel':<12}{'tried':>7}{'right':>7}")
    for channel in ("smtp", "office365", "gmail", "sparkpost", *sorted(set(counts) - {
        "smtp", "office365", "gmail", "sparkpost"
    })):
        if channel in counts:
            tried, right = counts[channel]
            terminalreporter.write_line(f"{channel:<12}{tried:>7}{right:>7}")
    tried = sum(c[0] for c in counts.values())
    right = sum(c[1] for c in counts.values())
    terminalreporter.write_line(f"{'total':<12}{tried:>7}{right:>7}")
