"""Reading what the directory stored, as an administrator with the database and the keys could."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sendchannel._database import open_database
from sendchannel._directory._secrets import SecretBox


async def stored_overrides(database: str, key: str) -> dict[str, Any]:
    """The overrides of the directory's only entry, decrypted with ``key``."""
    db = open_database(database)
    try:
        ((secret,),) = await db.execute("SELECT secret FROM sendchannel_directory_entries")
    finally:
        await db.aclose()
    overrides: dict[str, Any] = json.loads(SecretBox(key).decrypt(bytes(secret)))["overrides"]
    return overrides


def sqlite_file_bytes(database: str) -> bytes:
    """A SQLite database's files (the database, and its WAL if any), byte for byte."""
    path = Path(database.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
