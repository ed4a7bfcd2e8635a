"""The SparkPost double for the outbox's crash tests, in a process of its own.

``python -m tests.outbox._sparkpost_log_server LOG REPLAYS SEED`` runs
:class:`tests.sparkpost.server.SparkpostServer` (which honours ``Idempotency-Key`` as SparkPost documents)
on a free port of 127.0.0.1 and prints the port on its first line; SIGTERM stops it. For each transmission
it delivers it appends ``"<time> <Message-ID>"`` to LOG (the time its request arrived, as a provider's
rate limit counts it) with one unbuffered write, before the answer is written, so a transmission whose
connection drops after it was handled is in the log. A repeat of a remembered Idempotency-Key is answered
as the double answers it (the first answer again, or 409) and is not delivered, so not in LOG: it appends
``"<time> <status> <error code or ->"`` to REPLAYS instead.

Faults, from a seeded generator, for new transmissions (as the SMTP log server has them, over HTTP): a 503
with code 1900 now and then (nothing done: a transient error), and now and then the connection is closed
after the request was read, either with nothing done (``drop``) or after the transmission was delivered
(``deliver-then-drop``): the client cannot know which, so both are unknown outcomes to it.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.sparkpost.server import GENERATION_UNAVAILABLE, Answer, Received, SparkpostServer

TEMPORARY = 0.01
DROPPED = 0.004
DELIVERED_THEN_DROPPED = 0.004


class LoggingSparkpost(SparkpostServer):
    """The SparkPost double, logging each delivery and each repeat to files, with seeded faults."""

    def __init__(self, log: str, replays: str, seed: int) -> None:
        super().__init__()
        self.log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.replays = os.open(replays, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.chooser = random.Random(seed)
        self.faults = self._fault
        self._arrival = threading.local()  # each request is handled on a thread of its own
        httpd = self._httpd
        report = httpd.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A worker killed in the middle of a request leaves its connection reset: not an error here.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                report(request, client_address)

        httpd.handle_error = handle_error  # type: ignore[method-assign]

    def _fault(self, received: Received) -> Answer | None:
        draw = self.chooser.random()
        if draw < TEMPORARY:
            return GENERATION_UNAVAILABLE
        if draw < TEMPORARY + DROPPED:
            return Answer(action="drop")
        if draw < TEMPORARY + DROPPED + DELIVERED_THEN_DROPPED:
            return Answer(action="deliver-then-drop")
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        self._arrival.at = time.time()
        super()._handle(handler, method)

    def _transmit(self, received: Received) -> Answer:
        answer = super()._transmit(received)
        with self._lock:
            mine = [d for d in self.delivered if d.request is received]
            self.delivered[:] = [d for d in self.delivered if d.request is not received]
        for delivered in mine:
            os.write(self.log, f"{self._arrival.at:.6f} {delivered.header('message-id')}\n".encode())
        return answer

    def _repeat(self, earlier: tuple[float, bytes, Answer | None], body: bytes) -> Answer:
        answer = super()._repeat(earlier, body)
        errors = answer.body.get("errors") if isinstance(answer.body, dict) else None
        code = errors[0].get("code", "-") if errors else "-"
        os.write(self.replays, f"{time.time():.6f} {answer.status} {code}\n".encode())
        return answer


def main(log: str, replays: str, seed: int) -> None:
    # Block SIGTERM before the server's threads start (they inherit the mask), then wait for it here.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    server = LoggingSparkpost(log, replays, seed).start()
    port = server.url.split(":")[2].split("/")[0]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    signal.sigwait({signal.SIGTERM})
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
