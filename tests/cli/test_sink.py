"""``sendchannel sink``: a local SMTP server that prints what it receives, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest

from sendchannel._sink import SmtpSink

from .conftest import cli, environment


class SinkProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, banner: str) -> None:
        self.process = process
        self.port = port
        self.banner = banner

    async def read_until(self, marker: str) -> str:
        assert self.process.stdout is not None
        seen = ""
        while marker not in seen:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
            assert line, f"the sink ended before printing {marker!r}; it printed {seen!r}"
            seen += line.decode()
        return seen

    async def stop(self, sig: signal.Signals) -> tuple[int, str]:
        self.process.send_signal(sig)
        stdout, _ = await asyncio.wait_for(self.process.communicate(), timeout=30)
        assert self.process.returncode is not None
        return self.process.returncode, stdout.decode()


@pytest.fixture
async def sink() -> AsyncIterator[SinkProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sendchannel", "sink", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=environment(),
    )  # fmt: skip
    assert process.stdout is not None
    banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", banner)
    assert match, banner
    running = SinkProcess(process, int(match[1]), banner)
    yield running
    if process.returncode is None:
        process.kill()
        await process.wait()


def submit(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(message)


def a_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@example.com>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Rapport été"
    message.set_content("First line\nSecond line\n")
    message.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="report.pdf")
    return message


async def test_the_sink_prints_each_message_it_receives_and_stops_on_ctrl_c(sink: SinkProcess) -> None:
    await asyncio.to_thread(submit, sink.port, a_message())
    printed = await sink.read_until("[attachment:")
    code, rest = await sink.stop(signal.SIGINT)
    assert 0 == code
    assert f"Send to it with: sendchannel send 'smtp://127.0.0.1:{sink.port}?tls=none'" in printed
    assert "bytes from <app@example.com> to <bob@example.com>" in printed
    assert "Subject: Rapport été\n" in printed
    assert "\nFirst line\nSecond line\n" in printed
    assert "[attachment: report.pdf, application/pdf, 13 bytes]" in printed
    assert "Stopped; received 1 message.\n" == rest.splitlines(keepends=True)[-1]


async def test_the_sink_stops_cleanly_on_sigterm(sink: SinkProcess) -> None:
    code, rest = await sink.stop(signal.SIGTERM)
    assert (0, "Stopped; received 0 messages.") == (code, rest.strip().splitlines()[-1])


async def test_raw_prints_the_bytes_received() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sendchannel", "sink", "--port", "0", "--raw",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=environment(),
    )  # fmt: skip
    assert process.stdout is not None
    banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    match = re.search(r":(\d+);", banner)
    assert match, banner
    running = SinkProcess(process, int(match[1]), banner)
    await asyncio.to_thread(submit, running.port, a_message())
    printed = await running.read_until('filename="report.pdf"')
    code, _ = await running.stop(signal.SIGINT)
    assert 0 == code
    assert "\nSubject: Rapport =?utf-8?b?w6l0w6k=?=\n" in printed


async def test_a_port_in_use_exits_2_saying_to_pick_another() -> None:
    async with SmtpSink() as taken:
        port = taken.port
        run = await cli("sink", "--port", str(port))
    assert 2 == run.code
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "pick another port with --port" in run.stderr


def test_the_default_port_is_1025() -> None:
    from sendchannel._cli import _parser

    assert 1025 == _parser().parse_args(["sink"]).port
