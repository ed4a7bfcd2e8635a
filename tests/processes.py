"""Stopping a server the tests started, by its pid: the postmaster of PostgreSQL, Postfix's master."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def stop_by_pid(pid: int, sig: signal.Signals = signal.SIGTERM, wait: float = 30.0) -> None:
    """Send ``sig`` and wait up to ``wait`` seconds for the process to be gone, then SIGKILL it.

    The servers are not the tests' children (a control program started them), so init reaps them: poll.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
