"""``sendchannel worker`` and ``sendchannel outbox``, run as a user does, against real databases and SMTP."""

from __future__ import annotations

import re
import signal
import time

from sendchannel import DeliveryUnknownError, Outbox
from sendchannel._sink import SmtpSink
from sendchannel.testing import FakeChannel
from tests.cli.conftest import cli, in_terminal
from tests.outbox.helpers import message


async def test_outbox_command_shows_counts_by_owner_the_oldest_due_and_unknown_items(
    postgresql_url: str,
) -> None:
    """The report: a row per owner and status, the oldest waiting item, each unknown item with its error;
    the database password (a sentinel) appears nowhere."""
    channel = FakeChannel()
    async with Outbox(postgresql_url, channel=channel) as outbox:
        await outbox.put_many([message(i) for i in range(3)], owner="alice")
        channel.fail_next(DeliveryUnknownError("connection lost after the end of DATA"))
        unknown = await outbox.put(message(9), owner="bob", priority=10)
        await outbox.run(concurrency=1, until_empty=True)
        await outbox.put(message(10), owner="bob")
    run = await cli("outbox", postgresql_url)
    assert 0 == run.code, run.output
    lines = run.stdout.splitlines()
    assert lines[1].split() == ["owner", "queued", "sending", "sent", "failed", "unknown", "cancelled"]
    assert ["alice", "0", "0", "3", "0", "0", "0"] == lines[2].split()
    assert ["bob", "1", "0", "0", "0", "1", "0"] == lines[3].split()
    assert ["total", "1", "0", "3", "0", "1", "0"] == lines[4].split()
    assert "Due now: 1; oldest waiting item due" in run.stdout
    assert (
        f"#{unknown.id} {unknown.message_id} owner=bob: DeliveryUnknownError: connection lost" in run.stdout
    )
    assert "not sent again" in run.stdout


async def test_worker_command_sends_the_outbox_to_an_smtp_server_until_empty(tmp_path: object) -> None:
    """worker --channel smtp://... --until-empty sends every due item to the server and exits 0."""
    database = f"sqlite:///{tmp_path}/outbox.db"
    async with SmtpSink() as sink:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            items = await outbox.put_many([message(i) for i in range(25)])
        run = await cli(
            "worker", database, "--channel", f"smtp://127.0.0.1:{sink.port}?tls=none", "--until-empty"
        )
        assert 0 == run.code, run.output
        assert 25 == len(sink.messages)
        assert "sent 25  failed 0  unknown 0" in run.stdout
        async with Outbox(database, channel=FakeChannel()) as outbox:
            assert 25 == (await outbox.counts())["sent"]
        received = {
            re.search(rb"^Message-ID: (<[^>]+>)", m.data, re.MULTILINE)[1].decode() for m in sink.messages
        }  # type: ignore[index]
        assert {item.message_id for item in items} == received


async def test_worker_command_in_a_terminal_shows_progress_and_stops_on_sigterm(tmp_path: object) -> None:
    """In a terminal the progress line is redrawn; SIGTERM stops the worker cleanly, exit status 0."""
    database = f"sqlite:///{tmp_path}/outbox.db"
    async with SmtpSink() as sink:
        async with Outbox(database, channel=FakeChannel()) as outbox:
            await outbox.put_many([message(i) for i in range(10)])
        terminal = await in_terminal(
            "worker", database, "--channel", f"smtp://127.0.0.1:{sink.port}?tls=none"
        )
        try:
            await terminal.read_until(b"sent 10 ")
            assert b"\r" in terminal.seen
            started = time.monotonic()
            terminal.process.send_signal(signal.SIGTERM)
            assert 0 == await terminal.finish()
            assert time.monotonic() - started < 20
            assert b"SIGTERM: finishing the sends in flight" in terminal.seen
        finally:
            if terminal.process.returncode is None:  # a failed check must not leave the worker running
                terminal.process.kill()
                await terminal.process.wait()
        async with Outbox(database, channel=FakeChannel()) as outbox:
            assert 10 == (await outbox.counts())["sent"]


async def test_worker_command_sends_through_the_directory_in_the_same_database(tmp_path: object) -> None:
    """Without --channel the worker routes each item through the directory stored in the same database."""
    from cryptography.fernet import Fernet

    from sendchannel import ChannelDirectory

    database = f"sqlite:///{tmp_path}/mail.db"
    key = Fernet.generate_key().decode()
    async with SmtpSink() as sink:
        async with ChannelDirectory(database, secrets=key) as directory:
            await directory.connect("sales", f"smtp://127.0.0.1:{sink.port}?tls=none", shared=True)
        async with Outbox(database, channel=FakeChannel()) as outbox:
            await outbox.put_many([message(i) for i in range(5)], owner="sales")
        run = await cli("worker", database, "--until-empty", env={"SENDCHANNEL_SECRET_KEYS": key})
        assert 0 == run.code, run.output
        assert 5 == len(sink.messages)
        async with Outbox(database, channel=FakeChannel()) as outbox:
            assert 5 == (await outbox.counts())["sent"]
