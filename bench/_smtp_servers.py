"""Servers for bench_smtp.py: Postfix's smtp-sink and an aiosmtpd sink, each in its own process.

Running the server in another process keeps its CPU out of the client's figures (the client's CPU is
measured with ``time.process_time()``, which counts this process only).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"

# The tests' helper finds Postfix's programs (smtp-sink, smtp-source) where Debian puts them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.postfix.instance import program as find_postfix_tool  # noqa: E402

__all__ = ["HOST", "find_postfix_tool"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.recv(256)  # the greeting
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {seconds} seconds")


@contextlib.contextmanager
def _running(command: list[str], port: int) -> Iterator[int]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_listening(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def smtp_sink(binary: str) -> Iterator[int]:
    """Run Postfix's smtp-sink on a free port (as ``nobody`` when we are root); yields the port."""
    port = free_port()
    command = [binary]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
    command += [f"{HOST}:{port}", "1024"]
    with _running(command, port) as running:
        yield running


@contextlib.contextmanager
def aiosmtpd_sink() -> Iterator[int]:
    """Run an aiosmtpd server that discards every message, in a child process; yields the port."""
    port = free_port()
    script = Path(__file__).with_name("_aiosmtpd_sink.py")
    with _running([sys.executable, str(script), str(port)], port) as running:
        yield running
