"""Office365GraphChannel's cost per message on the shared HTTP base, against a bare aiohttp POST.

    python bench/bench_graph.py            # 2,000 messages a run, 3 runs
    python bench/bench_graph.py --quick    # 300 messages, 1 run (a smoke run)

The fast local HTTP server of ``bench_http.py`` runs in its own process on 127.0.0.1 and answers every
request at once, so the client's CPU time is its own. Each row sends the same messages of about 2 KB, 8 at
a time:

- Office365GraphChannel: ``channel.send(message)`` to ``/me/sendMail`` (scope and size checks, the
  MIME with its Bcc header, base64, the bearer token from the token provider, 4 in flight a mailbox, the
  answer read).
- bare aiohttp: ``session.post`` of the same base64 bodies, rendered before the clock starts.

Graph itself allows 4 requests in flight a mailbox and 30 messages a minute, so the figure that matters is
the client CPU a message, not the rate; both are printed, medians of the runs, with the channel's ratio.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from bench_http import Setup, messages, run

from sendchannel import Message, Office365GraphChannel
from sendchannel._graph._submission import submitted_mime

TOKEN = "bench-access-token"
SENDER = "shop@example.com"


async def _token() -> str:
    return TOKEN


def clients(port: int, batch: Sequence[Message]) -> dict[str, Setup]:
    base = f"http://127.0.0.1:{port}/v1.0"

    async def channel() -> tuple[Callable[[int], Awaitable[object]], Any]:
        graph = Office365GraphChannel(SENDER, token_provider=_token, base_url=base)
        return (lambda i: graph.send(batch[i])), graph.aclose

    bodies = [base64.b64encode(submitted_mime(message)) for message in batch]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}

    async def bare_aiohttp() -> tuple[Callable[[int], Awaitable[object]], Any]:
        session = aiohttp.ClientSession()

        async def send(i: int) -> object:
            async with session.post(base + "/me/sendMail", data=bodies[i], headers=headers) as response:
                return await response.read()

        return send, session.close

    return {"Office365GraphChannel": channel, "bare aiohttp": bare_aiohttp}


def batch_of(count: int) -> list[Message]:
    return [m.evolve(sender=SENDER) for m in messages(count)]


def main(argv: Sequence[str] | None = None) -> None:
    figures = run(__doc__, argv, batch_of, clients, width=22)
    ours, bare = figures["Office365GraphChannel"], figures["bare aiohttp"]
    print(
        f"Office365GraphChannel / bare aiohttp: {ours[0] / bare[0]:.2f}x the messages a second, "
        f"{ours[1] / bare[1]:.2f}x the CPU a message ({ours[1]:.0f} us against {bare[1]:.0f} us)"
    )


if __name__ == "__main__":
    main()
