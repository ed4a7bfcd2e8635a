"""The ``sendchannel`` command (also ``python -m sendchannel``).

Commands: ``demo``, ``verify URL``, ``send URL ...``, ``info URL`` and ``sink``. Exit codes:

==  ====================================================================================
0   done
1   a bug in sendchannel (a traceback is printed)
2   usage or configuration error: bad arguments, an unknown scheme, a missing secret
3   permanent failure: trying again will fail the same way (wrong password, refused)
4   transient failure: try again later (connection lost, throttled, quota spent)
5   unknown outcome: the message may have been sent; check before sending it again
130 interrupted (Ctrl-C)
==  ====================================================================================

Secrets come from the URL (percent-encoded), the ``SENDCHANNEL_PASSWORD`` environment variable, or a
prompt that does not echo; they are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import getpass
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from sendchannel import __version__
from sendchannel._channel import Channel
from sendchannel._limits import Limits, Rate
from sendchannel._message import Attachment, Message
from sendchannel._providers import Hint
from sendchannel._registry import channel_from_url, described, schemes
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._urls import redact_url, split_url
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    DeliveryUnknownError,
    InvalidMessageError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
)

if TYPE_CHECKING:
    from sendchannel._bulk import Outcome
    from sendchannel._sink import ReceivedMessage

__all__ = ["ExitCode", "main"]

PASSWORD_ENV = "SENDCHANNEL_PASSWORD"  # noqa: S105 - the variable's name, not a password


class ExitCode(enum.IntEnum):
    """The command's exit status."""

    OK = 0
    BUG = 1
    USAGE = 2
    PERMANENT = 3
    TRANSIENT = 4
    UNKNOWN = 5
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad arguments or configuration: printed as one line, exit status 2."""


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit status for an error a command ends with."""
    if isinstance(error, (ConfigurationError, InvalidMessageError, UsageError)):
        return ExitCode.USAGE
    if isinstance(error, DeliveryUnknownError):
        return ExitCode.UNKNOWN
    if isinstance(error, QuotaExceededError):
        return ExitCode.TRANSIENT
    if isinstance(error, SendError):
        return ExitCode.TRANSIENT if error.transient else ExitCode.PERMANENT
    return ExitCode.BUG


# -- output ----------------------------------------------------------------------------------------


class _Out:
    """stdout and stderr, flushed at every line (the sink's output is often piped)."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def error(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)


def _describe_error(error: SendError) -> list[str]:
    lines = [f"  {type(error).__name__}: {error}"]
    if error.reply and error.reply not in str(error):
        lines.append(f"  Server said: {error.reply}")
    return lines


# -- building channels -----------------------------------------------------------------------------

def _secret(url: str, *, connects: bool) -> dict[str, str]:
    """The secret the URL lacks, from SENDCHANNEL_PASSWORD or a prompt, as a channel override.

    Which keyword takes the secret, and where a URL carries it, come from the scheme's description. A
    command that ``connects`` to nothing (info) gets a stand-in instead of a prompt.
    """
    scheme = url.split("://", 1)[0].lower()
    try:
        provider = described(scheme)
    except ConfigurationError:
        return {}  # channel_from_url explains it
    option = provider.credential_keyword if provider is not None else None
    if provider is None or option is None:
        return {}
    try:
        parts = split_url(url)
        username = parts.username
        has_secret = bool(username) if provider.key_in_user else parts.password is not None
    except ValueError:
        return {}  # channel_from_url explains what is wrong with the URL
    if provider.needs_credential is not None:
        needs_secret = not has_secret and provider.needs_credential(parts)
    else:
        needs_secret = not has_secret and (provider.credential_required or bool(username))
    if not needs_secret:
        return {}
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return {option: from_env}
    what = "API key" if option == "api_key" else option.replace("_", " ")
    if connects and sys.stdin.isatty():
        label = f"{what.capitalize()} for {redact_url(url)}: "
        return {option: getpass.getpass(label)}
    if not connects:
        # A stand-in lets the channel be built to show its scope and limits.
        return {option: "unused-by-info"}
    raise UsageError(
        f"{redact_url(url)} has no {what}; set it in the {PASSWORD_ENV} environment variable, put it in "
        "the URL (percent-encoded), or run the command in a terminal to be asked for it"
    )


def _tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    path = Path(ca_file)
    if not path.is_file():
        raise UsageError(
            f"--ca-file {ca_file}: no such file; give the PEM file of your certificate authority"
        )
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"--ca-file {ca_file}: not a PEM certificate file ({exc}); export the authority's "
            "certificate in PEM form"
        ) from None


def _build_channel(args: argparse.Namespace, *, connects: bool = True) -> Channel:
    url: str = args.url
    overrides: dict[str, Any] = _secret(url, connects=connects)
    context = _tls_context(getattr(args, "ca_file", None))
    if context is not None:
        overrides["tls_context"] = context
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        overrides["timeout"] = timeout
    try:
        return channel_from_url(url, **overrides)
    except (TypeError, ConfigurationError) as exc:
        if "tls_context" in overrides and "tls_context" in str(exc):
            raise UsageError(
                f"{redact_url(url)}: this channel takes no --ca-file; for it, put the certificate "
                "authority in the file SSL_CERT_FILE names"
            ) from None
        if isinstance(exc, ConfigurationError):
            raise
        raise UsageError(f"cannot build a channel from {redact_url(url)}: {exc}") from None


# -- sink ------------------------------------------------------------------------------------------


def _summarise(received: ReceivedMessage, number: int) -> list[str]:
    message = BytesParser(policy=policy.default).parsebytes(received.data)
    lines = [
        f"--- message {number}: {len(received.data):,} bytes from <{received.mail_from}> "
        f"to {', '.join(f'<{r}>' for r in received.rcpt_tos)}"
        + (f" (logged in as {received.login})" if received.login else "")
    ]
    for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID"):
        value = message.get(name)
        if value is not None:
            lines.append(f"{name}: {value}")
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = body.get_content()
        text = content if isinstance(content, str) else "<binary body>"
        lines.append("")
        lines.extend(text.rstrip("\n").splitlines()[:40])
    for part in message.iter_attachments():
        size = len(part.get_payload(decode=True) or b"")
        name = part.get_filename() or part.get("Content-ID") or "(unnamed)"
        lines.append(f"[attachment: {name}, {part.get_content_type()}, {size:,} bytes]")
    return lines


async def _run_sink(args: argparse.Namespace, out: _Out, received: list[ReceivedMessage]) -> None:
    from sendchannel._sink import SmtpSink

    def show(message: ReceivedMessage) -> None:
        received.append(message)
        if args.raw:
            out.line(f"--- message {len(received)} from <{message.mail_from}>")
            out.line(message.data.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", "\n"))
        else:
            for line in _summarise(message, len(received)):
                out.line(line)
        out.line()

    sink = SmtpSink(args.host, args.port, on_message=show)
    try:
        await sink.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); pick another port with --port"
        ) from None
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' event loop
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        out.line(f"sendchannel sink listening on {args.host}:{sink.port}; press Ctrl-C to stop.")
        out.line(
            f"Send to it with: sendchannel send 'smtp://{args.host}:{sink.port}?tls=none' "
            "--from you@example.com --to someone@example.com --subject Hello --text Hi"
        )
        out.line()
        await stop.wait()
    finally:
        await sink.stop()


def _cmd_sink(args: argparse.Namespace, out: _Out) -> ExitCode:
    received: list[ReceivedMessage] = []
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_sink(args, out, received))
    count = len(received)
    out.line(f"Stopped; received {count} message{'' if count == 1 else 's'}.")
    return ExitCode.OK


# -- info ------------------------------------------------------------------------------------------


def _sample_sender(scope: CredentialScope) -> str:
    if scope.kind is ScopeKind.PER_ADDRESS:
        return scope.identities[0]
    if scope.kind is ScopeKind.PER_DOMAIN:
        domain = scope.identities[0]
        # *.example.com covers the subdomains of example.com, not example.com itself.
        return "postmaster@" + (f"mail.{domain[2:]}" if domain.startswith("*.") else domain)
    return "anyone@example.com"


def _sharing(scope: CredentialScope) -> str:
    if scope.kind is ScopeKind.PER_ADDRESS:
        return (
            "no: it belongs to one mailbox, so only that mailbox may send with it, and a password change "
            "or revocation by its owner breaks every sender that uses it; give each person or service "
            "its own channel"
        )
    if scope.kind is ScopeKind.PER_DOMAIN:
        return (
            f"yes: it covers every address at {', '.join(scope.identities)}, so a team sending from "
            "those domains may share it (and its limits)"
        )
    return "yes, as far as sendchannel knows: it is not tied to a sender; the server's owner decides"


def _limit_lines(limits: Limits) -> list[str]:
    lines = [f"  {rate}" for rate in limits.rates]
    if limits.max_recipients_per_message is not None:
        lines.append(f"  at most {limits.max_recipients_per_message:,} recipients a message")
    if limits.max_message_bytes is not None:
        lines.append(f"  messages up to {limits.max_message_bytes:,} bytes")
    if limits.max_connections is not None:
        lines.append(f"  at most {limits.max_connections} concurrent connections")
    return lines or ["  none declared (pass limits= to declare what your provider allows)"]


#: A reservation whose slot is this close to now counts as available now.
_NOW = 0.001


async def _permits_left(store: Any, key: str, rate: Rate) -> tuple[int, float]:
    """How many units of ``rate`` the key may take now, and when none, how long until one; records nothing.

    A store answers ``reserve`` with the earliest slot where the units fit, and records the send only
    when that slot is within ``max_wait``: with a negative ``max_wait`` it only answers.
    """

    async def wait_for(units: int) -> float:
        reservation = await store.reserve(key, [(rate, units)], now=time.time, max_wait=-1.0)
        if reservation.granted:  # pragma: no cover - a store that ignores max_wait: give it back
            await store.release(key, [(rate, units)], reservation.token)
        return float(reservation.at) - time.time()

    first = await wait_for(1)
    if first > _NOW:
        return 0, first
    fits, too_many = 1, rate.count + 1
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        if await wait_for(middle) <= _NOW:
            fits = middle
        else:
            too_many = middle
    return fits, 0.0


def _open_store(spec: str) -> Any:
    from sendchannel import _throttle

    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise UsageError("--store sqlite:PATH needs a path, such as sqlite:quota.db")
        if not Path(path).is_file():
            raise UsageError(f"--store {spec}: no such file; give the database file the senders use")
        return _throttle.SqliteStore(path)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return _throttle.RedisStore(spec)
    raise UsageError(f"--store {redact_url(spec)}: write sqlite:PATH or redis://host:port/db")


async def _store_report(spec: str, channel: Channel, key: str | None) -> list[str]:
    from sendchannel import _throttle

    store = _open_store(spec)
    key = key or _throttle.default_key(channel)
    label = redact_url(spec) if "://" in spec else spec
    try:
        lines = [f"Permits left now in {label} (budget {key}):"]
        for rate in _throttle._throttler.distinct_rates(channel.limits.rates):
            left, wait = await _permits_left(store, key, rate)
            after = f"; the next in {wait:.1f} s" if not left else ""
            lines.append(f"  {rate}: {left:,} left{after}")
        if len(lines) == 1:
            lines.append("  none: the channel declares no rates")
        return lines
    finally:
        await store.aclose()


def _cmd_info(args: argparse.Namespace, out: _Out) -> ExitCode:
    channel = _build_channel(args, connects=False)
    scope = channel.scope
    out.line(f"Channel:   {channel.name} ({redact_url(args.url)})")
    out.line(f"Scope:     {scope}")
    out.line(f"Shareable: {_sharing(scope)}")
    if args.sender or scope.kind is not ScopeKind.UNRESTRICTED:
        sender = args.sender or _sample_sender(scope)
        verdict = "is allowed" if scope.allows(sender) else "is not allowed"
        out.line(f"Sender:    {sender} {verdict}: {scope.explain(sender)}")
    out.line("Limits:")
    for line in _limit_lines(channel.limits):
        out.line(line)
    if args.store:
        for line in asyncio.run(_store_report(args.store, channel, args.key)):
            out.line(line)
    asyncio.run(_close(channel))
    return ExitCode.OK


async def _close(channel: Channel) -> None:
    await channel.aclose()


# -- verify ----------------------------------------------------------------------------------------


def _verify_hint(error: SendError, url: str) -> str | None:
    """What to do about a failed verification, in the command line's terms (the error says why).

    A certificate problem first (the same remedy everywhere), then the scheme's own hints from its
    description, then what fits any provider.
    """
    text = f"{error} {error.reply or ''}".lower()
    if "certificate" in text and ("verif" in text or "trust" in text):
        return (
            "The server's TLS certificate is not trusted here. If your organisation's own certificate "
            "authority issued it, pass --ca-file PATH (or set SSL_CERT_FILE); otherwise check the host name."
        )
    try:
        provider = described(url.split("://", 1)[0])
    except ConfigurationError:
        provider = None
    hint = provider.hint(error) if provider is not None else None
    if hint is not None:
        return hint
    return next((h.advice for h in _GENERAL_HINTS if h.applies(error)), None)


_GENERAL_HINTS = (
    Hint(
        AuthenticationError,
        "The credential was accepted but lacks a permission: give it the permission the message names, "
        "or use a credential that has it.",
        words=("permission",),
    ),
    Hint(
        AuthenticationError,
        f"Check the user name and the password (from the URL or {PASSWORD_ENV}); if the password changed "
        "recently, update it here too.",
    ),
    Hint(
        SenderNotAllowedError,
        "Send from an address the credential covers; `sendchannel info URL` shows which.",
    ),
    Hint(
        ConnectionLostError,
        "Check the host name and port, and that a firewall lets this machine reach the server.",
    ),
    Hint(ThrottledError, "The provider asked to slow down; try again in a while."),
)


def _cmd_verify(args: argparse.Namespace, out: _Out) -> ExitCode:
    channel = _build_channel(args)
    label = redact_url(args.url)

    async def verify() -> None:
        async with channel:
            await channel.verify()

    try:
        asyncio.run(verify())
    except SendError as error:
        out.error(f"Verification of {label} failed.")
        for line in _describe_error(error):
            out.error(line)
        hint = _verify_hint(error, args.url)
        if hint:
            out.error(f"  What to do: {hint}")
        return exit_code_for(error)
    out.line(f"OK: reached {label} and authenticated; nothing was sent.")
    out.line(f"  Scope:  {channel.scope}")
    out.line(f"  Limits: {channel.limits}")
    return ExitCode.OK


# -- send ------------------------------------------------------------------------------------------


def _read_body(value: str | None) -> str | None:
    if value == "-":
        return sys.stdin.read()
    return value


def _attachment(path_text: str) -> Attachment:
    path = Path(path_text)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--attach {path_text}: {exc.strerror or exc}") from None
    return Attachment(path.name, content)  # the type is guessed from the file name


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise UsageError(f"--header {text!r}: write it as 'Name: value'")
    return name.strip(), value.strip()


def _message(args: argparse.Namespace) -> Message:
    if args.text == "-" and args.html == "-":
        raise UsageError("only one of --text and --html can be read from standard input")
    return Message(
        args.sender,
        args.to,
        cc=args.cc,
        bcc=args.bcc,
        reply_to=args.reply_to,
        subject=args.subject,
        text=_read_body(args.text),
        html=_read_body(args.html),
        headers=dict(_header(h) for h in args.header),
        attachments=[_attachment(p) for p in args.attach],
    )


def _result_lines(result: SendResult) -> list[str]:
    lines = [
        f"Sent {result.message_id} through {result.channel or 'the channel'}.",
        f"  provider id: {result.provider_id or '(none given)'}",
        f"  accepted:    {', '.join(result.accepted) or '(none)'}",
    ]
    for recipient, reply in result.rejected.items():
        lines.append(f"  rejected:    {recipient}: {reply}")
    lines.append(f"  attempts:    {result.attempts}")
    return lines


def _cmd_send(args: argparse.Namespace, out: _Out) -> ExitCode:
    message = _message(args)
    channel = _build_channel(args)
    label = redact_url(args.url)

    async def send() -> SendResult:
        async with channel:
            return await channel.send(message)

    try:
        result = asyncio.run(send())
    except SendError as error:
        code = exit_code_for(error)
        if code is ExitCode.UNKNOWN:
            out.error(f"The outcome of {message.message_id} through {label} is not known.")
            for line in _describe_error(error):
                out.error(line)
            out.error("  It may have been sent: check the recipient's mailbox before sending it again.")
        else:
            out.error(f"Sending {message.message_id} through {label} failed.")
            for line in _describe_error(error):
                out.error(line)
            if code is ExitCode.TRANSIENT:
                after = f" after {error.retry_after:.0f} s" if error.retry_after else " later"
                out.error(f"  This may pass: try again{after}.")
        return code
    for line in _result_lines(result):
        out.line(line)
    return ExitCode.OK


# -- demo ------------------------------------------------------------------------------------------

#: Recipients the demo's server treats specially, to show a refusal and a retry.
_DEMO_REFUSED = "nobody@demo.invalid"
_DEMO_BUSY = "busy@demo.invalid"


class _ProgressBar:
    """A plain-text progress bar: redrawn in place on a terminal, a new line every 10% elsewhere."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.counts: dict[str, int] = {}
        self.done = 0
        self._tty = stream.isatty()
        self._last_tenth = -1

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if self._tty:
            self.stream.write("\r" + self.render())
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        tenth = self.done * 10 // self.total
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(self.render(), file=self.stream, flush=True)

    def render(self) -> str:
        filled = self.done * self.WIDTH // self.total if self.total else self.WIDTH
        counts = "  ".join(f"{status} {n}" for status, n in sorted(self.counts.items()))
        return f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}  {counts}"


class _RecordingClock:
    """The system clock, recording each wait the throttler and the retry layer make."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(max(0.0, seconds))
        await asyncio.sleep(max(0.0, seconds))


def _bursts(times: Sequence[float], gap: float) -> list[tuple[float, int]]:
    """Group moments into bursts separated by more than ``gap``: (start after the first moment, count)."""
    ordered = sorted(times)
    bursts: list[tuple[float, int]] = []
    previous = None
    for moment in ordered:
        if previous is None or moment - previous > gap:
            bursts.append((moment - ordered[0], 0))
        start, count = bursts[-1]
        bursts[-1] = (start, count + 1)
        previous = moment
    return bursts


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i == len(row) - 1 or not cell[:1].isdigit() else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return lines


async def _run_demo(args: argparse.Namespace, out: _Out) -> ExitCode:
    from sendchannel._bulk import send_all
    from sendchannel._pipeline import pipeline
    from sendchannel._retry import RetryPolicy
    from sendchannel._sink import SmtpSink
    from sendchannel._smtp import SmtpChannel

    arrivals: list[float] = []
    busy_once = {_DEMO_BUSY}

    def answer_rcpt(address: str) -> str | None:
        if address.lower() == _DEMO_REFUSED:
            return f"550 5.1.1 <{_DEMO_REFUSED}>: no such user here"
        if address.lower() in busy_once:
            busy_once.discard(address.lower())
            return "451 4.3.0 Busy, try again later"
        return None

    rate = Rate(args.rate, 1.0)
    count: int = args.count
    recipients = [f"user{i:02d}@demo.example" for i in range(count)]
    if count >= 3:
        recipients[count // 3] = _DEMO_BUSY
        recipients[2 * count // 3] = _DEMO_REFUSED
    messages = [
        Message(
            "Demo <demo@sendchannel.example>",
            [to],
            subject=f"Demo message {i + 1} of {count}",
            text=f"Hello from sendchannel's demo (message {i + 1}).",
        )
        for i, to in enumerate(recipients)
    ]
    waits = _RecordingClock()
    async with SmtpSink(on_message=lambda _: arrivals.append(time.monotonic()), on_rcpt=answer_rcpt) as sink:
        out.line(f"An SMTP server is listening inside this process on 127.0.0.1:{sink.port}.")
        out.line(
            f"Sending {count} messages through pipeline(SmtpChannel(...)) under a demonstration limit "
            f"of {rate}."
        )
        if count >= 3:
            out.line(
                f"The server refuses {_DEMO_BUSY} once with 451 (a temporary failure, retried) and "
                f"{_DEMO_REFUSED} with 550 (permanent, not retried)."
            )
        out.line()
        smtp = SmtpChannel("127.0.0.1", sink.port, tls="none", timeout=10.0)
        channel = pipeline(
            smtp, limits=Limits(rates=(rate,)), retry=RetryPolicy(attempts=3, initial=0.2, jitter=False)
        )
        # pipeline() builds Retrying(Throttler(smtp)): time the throttler's waits (not the retry layer's).
        throttler: Any = getattr(channel, "channel", None)
        if throttler is not None and hasattr(throttler, "clock"):
            throttler.clock = waits
        bar = _ProgressBar(count, out.stdout)
        started = time.monotonic()
        async with channel:
            report = await send_all(channel, messages, progress=bar.update)
        elapsed = time.monotonic() - started

    out.line()
    out.line("Outcomes:")
    rows = [["status", "messages", "attempts", "detail"]]
    for status in ("sent", "failed", "unknown", "skipped"):
        outcomes = [o for o in report.outcomes if o.status == status]
        if not outcomes:
            continue
        attempts = sum(
            o.result.attempts if o.result is not None else getattr(o.error, "attempts", 1) for o in outcomes
        )
        details = []
        retried = sum(1 for o in outcomes if o.result is not None and o.result.attempts > 1)
        if retried:
            details.append(f"{retried} after a retry")
        for outcome in outcomes:
            if outcome.error is not None:
                code = getattr(outcome.error, "code", None)
                reply = f" ({code})" if code else ""
                details.append(f"{outcome.message.to[0]}: {type(outcome.error).__name__}{reply}")
        rows.append([status, str(len(outcomes)), str(attempts), "; ".join(details) or "-"])
    for line in _table(rows):
        out.line(line)
    out.line()
    held = [seconds for seconds in waits.waits if seconds > 0]
    out.line(f"Throttler ({rate}):")
    out.line(
        f"  held sends back {len(held)} times, {sum(held):.1f} s in all (longest wait "
        f"{max(held, default=0.0):.2f} s)"
    )
    bursts = _bursts(arrivals, gap=rate.per / 4)
    shown = ", ".join(f"{n} at {start:.1f} s" for start, n in bursts[:8]) + (
        ", ..." if len(bursts) > 8 else ""
    )
    out.line(f"  messages reaching the server: {shown}")
    out.line(f"  {len(arrivals)} messages delivered in {elapsed:.1f} s")
    return ExitCode.OK if len(report.sent) + len(report.failed) == count else ExitCode.TRANSIENT


def _cmd_demo(args: argparse.Namespace, out: _Out) -> ExitCode:
    if args.count < 1 or args.rate < 1:
        raise UsageError("--count and --rate must be at least 1")
    return asyncio.run(_run_demo(args, out))


# -- the parser ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        metavar="URL",
        help=f"the channel, e.g. smtp://user@host:587 (schemes: {', '.join(schemes())}); the password "
        f"may be left out and given in {PASSWORD_ENV} or at the prompt",
    )


def _tls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-file", metavar="PATH", help="trust this certificate authority (PEM file) for the server"
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="bound each network wait")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sendchannel",
        description="Send mail through SMTP, Office 365, Gmail or SparkPost, within each provider's limits.",
        epilog="Exit status: 0 done, 2 usage or configuration error, 3 permanent failure, 4 transient "
        "failure (try again later), 5 unknown outcome (the message may have been sent).",
    )
    parser.add_argument("--version", action="version", version=f"sendchannel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="send a batch to an SMTP server inside this process, throttled and retried",
        description="Start an SMTP server on 127.0.0.1 inside this process, send a batch through a "
        "throttled, retried SmtpChannel with a progress bar, then show the outcomes and what the "
        "throttler did. Needs nothing else running.",
    )
    demo.add_argument("--count", type=int, default=40, help="messages to send (default 40)")
    demo.add_argument("--rate", type=int, default=10, help="the limit, in messages a second (default 10)")
    demo.set_defaults(run=_cmd_demo)

    verify = commands.add_parser(
        "verify",
        help="connect and authenticate without sending",
        description="Reach the provider and authenticate, sending nothing; on failure, say why and what "
        "to do.",
    )
    _url_argument(verify)
    _tls_arguments(verify)
    verify.set_defaults(run=_cmd_verify)

    send = commands.add_parser("send", help="send one message", description="Send one message.")
    _url_argument(send)
    send.add_argument("--from", dest="sender", required=True, metavar="ADDRESS", help="the sender")
    send.add_argument("--to", action="append", default=[], metavar="ADDRESS", help="a recipient (repeat)")
    send.add_argument("--cc", action="append", default=[], metavar="ADDRESS", help="a copy recipient")
    send.add_argument("--bcc", action="append", default=[], metavar="ADDRESS", help="a blind-copy recipient")
    send.add_argument("--reply-to", action="append", default=[], metavar="ADDRESS", help="a reply-to address")
    send.add_argument("--subject", default="", help="the subject")
    send.add_argument("--text", help="the plain-text body ('-' reads standard input)")
    send.add_argument("--html", help="the HTML body ('-' reads standard input)")
    send.add_argument("--attach", action="append", default=[], metavar="PATH", help="attach a file (repeat)")
    send.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="a header")
    _tls_arguments(send)
    send.set_defaults(run=_cmd_send)

    info = commands.add_parser(
        "info",
        help="show a channel's scope, whether it may be shared, and its limits",
        description="Show the channel's credential scope, whether a team may share the credential and "
        "why, its limits, and with --store the permits left. Connects to nothing but the store.",
    )
    _url_argument(info)
    info.add_argument("--sender", metavar="ADDRESS", help="explain whether this sender is covered")
    info.add_argument(
        "--store", metavar="STORE", help="a throttle store to read: sqlite:PATH or redis://host:port/db"
    )
    info.add_argument(
        "--key", help="the budget's name in the store, when the senders set one (default: the credential's)"
    )
    _tls_arguments(info)
    info.set_defaults(run=_cmd_info)

    sink = commands.add_parser(
        "sink",
        help="run a local SMTP server that prints what it receives",
        description="Run an SMTP server that accepts every message and prints it; Ctrl-C stops it.",
    )
    sink.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    sink.add_argument("--port", type=int, default=1025, help="the port (default 1025; 0 picks a free one)")
    sink.add_argument("--raw", action="store_true", help="print each message's bytes as received")
    sink.set_defaults(run=_cmd_sink)

    from sendchannel._outbox._cli import add_parsers as add_outbox_parsers

    add_outbox_parsers(commands)

    from sendchannel._directory import _cli as directory_cli

    directory_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = _Out(sys.stdout, sys.stderr)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace, _Out], ExitCode] = args.run
    try:
        return int(run(args, out))
    except (UsageError, ConfigurationError, InvalidMessageError) as error:
        out.error(f"sendchannel {args.command}: error: {error}")
        return int(ExitCode.USAGE)
    except SendError as error:
        out.error(f"sendchannel {args.command}: {type(error).__name__}: {error}")
        return int(exit_code_for(error))
    except KeyboardInterrupt:
        out.error("Interrupted.")
        return int(ExitCode.INTERRUPTED)
