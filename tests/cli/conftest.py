"""Running the command as a user does: ``python -m sendchannel ...`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import pty
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs
import pytest
import trustme

from sendchannel._sink import SmtpSink
from tests import secret_sweep, sentinels


@attrs.frozen
class Run:
    """What a run of the command left: its exit status and its output."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCHANNEL_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


async def cli(*args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> Run:
    """Run ``python -m sendchannel ARGS`` without blocking the event loop (servers in the test run on it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sendchannel",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(env),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin or b""), timeout=60)
    assert process.returncode is not None
    run = Run(process.returncode, stdout.decode(), stderr.decode())
    secret_sweep.note(run.output)  # checked for sentinel secrets when the test ends
    return run


class Terminal:
    """The command running in a pseudo-terminal, as in a user's shell: a TTY for stdin, stdout and stderr."""

    def __init__(self, process: asyncio.subprocess.Process, primary: int) -> None:
        self.process = process
        self.primary = primary
        self.seen = b""

    async def read_until(self, marker: bytes) -> None:
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while marker not in self.seen:
                try:
                    chunk = await loop.run_in_executor(None, os.read, self.primary, 4096)
                except OSError:  # EIO: the command ended and closed the terminal
                    chunk = b""
                assert chunk, f"the command ended before printing {marker!r}: {self.seen!r}"
                self.seen += chunk

        await asyncio.wait_for(read(), timeout=30)

    def type(self, text: bytes) -> None:
        os.write(self.primary, text)

    async def finish(self) -> int:
        """Read what is left and wait for the exit status."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, self.primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        code = await asyncio.wait_for(self.process.wait(), timeout=30)
        os.close(self.primary)
        secret_sweep.note(self.seen.decode(errors="replace"))  # checked for sentinel secrets at the end
        return code


async def in_terminal(*args: str, env: Mapping[str, str] | None = None) -> Terminal:
    """Start ``python -m sendchannel ARGS`` in a new pseudo-terminal."""
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sendchannel", *args,
        stdin=secondary, stdout=secondary, stderr=secondary, env=environment(env), start_new_session=True,
    )  # fmt: skip
    os.close(secondary)
    return Terminal(process, primary)


# -- SMTP servers on 127.0.0.1 -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A private certificate authority, as an organisation's IT runs one."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The server side of TLS, with a certificate for 127.0.0.1 issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The authority's certificate as a PEM file, for ``--ca-file``."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def tls_server(server_tls: ssl.SSLContext) -> AsyncIterator[SmtpSink]:
    """A submission server: STARTTLS, then AUTH required (user ``alice``, the sentinel password)."""
    async with SmtpSink(tls_context=server_tls, credentials={"alice": sentinels.PASSWORD}) as sink:
        yield sink


@pytest.fixture
def refusals() -> dict[str, str]:
    """Recipients ``plain_server`` refuses, with its reply for each (fill it in the test)."""
    return {}


@pytest.fixture
async def plain_server(refusals: dict[str, str]) -> AsyncIterator[SmtpSink]:
    """A server without TLS or AUTH that refuses the recipients in ``refusals``."""
    async with SmtpSink(on_rcpt=lambda address: refusals.get(address.lower())) as sink:
        yield sink
