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


# -- no secret in any log record -------------------------------------------------------------------------

import logging  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests import sentinels  # noqa: E402


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
def _no_secret_in_logs() -> Iterator[None]:
    """Every test runs with all loggers at DEBUG; a sentinel secret in any record fails the test."""
    recorder = _Recorder()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous)
    leaks = [(text, sentinels.leaked(text)) for text in recorder.texts if sentinels.leaked(text)]
    if leaks:
        pytest.fail(f"secret(s) leaked into log records: {leaks[:3]}", pytrace=False)
