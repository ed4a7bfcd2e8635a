"""A ChannelDirectory seen as one Channel, for code that takes a channel (the Django backend)."""

from __future__ import annotations

from collections.abc import Callable

from sendchannel._channel import Closing
from sendchannel._directory._directory import ChannelDirectory
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope

__all__ = ["DirectoryChannel"]

Owner = str | Callable[[Message], str | None] | None


class DirectoryChannel(Closing):
    """Sends each message through ``directory.send(message, owner=...)``; closing closes the directory.

    Args:
        directory: The directory, or its database URL (the keys then come from
            ``SENDCHANNEL_SECRET_KEYS``).
        owner: Whose messages these are: one owner for all, a function of the message, or None (only
            shared entries serve).
    """

    name = "directory"

    def __init__(self, directory: ChannelDirectory | str, owner: Owner = None) -> None:
        self.directory = directory if isinstance(directory, ChannelDirectory) else ChannelDirectory(directory)
        self._owner = owner
        #: The directory routes each sender; the checks are its entries'.
        self.scope = CredentialScope.unrestricted()
        self.limits = Limits()

    async def send(self, message: Message) -> SendResult:
        """Send through the entry the directory routes ``message`` to."""
        owner = self._owner(message) if callable(self._owner) else self._owner
        return await self.directory.send(message, owner=owner)

    async def verify(self) -> None:
        """Read the directory's entries (the database must be reachable)."""
        await self.directory.entries()

    async def aclose(self) -> None:
        """Close the directory."""
        await self.directory.aclose()

    def __repr__(self) -> str:
        return f"<DirectoryChannel {self.directory!r}>"
