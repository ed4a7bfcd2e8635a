"""How fast SmtpChannel sends, beside the usual ways of sending mail from Python, in the same run.

    python bench/bench_smtp.py                  # 5,000 messages of about 2 KB, each server, best of 3
    python bench/bench_smtp.py --messages 1000 --repeat 1 --servers smtp-sink

Servers (each in its own process, so the figures below are the client's alone):
  * Postfix's smtp-sink (C; ``apt-get install postfix`` ships it, the postfix daemon need not run),
  * aiosmtpd (Python).

Senders, all given the same messages (built from sendchannel Message objects before the clock starts):
  * SmtpChannel with pool_size 1, 4 and 8 (as many concurrent senders as connections), rendering MIME
    inside the timed loop,
  * aiosmtplib.send(), a new connection per message, 8 at a time, building an EmailMessage each,
  * smtplib reusing one connection, building an EmailMessage each,
  * Django's SMTP EmailBackend (one connection for the batch), building Django messages,
  * a bare aiosmtplib pool of 8 connections sending pre-serialised bytes (a ceiling for Python),
  * smtp-source (C) with 8 sessions, reusing connections (``-d``), sending a rendered message file.

Each sender is timed on the wall clock (messages per second) and on this process's CPU clock (client CPU
per message; for smtp-source, its own CPU). A sender whose tool is missing is skipped with a note; the
script installs nothing. A separate section times MIME building alone.
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import email.policy
import email.utils
import importlib.util
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import aiosmtplib
from _smtp_servers import HOST, aiosmtpd_sink, find_postfix_tool, smtp_sink

from sendchannel import Message, SmtpChannel

LOCAL_HOSTNAME = "bench.localhost"
SENDER = "Shop <shop@example.com>"
PARAGRAPH = (
    "Thank you for your order. Your parcel left our warehouse this morning and should reach you "
    "within two working days. You can follow it with the tracking link in your account.\n"
)


def make_messages(count: int) -> list[Message]:
    """``count`` different messages of about 2 KB each (text only, one recipient)."""
    return [
        Message(
            SENDER,
            [f"Customer {i} <customer{i}@example.net>"],
            subject=f"Your order #{100000 + i} has shipped",
            text=f"Hello customer {i},\n\n" + PARAGRAPH * 9 + "\nKind regards,\nThe Shop\n",
        )
        for i in range(count)
    ]


def stdlib_message(message: Message) -> email.message.EmailMessage:
    """The same message built the usual stdlib way (EmailMessage, default policy)."""
    built = email.message.EmailMessage()
    built["From"] = message.sender
    built["To"] = ", ".join(message.to)
    built["Subject"] = message.subject
    built["Message-ID"] = message.message_id
    built["Date"] = email.utils.formatdate(usegmt=True)
    built.set_content(message.text or "")
    return built


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_message_us(self) -> float:
        return self.cpu_seconds / self.messages * 1e6


class Clock(AbstractContextManager["Clock"]):
    """Wall and process CPU time over a block."""

    def __enter__(self) -> Clock:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


# -- senders -------------------------------------------------------------------------------------------


async def _workers(count: int, items: list[object], work: Callable[[object], object]) -> None:
    iterator: Iterator[object] = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(count)))


def run_smtpchannel(port: int, messages: list[Message], pool: int) -> Clock:
    async def main() -> Clock:
        channel = SmtpChannel(HOST, port, tls="none", pool_size=pool, local_hostname=LOCAL_HOSTNAME,
                              recycle_after=None)
        with Clock() as clock:
            await _workers(pool, list(messages), channel.send)
        await channel.aclose()
        return clock

    return asyncio.run(main())


def run_aiosmtplib_send(port: int, messages: list[Message], concurrency: int = 8) -> Clock:
    async def send(message: object) -> None:
        assert isinstance(message, Message)
        await aiosmtplib.send(stdlib_message(message), hostname=HOST, port=port,
                              local_hostname=LOCAL_HOSTNAME, start_tls=False)

    async def main() -> Clock:
        with Clock() as clock:
            await _workers(concurrency, list(messages), send)
        return clock

    return asyncio.run(main())


def run_bare_pool(port: int, messages: list[Message], size: int = 8) -> Clock:
    payloads = [(m.sender_address, list(m.recipients), m.as_bytes()) for m in messages]

    async def main() -> Clock:
        clients = []
        for _ in range(size):
            client = aiosmtplib.SMTP(hostname=HOST, port=port, local_hostname=LOCAL_HOSTNAME, start_tls=False)
            await client.connect()
            clients.append(client)
        iterator = iter(payloads)

        async def worker(client: aiosmtplib.SMTP) -> None:
            for sender, recipients, data in iterator:
                await client.sendmail(sender, recipients, data)

        with Clock() as clock:
            await asyncio.gather(*(worker(client) for client in clients))
        for client in clients:
            await client.quit()
        return clock

    return asyncio.run(main())


def run_smtplib(port: int, messages: list[Message]) -> Clock:
    with smtplib.SMTP(HOST, port, local_hostname=LOCAL_HOSTNAME) as client, Clock() as clock:
        for message in messages:
            client.send_message(stdlib_message(message))
    return clock


def _configure_django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8")


def run_django(port: int, messages: list[Message]) -> Clock:
    _configure_django()
    from django.core.mail import EmailMessage as DjangoMessage
    from django.core.mail.backends.smtp import EmailBackend
    from django.core.mail.message import DNS_NAME

    DNS_NAME.get_fqdn()  # Django looks the host name up once per process; not part of the run
    backend = EmailBackend(host=HOST, port=port, use_tls=False, fail_silently=False)
    with Clock() as clock:
        batch = [
            DjangoMessage(m.subject, m.text or "", m.sender, list(m.to),
                          headers={"Message-ID": m.message_id})
            for m in messages
        ]
        sent = backend.send_messages(batch)
    assert sent == len(messages), sent
    return clock


def run_smtp_source(binary: str, port: int, messages: list[Message], sessions: int = 8) -> Clock:
    with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as file:
        # smtp-source adds CRLF to each line itself.
        file.write(messages[0].as_bytes().replace(b"\r\n", b"\n"))
        path = file.name
    command = [binary, "-s", str(sessions), "-d", "-m", str(len(messages)), "-F", path,
               "-f", "shop@example.com", "-t", "customer@example.net", "-M", LOCAL_HOSTNAME, f"{HOST}:{port}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    clock = Clock()
    clock.wall = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    clock.wall = time.perf_counter() - clock.wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clock.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    Path(path).unlink()
    return clock


# -- MIME building alone --------------------------------------------------------------------------------


def bench_mime(count: int) -> list[tuple[str, float]]:
    """Microseconds per message to build and serialise the MIME, several ways."""
    results: list[tuple[str, float]] = []
    messages = make_messages(count)
    started = time.perf_counter()
    for message in messages:
        message.as_bytes()
    results.append(("sendchannel Message.as_bytes() (render only)", time.perf_counter() - started))

    started = time.perf_counter()
    for message in make_messages(count):
        message.as_bytes()
    results.append(
        ("sendchannel Message(...) + as_bytes() (build and render)", time.perf_counter() - started)
    )

    started = time.perf_counter()
    for message in messages:
        stdlib_message(message).as_bytes()
    results.append(("stdlib EmailMessage, default policy: build + as_bytes()", time.perf_counter() - started))

    if importlib.util.find_spec("django") is not None:
        _configure_django()
        from django.core.mail import EmailMessage as DjangoMessage
        from django.core.mail.message import DNS_NAME

        DNS_NAME.get_fqdn()
        started = time.perf_counter()
        for message in messages:
            built = DjangoMessage(message.subject, message.text or "", message.sender, list(message.to))
            built.message().as_bytes()
        results.append(("Django EmailMessage: build + message().as_bytes()", time.perf_counter() - started))
    return [(name, seconds / count * 1e6) for name, seconds in results]


# -- the run -------------------------------------------------------------------------------------------


def best(runs: int, run: Callable[[], Clock]) -> Clock:
    clocks = [run() for _ in range(runs)]
    return min(clocks, key=lambda clock: clock.wall)


def bench_server(label: str, server: AbstractContextManager[int], args: argparse.Namespace,
                 smtp_source: str | None) -> list[Result]:
    count = args.messages
    results: list[Result] = []

    def record(name: str, run: Callable[[], Clock]) -> None:
        clock = best(args.repeat, run)
        results.append(Result(name, count, clock.wall, clock.cpu))
        result = results[-1]
        print(f"  {name:<52} {result.rate:>8,.0f} msg/s  {result.cpu_per_message_us:>7,.0f} us CPU/msg",
              flush=True)

    size = len(make_messages(1)[0].as_bytes())
    print(f"\n{label}: {count:,} messages of {size:,} bytes, best of {args.repeat}")
    with server as port:
        for pool in (1, 4, 8):
            record(
                f"SmtpChannel, pool_size={pool}",
                lambda pool=pool: run_smtpchannel(port, make_messages(count), pool),
            )
        messages = make_messages(count)
        record(
            "aiosmtplib.send(), new connection each, 8 at a time", lambda: run_aiosmtplib_send(port, messages)
        )
        record("smtplib, one connection", lambda: run_smtplib(port, messages))
        if importlib.util.find_spec("django") is not None:
            record("Django SMTP EmailBackend, one connection", lambda: run_django(port, messages))
        else:
            print("  (Django is not installed: its EmailBackend baseline is skipped)")
        record("bare aiosmtplib pool of 8, pre-serialised bytes", lambda: run_bare_pool(port, messages))
        if smtp_source is not None:
            record(
                "smtp-source (C), 8 sessions (its own CPU)",
                lambda: run_smtp_source(smtp_source, port, messages),
            )
        else:
            print("  (smtp-source is not installed: the C baseline is skipped; apt-get install postfix)")
    return results


def summary(label: str, results: list[Result]) -> None:
    by_name = {result.name: result for result in results}
    ours = by_name["SmtpChannel, pool_size=8"]
    print(f"\n{label}: SmtpChannel pool_size=8 against each baseline (messages per second)")
    targets = {
        "aiosmtplib.send(), new connection each, 8 at a time": 3.0,
        "Django SMTP EmailBackend, one connection": 1.5,
        "bare aiosmtplib pool of 8, pre-serialised bytes": 0.6,
    }
    for result in results:
        if result.name.startswith("SmtpChannel"):
            continue
        ratio = ours.rate / result.rate
        target = targets.get(result.name)
        verdict = ""
        if target is not None:
            verdict = f"  (target >= {target:g}x: {'met' if ratio >= target else 'MISSED'})"
        print(f"  x{ratio:5.2f}  vs {result.name}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each sender; the fastest counts")
    parser.add_argument("--servers", default="smtp-sink,aiosmtpd")
    parser.add_argument("--mime-messages", type=int, default=5000)
    args = parser.parse_args()

    print(f"Python {sys.version.split()[0]}, aiosmtplib {aiosmtplib.__version__}")
    print(f"\nMIME building alone ({args.mime_messages:,} messages):")
    mime = bench_mime(args.mime_messages)
    for name, micros in mime:
        print(f"  {name:<60} {micros:>7.1f} us/msg")
    stdlib = dict(mime)["stdlib EmailMessage, default policy: build + as_bytes()"]
    render = dict(mime)["sendchannel Message.as_bytes() (render only)"]
    print(f"  rendering is {stdlib / render:.0f}x cheaper than building and serialising an EmailMessage")

    smtp_source = find_postfix_tool("smtp-source")
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    for name in servers:
        if name == "smtp-sink":
            binary = find_postfix_tool("smtp-sink")
            if binary is None:
                print("\nsmtp-sink is not installed (apt-get install postfix): its runs are skipped")
                continue
            results = bench_server("Postfix smtp-sink", smtp_sink(binary), args, smtp_source)
            summary("Postfix smtp-sink", results)
        elif name == "aiosmtpd":
            results = bench_server("aiosmtpd", aiosmtpd_sink(), args, smtp_source)
            summary("aiosmtpd", results)
        else:
            parser.error(f"unknown server {name!r}; use smtp-sink and/or aiosmtpd")


if __name__ == "__main__":
    main()
