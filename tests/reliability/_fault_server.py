"""An aiosmtpd server that fails now and then, for the load tests: ``python -m tests.reliability._fault_server
SEED LOG``. It listens on a free port of 127.0.0.1 and prints the port on its first line of output.

Each message it accepts has its Message-ID appended to LOG (one unbuffered write, before the reply, so a
message whose connection is dropped after it was taken is in the log too). Faults, drawn from a seeded
generator:

* RCPT: recipients at ``refused.example.org`` get ``550 5.1.1``, at ``busy.example.org`` ``450 4.2.1``;
  any other recipient ``451 4.3.0`` now and then (a partial refusal, or a temporary all-refused one).
* MAIL: now and then, on a connection that carried a message before, ``421 4.4.2`` and the connection
  closes (the idle timeout a pooled connection meets).
* End of DATA: now and then ``451 4.3.0`` (not taken); once in 10,000 ``421 4.3.2 ... try again in
  1 second`` and the connection closes (not taken); the message is taken and the connection dropped
  before the reply (delivered, but the client cannot know); the connection dropped without taking it.

Counters of every fault are written to ``LOG.faults`` (JSON) when the server gets SIGTERM.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
REFUSED_DOMAIN = "@refused.example.org"
BUSY_DOMAIN = "@busy.example.org"
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

#: The chance of each fault: per RCPT, per MAIL, per end of DATA.
RCPT_TEMPORARY = 0.005
MAIL_CLOSING = 0.002
DATA_TEMPORARY = 0.01
DATA_TAKEN_THEN_DROPPED = 0.003
DATA_DROPPED = 0.002
#: One end of DATA in this many gets the closing 421, which pauses every sender for a second: a fixed
#: count (5 in 50,000), whatever order the connections' commands arrive in.
DATA_CLOSING_EVERY = 10_000


def pick(chooser: random.Random, chances: tuple[tuple[str, float], ...]) -> str:
    """One name drawn with its chance from ``chances``, or ``"none"`` (with what chance is left)."""
    draw = chooser.random()
    for name, chance in chances:
        if draw < chance:
            return name
        draw -= chance
    return "none"


class FaultyHandler:
    """aiosmtpd handler hooks that log accepted Message-IDs and inject faults."""

    def __init__(self, seed: int, log: str) -> None:
        self.chooser = random.Random(seed)
        self.descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.faults: collections.Counter[str] = collections.Counter()
        self.messages = 0

    @staticmethod
    def _close_after_reply(server: SMTP) -> None:
        transport = server.transport
        if transport is not None:
            # close() flushes the reply written just before it.
            asyncio.get_running_loop().call_soon(transport.close)

    @staticmethod
    def _drop(server: SMTP) -> None:
        if server.transport is not None:
            server.transport.abort()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        transactions = getattr(session, "transactions", 0)
        session.transactions = transactions + 1  # type: ignore[attr-defined]
        # Only on a connection used before: the idle timeout a pooled connection meets.
        if transactions and self.chooser.random() < MAIL_CLOSING:
            self.faults["mail_421"] += 1
            self._close_after_reply(server)
            return "421 4.4.2 smtp-faults.localhost closing idle connection"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        lowered = address.lower()
        if lowered.endswith(REFUSED_DOMAIN):
            return "550 5.1.1 mailbox unavailable"
        if lowered.endswith(BUSY_DOMAIN):
            return "450 4.2.1 mailbox busy"
        if self.chooser.random() < RCPT_TEMPORARY:
            self.faults["rcpt_451"] += 1
            return "451 4.3.0 temporary lookup failure"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        self.messages += 1
        if self.messages % DATA_CLOSING_EVERY == DATA_CLOSING_EVERY // 2:
            fault = "data_421"
        else:
            fault = pick(
                self.chooser,
                (
                    ("data_451", DATA_TEMPORARY),
                    ("data_taken_then_dropped", DATA_TAKEN_THEN_DROPPED),
                    ("data_dropped", DATA_DROPPED),
                ),
            )
        self.faults[fault] += 1
        if fault == "data_451":
            return "451 4.3.0 queue temporarily unavailable"
        if fault == "data_421":
            self._close_after_reply(server)
            return "421 4.3.2 smtp-faults.localhost shutting down, try again in 1 second"
        if fault == "data_dropped":
            self._drop(server)
            return "250 2.0.0 Ok: never seen"
        match = _MESSAGE_ID.search(data)
        message_id = match[1] if match else b"<missing>"
        os.write(self.descriptor, message_id + b"\n")
        if fault == "data_taken_then_dropped":
            self._drop(server)
        return f"250 2.0.0 Ok: queued as F{self.faults['none'] + self.faults[fault]:07d}"

    def write_faults(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(dict(self.faults), file)


async def main(seed: int, log: str) -> None:
    loop = asyncio.get_running_loop()
    handler = FaultyHandler(seed, log)

    def factory() -> Any:
        return SMTP(handler, hostname="smtp-faults.localhost", decode_data=False, loop=loop)

    server = await loop.create_server(factory, HOST, 0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()
    handler.write_faults(log + ".faults")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
