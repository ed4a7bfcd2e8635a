"""SyncChannel over a real SmtpChannel and an aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from sendchannel import Message
from sendchannel.sync import SyncChannel


class Recorder:
    """An aiosmtpd handler that counts connections, messages and QUITs."""

    def __init__(self) -> None:
        self.connections = 0
        self.subjects: list[str] = []
        self.quits = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        subject = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject: "))
        self.subjects.append(subject.removeprefix(b"Subject: ").decode())
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, int]]:
    recorder = Recorder()

    def protocol() -> SMTP:
        recorder.connections += 1
        return SMTP(recorder)

    listener = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    yield recorder, listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()


def send_from_threads(channel: SyncChannel, count: int) -> None:
    threads = [
        threading.Thread(
            target=channel.send, args=(Message("app@example.com", ["bob@example.com"], subject=f"m{i}"),)
        )
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def test_threads_share_the_pooled_connections_and_close_ends_each_session_with_quit(
    server: tuple[Recorder, int],
) -> None:
    recorder, port = server
    channel = SyncChannel(f"smtp://127.0.0.1:{port}?tls=none&pool_size=2")
    await asyncio.to_thread(send_from_threads, channel, 20)
    await asyncio.to_thread(send_from_threads, channel, 20)
    opened = recorder.connections
    await asyncio.to_thread(channel.close)
    assert {f"m{i}" for i in range(20)} == set(recorder.subjects)
    assert 40 == len(recorder.subjects)
    assert (True, opened) == (1 <= opened <= 2, recorder.quits)
