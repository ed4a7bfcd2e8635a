"""The suite's secret sweep covers the directory: its objects are watched, and what they show is checked."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from sendchannel import ChannelDirectory, Message
from sendchannel._database._postgresql import PostgresDatabase
from sendchannel._database._sqlite import SqliteDatabase
from sendchannel._directory._entry import DirectoryEntry, Record
from sendchannel._directory._layers import Guard, Observed
from sendchannel._directory._runtime import Runtime
from sendchannel._directory._secrets import SecretBox
from sendchannel._directory._store import SqlDirectoryStore
from tests import secret_sweep, sentinels
from tests.directory.conftest import MakeDirectory


def test_every_directory_and_database_class_is_watched() -> None:
    watched = set(secret_sweep._watched_classes())
    for cls in (
        ChannelDirectory, DirectoryEntry, Record, SecretBox, SqlDirectoryStore, Runtime, Guard, Observed,
        SqliteDatabase, PostgresDatabase,
    ):  # fmt: skip
        assert cls in watched, cls


async def test_the_objects_of_a_directory_that_holds_every_kind_of_secret_show_none(
    make_directory: MakeDirectory,
) -> None:
    """Connect with a password in the URL and in the overrides, send, fail: then every directory object
    the test made (entries, records, runtimes, layers, stores, errors) is swept when it ends."""
    directory = await make_directory(secrets=[Fernet.generate_key(), Fernet.generate_key()])
    url = f"dirtest://alice:{sentinels.PASSWORD}@alice?address=alice@contoso.com"
    await directory.connect("alice", url, token=sentinels.TOKEN)
    message = Message("alice@contoso.com", ["c@example.net"], subject="s", text="t")
    channel = await directory.channel_for(message, owner="alice")
    await channel.send(message)
    assert secret_sweep.watched() > 5
    assert [] == sentinels.leaked(repr(channel) + repr(directory) + repr(directory.secrets))
    assert [] == sentinels.leaked(repr(await directory.entries()))


def test_a_secret_box_never_shows_its_keys() -> None:
    key = Fernet.generate_key().decode()
    box = SecretBox(key)
    assert key not in repr(box) + str(box)
    with pytest.raises(Exception, match="not a Fernet key") as caught:
        SecretBox(["x" * 44])
    assert "x" * 44 not in str(caught.value)
