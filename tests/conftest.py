"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# A suite started in the background by a script (`nohup ... &`) inherits SIGINT ignored, and so would every
# command the CLI tests start: their Ctrl-C tests need the default, which Python gives its main thread.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# -- no secret anywhere: log records, captured output, errors, reprs ---------------------------------------

import logging  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests import secret_sweep, sentinels  # noqa: E402

secret_sweep.install()


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a library's malformed record is not ours to judge
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r} {record.exc_info[1]}"
        self.texts.append(f"{record.name}: {text}")


@pytest.fixture(autouse=True)
def _no_secret_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with all loggers at DEBUG; a sentinel secret in any log record, or in the repr or text
    of any error, channel or other sendchannel object the test created, fails the test."""
    recorder = _Recorder()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    secret_sweep.start(enabled=request.node.get_closest_marker("no_secret_sweep") is None)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous)
    leaks = [(text, sentinels.leaked(text)) for text in recorder.texts if sentinels.leaked(text)]
    if leaks:
        pytest.fail(f"secret(s) leaked into log records: {leaks[:3]}", pytrace=False)
    swept = secret_sweep.leaks()
    if swept:
        pytest.fail(f"secret(s) leaked into reprs, error texts or output: {swept[:3]}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A passing test whose captured stdout or stderr holds a sentinel secret fails."""
    report = yield
    if report.passed:
        for name, text in report.sections:
            found = sentinels.leaked(text)
            # Each phase's report repeats the earlier phases' sections: look at this phase's only. Log
            # records are checked (with their source) by the fixture above.
            if found and name.endswith(report.when) and "Captured log" not in name:
                report.outcome = "failed"
                report.longrepr = f"secret(s) {found} leaked into {name.lower()}: {text[:300]!r}"
                break
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    totals = secret_sweep.totals
    if totals["tests"]:
        terminalreporter.write_line(
            f"secret sweep: {totals['tests']} tests, {totals['objects']} sendchannel objects and errors "
            f"({totals['views']} reprs and texts), {totals['texts']} command outputs checked for "
            f"{len(sentinels.ALL)} sentinel secrets"
        )


# -- a private PostgreSQL server for the database tests (tests/pg.py) -------------------------------------

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from tests.pg import PostgresServer


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session (initdb/pg_ctl in a temporary directory, 127.0.0.1).

    Without PostgreSQL installed the tests that need it are skipped on a developer's machine, and fail in
    CI (``CI`` set), where ``.ci/run`` installs it.
    """
    from tests.pg import PostgresServer, find_binaries

    if find_binaries() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    with PostgresServer.start() as server:
        yield server


@pytest.fixture
def postgresql_url(postgresql_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server (password included)."""
    return postgresql_server.new_database()
