"""The command's arguments, usage errors and exit codes, run as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendchannel import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    DeliveryUnknownError,
    InvalidMessageError,
    MessageRejectedError,
    QuotaExceededError,
    RecipientsRefusedError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)
from sendchannel._cli import ExitCode, exit_code_for

from .conftest import cli


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("x"), 2),
        (InvalidMessageError("x"), 2),
        (AuthenticationError("x"), 3),
        (SenderNotAllowedError("x"), 3),
        (RecipientsRefusedError("x"), 3),
        (MessageRejectedError("x"), 3),
        (TransientError("x"), 4),
        (ThrottledError("x"), 4),
        (ConnectionLostError("x"), 4),
        (QuotaExceededError("x"), 4),
        (DeliveryUnknownError("x"), 5),
        (SendError("x"), 3),
        (RuntimeError("x"), 1),
    ],
)
def test_each_error_maps_to_its_documented_exit_code(error: Exception, code: int) -> None:
    assert ExitCode(code) == exit_code_for(error)


async def test_help_lists_every_command_and_the_exit_codes() -> None:
    run = await cli("--help")
    assert 0 == run.code
    for command in ("demo", "verify", "send", "info", "sink"):
        assert command in run.stdout
    assert "5 unknown outcome" in " ".join(run.stdout.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("mail",), "invalid choice: 'mail'"),
        (("send", "memory://", "--to", "b@example.com"), "the following arguments are required: --from"),
        (("demo", "--count", "many"), "invalid int value: 'many'"),
    ],
)
async def test_bad_arguments_exit_2_with_the_usage(args: tuple[str, ...], message: str) -> None:
    run = await cli(*args)
    assert (2, True, True) == (run.code, message in run.stderr, "usage: sendchannel" in run.stderr)


async def test_an_unknown_scheme_exits_2_and_lists_the_installed_ones() -> None:
    run = await cli("verify", "mailgun://key@example.com")
    assert 2 == run.code
    assert "Unknown channel URL scheme 'mailgun'" in run.stderr
    assert "memory, msgraph, office365, smtp, smtps, sparkpost" in run.stderr


async def test_send_prints_the_result() -> None:
    run = await cli(
        "send", "memory://", "--from", "app@example.com", "--to", "bob@example.com", "--to",
        "carol@example.com", "--subject", "Hi", "--text", "Hello",
    )  # fmt: skip
    assert 0 == run.code, run.stderr
    assert "Sent <" in run.stdout
    assert "accepted:    bob@example.com, carol@example.com" in run.stdout
    assert "attempts:    1" in run.stdout


async def test_a_malformed_address_exits_2_naming_the_field() -> None:
    run = await cli("send", "memory://", "--from", "app@example.com", "--to", "bob@", "--subject", "Hi")
    assert 2 == run.code
    assert "to[0]" in run.stderr


async def test_a_missing_attachment_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "report.pdf"
    run = await cli(
        "send", "memory://", "--from", "a@example.com", "--to", "b@example.com", "--attach", str(missing)
    )
    assert (2, f"--attach {missing}: No such file or directory") == (
        run.code,
        run.stderr.split("error: ")[-1].strip(),
    )


async def test_a_header_without_a_colon_exits_2() -> None:
    run = await cli(
        "send", "memory://", "--from", "a@example.com", "--to", "b@example.com", "--header", "X-Tag"
    )
    assert 2 == run.code
    assert "write it as 'Name: value'" in run.stderr


async def test_a_missing_ca_file_exits_2(tmp_path: Path) -> None:
    run = await cli("verify", "smtp://127.0.0.1:9", "--ca-file", str(tmp_path / "ca.pem"))
    assert 2 == run.code
    assert "no such file; give the PEM file of your certificate authority" in run.stderr


async def test_a_ca_file_that_is_not_pem_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    run = await cli("verify", "smtp://127.0.0.1:9", "--ca-file", str(bad))
    assert 2 == run.code
    assert "not a PEM certificate file" in run.stderr


async def test_a_user_without_a_password_and_no_terminal_exits_2_saying_where_to_put_it() -> None:
    run = await cli("verify", "smtp://alice@127.0.0.1:9")
    assert 2 == run.code
    assert "has no password; set it in the SENDCHANNEL_PASSWORD environment variable" in run.stderr


async def test_a_sparkpost_url_without_a_key_and_no_terminal_exits_2() -> None:
    run = await cli("verify", "sparkpost://eu?domains=example.com")
    assert 2 == run.code
    assert "has no API key" in run.stderr


async def test_text_can_come_from_standard_input() -> None:
    run = await cli(
        "send",
        "memory://",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "-",
        stdin=b"piped body",
    )
    assert 0 == run.code, run.stderr
