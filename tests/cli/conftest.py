"""Running the command as a user does: ``python -m sendchannel ...`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import attrs

from sendchannel import __file__ as package_file


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
    return Run(process.returncode, stdout.decode(), stderr.decode())


PACKAGE_DIR = os.path.dirname(package_file)
