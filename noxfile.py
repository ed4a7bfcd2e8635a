"""Development tasks: ``nox -s tests``, ``lint``, ``types``, ``docs``, ``bench`` (``pip install nox``)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "types", "docs"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent

@nox.session
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage; extra arguments go to pytest (``nox -s tests -- -k cli``)."""
    session.install("-e", ".[test]")
    session.run(
        "python", "-m", "pytest", "--cov=sendchannel", "--cov-branch", "--cov-report=term", *session.posargs
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the sources and the tests."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "docs/conf.py")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over the sources (configured in pyproject.toml)."""
    session.install("-e", ".[all,lint]")
    session.run("mypy", "--strict", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation; any warning fails the build."""
    session.install("-e", ".[all,docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark in bench/ (each prints its figures and its ratios to a baseline)."""
    session.install("-e", ".[test]")
    scripts = sorted((ROOT / "bench").glob("bench_*.py"))
    if not scripts:
        session.skip("no benchmarks in bench/")
    for script in scripts:
        session.log(f"--- {script.name}")
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)
