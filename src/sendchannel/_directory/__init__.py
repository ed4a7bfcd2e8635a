"""ChannelDirectory: one channel per sender for a team, on SQLite, PostgreSQL or memory://."""

from __future__ import annotations

from sendchannel._directory._directory import ChannelDirectory
from sendchannel._directory._entry import DirectoryEntry

__all__ = ["ChannelDirectory", "DirectoryEntry"]
