"""What the cross-process directory tests run in other processes (importable, for multiprocessing's spawn)."""

from __future__ import annotations

import asyncio

from sendchannel import ChannelDirectory, Message
from sendchannel.errors import AuthenticationError, ConfigurationError
from tests.directory import scheme


def refuse_alice(database: str, key: str) -> str:
    """Send alice's message once, with the provider refusing her password: the entry needs reconnecting."""

    async def main() -> str:
        scheme.register()
        async with ChannelDirectory(database, secrets=key) as directory:
            message = Message(sender="alice@contoso.com", to=["c@example.net"], subject="s", text="t")
            await directory.channel_for(message, owner="alice")  # builds alice's channel in this process
            scheme.channel("alice").fail_next(
                AuthenticationError("Office 365 refused the password (535 5.7.3): it was probably changed.")
            )
            try:
                await directory.send(message, owner="alice")
            except AuthenticationError:
                return "refused"
            return "sent"

    return asyncio.run(main())


def connect_and_route(database: str, key: str, number: int, rounds: int) -> dict[str, int]:
    """Race the other processes: each connects its own mailbox, the contested one, and the team's key."""

    async def main() -> dict[str, int]:
        scheme.register()
        counts = {"contested": 0, "refused": 0, "routed": 0}
        async with ChannelDirectory(database, secrets=key, refresh_interval=0.05) as directory:
            for round_ in range(rounds):
                await directory.connect(f"user{number}", f"dirtest://u{number}?address=user{number}@contoso.com")
                try:
                    await directory.connect(f"p{number}", "dirtest://c?address=contested@contoso.com")
                    counts["contested"] += 1
                except ConfigurationError:
                    counts["refused"] += 1
                await directory.connect("team", "dirtest://team?domains=contoso.com", shared=True)
                await directory.entries()
                directory.route(f"user{number}@contoso.com", owner=f"user{number}")
                directory.route(f"someone{round_}@contoso.com")
                counts["routed"] += 2
        return counts

    return asyncio.run(main())
