"""Django's own mail tests (``tests/mail/tests.py`` of the sdist of the installed Django), fetched once.

The Django wheel does not ship its test suite; the sdist does. :func:`load_mail_tests` downloads the sdist
of exactly the installed version with pip (so it uses the configured index, like every other download of
the suite), keeps ``tests/mail`` in a cache directory, and imports ``tests.py`` as a module. When the sdist
cannot be had (no network, no index), it says why, and the tests that need it are skipped with that reason.

The cache directory is ``$SENDCHANNEL_DJANGO_TESTS`` or ``~/.cache/sendchannel/django-tests``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import django


class Unavailable(Exception):
    """Django's tests cannot be had here; the text says why."""


def _cache() -> Path:
    configured = os.environ.get("SENDCHANNEL_DJANGO_TESTS")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sendchannel" / "django-tests"


def mail_tests_dir() -> Path:
    """The ``tests/mail`` directory of the installed Django's sdist, downloaded on first use."""
    version = django.__version__
    target = _cache() / f"django-{version}" / "mail"
    if (target / "tests.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        command += ["--quiet", "--dest", scratch, f"django=={version}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"pip download of the Django {version} sdist failed: {exc}") from exc
        archives = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no sdist"]
            raise Unavailable(f"cannot download the Django {version} sdist with pip: {detail[0]}")
        prefix = f"{archives[0].name.removesuffix('.tar.gz')}/tests/mail/"
        unpacked = Path(scratch) / "mail"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                    continue
                relative = member.name.removeprefix(prefix)
                destination = unpacked / relative
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                destination.write_bytes(source.read())
        if not (unpacked / "tests.py").is_file():
            raise Unavailable(f"the Django {version} sdist has no tests/mail/tests.py")
        try:
            unpacked.rename(target)
        except OSError:  # another process put it there first
            if not (target / "tests.py").is_file():
                raise
            shutil.rmtree(unpacked, ignore_errors=True)
    return target


def load_mail_tests() -> types.ModuleType:
    """Django's ``tests/mail/tests.py`` as the module ``django_mail_tests``.

    Raises:
        Unavailable: The sdist could not be downloaded or does not hold the tests.
    """
    name = "django_mail_tests"
    if name in sys.modules:
        return sys.modules[name]
    path = mail_tests_dir() / "tests.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
