"""A private PostgreSQL server for the tests: initdb and pg_ctl in a temporary directory, 127.0.0.1 only.

Importable by any test package (the directory's and the outbox's)::

    from tests.pg import PostgresServer

    with PostgresServer.start() as server:
        server.url            # postgresql://postgres:<sentinel password>@127.0.0.1:PORT/postgres
        server.new_database() # a fresh, empty database on it, as a URL

The server listens on a free port the OS picked, keeps its data in a temporary directory, runs as the
``postgres`` user when the tests run as root (initdb refuses root), and is stopped by the pid in its
``postmaster.pid`` (no ``pkill``). Its superuser password is the sentinel ``PASSWORD``, so the secret sweep
fails any test that lets the database password out. ``tests/conftest.py`` has the session fixture
``postgresql_server``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

from tests import sentinels
from tests.processes import stop_by_pid

__all__ = ["PostgresServer", "find_binaries"]

USER = "postgres"
PASSWORD = sentinels.PASSWORD


def find_binaries() -> str | None:
    """The directory holding initdb, pg_ctl and postgres: on PATH, else the newest /usr/lib/postgresql/*."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        real = os.path.dirname(os.path.realpath(initdb))
        if os.path.exists(os.path.join(real, "pg_ctl")) and os.path.exists(os.path.join(real, "postgres")):
            return real
    def version(path: str) -> int:
        number = path.split("/")[-2]
        return int(number) if number.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for directory in reversed(candidates):
        if all(os.path.exists(os.path.join(directory, name)) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A running private PostgreSQL server; use :meth:`start` (a context manager)."""

    def __init__(self, bindir: str, root: str, port: int, run_as: dict[str, Any]) -> None:
        self.bindir = bindir
        self.root = root
        self.data = os.path.join(root, "data")
        self.port = port
        self._run_as = run_as
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"<PostgresServer 127.0.0.1:{self.port} pid={self.pid}>"

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database, with the superuser and the (sentinel) password."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        password = urllib.parse.quote(PASSWORD, safe="")
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create a fresh, empty database and return its URL (each test gets its own)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement (autocommit) and return its rows."""
        import psycopg

        with psycopg.connect(self.url_for(database), autocommit=True) as connection:
            cursor = connection.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[PostgresServer]:
        """Start a server in a fresh temporary directory; stop it and remove the directory afterwards.

        Raises:
            RuntimeError: No PostgreSQL binaries, or the server did not start (its log is in the message).
        """
        bindir = find_binaries()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
                "install it with: apt-get install postgresql (.ci/run does)"
            )
        run_as: dict[str, Any] = {}
        root = tempfile.mkdtemp(prefix="sendchannel-pg-")
        if os.geteuid() == 0:
            account = pwd.getpwnam(USER)
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(root, account.pw_uid, account.pw_gid)
        os.chmod(root, 0o700)
        server = cls(bindir, root, 0, run_as)
        try:
            server._initdb()
            for _attempt in range(5):
                server.port = _free_port()
                if server._pg_ctl_start():
                    break
            else:
                raise RuntimeError(f"PostgreSQL did not start:\n{server._log()}")
            yield server
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [os.path.join(self.bindir, args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            timeout=120,
            **self._run_as,
        )

    def _initdb(self) -> None:
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as handle:
            handle.write(PASSWORD)
        if self._run_as:
            os.chown(pwfile, self._run_as["user"], self._run_as["group"])
        done = self._run(
            "initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
            "-E", "UTF8", "--no-sync",
        )
        os.unlink(pwfile)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def _pg_ctl_start(self) -> bool:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            "pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-o", options, "-w", "-t", "60",
            "start",
        )
        if done.returncode != 0:
            return False
        with open(os.path.join(self.data, "postmaster.pid")) as handle:
            self.pid = int(handle.readline())
        return True

    def _log(self) -> str:
        try:
            with open(os.path.join(self.root, "log")) as handle:
                return handle.read()[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server by its pid (fast shutdown), waiting up to 30 s, then kill it."""
        pid, self.pid = self.pid, None
        if pid is not None:
            stop_by_pid(pid, signal.SIGINT)
