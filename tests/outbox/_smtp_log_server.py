"""An aiosmtpd server for the outbox's crash tests: ``python -m tests.outbox._smtp_log_server LOG SEED``.

It listens on a free port of 127.0.0.1 and prints the port on its first line. For each message it delivers
it appends ``"<time> <Message-ID>"`` to LOG with one unbuffered write, before the reply, so a message whose
connection drops after it was taken is in the log. Faults, from a seeded generator: ``451`` at the end of
DATA now and then (not taken), and now and then the message is taken and the connection dropped before the
reply (delivered; the client cannot know).

(The idempotent crash runs go through SparkpostChannel to the SparkPost double instead:
``tests/outbox/_sparkpost_log_server.py``.)
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
DATA_TEMPORARY = 0.01
DATA_TAKEN_THEN_DROPPED = 0.004


class LoggingHandler:
    def __init__(self, log: str, seed: int) -> None:
        self.descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.chooser = random.Random(seed)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        match = _MESSAGE_ID.search(data)
        message_id = match[1] if match else b"<missing>"
        draw = self.chooser.random()
        if draw < DATA_TEMPORARY:
            return "451 4.3.0 queue temporarily unavailable"
        os.write(self.descriptor, f"{time.time():.6f} ".encode() + message_id + b"\n")
        if draw < DATA_TEMPORARY + DATA_TAKEN_THEN_DROPPED and server.transport is not None:
            server.transport.abort()
        return "250 2.0.0 Ok: queued"


async def main(log: str, seed: int) -> None:
    loop = asyncio.get_running_loop()
    handler = LoggingHandler(log, seed)

    def factory() -> Any:
        return SMTP(handler, hostname="outbox-log.localhost", decode_data=False, loop=loop)

    server = await loop.create_server(factory, "127.0.0.1", 0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
