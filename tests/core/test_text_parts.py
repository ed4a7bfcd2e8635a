"""Text parts on the wire: 7bit when ASCII with lines of at most 998 octets, quoted-printable otherwise."""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest
from hypothesis import given

from sendchannel import Attachment, Message
from tests import strategies


def parsed(message: Message) -> email.message.EmailMessage:
    result = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(result, email.message.EmailMessage)
    return result


def text_parts(message: Message) -> list[email.message.EmailMessage]:
    return [
        part
        for part in parsed(message).walk()
        if part.get_content_maintype() == "text" and part.get_content_disposition() is None
    ]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Content", "7bit"),
        ("Hello Bob,\n\nsee you.\n", "7bit"),
        ("tabs\tand trailing blanks   \n", "7bit"),
        ("x" * 998, "7bit"),
        ("x" * 999, "quoted-printable"),
        ("short\n" + "y" * 999 + "\nshort", "quoted-printable"),
        ("Je t'aime très fort", "quoted-printable"),
        ("В южных морях " * 60, "quoted-printable"),
        ("form feed \x0c and NUL \x00", "quoted-printable"),
    ],
)
def test_a_text_part_is_7bit_when_it_can_be_and_quoted_printable_otherwise(text: str, encoding: str) -> None:
    message = Message("a@example.com", ["b@example.net"], text=text)
    [part] = text_parts(message)
    assert (encoding, "utf-8") == (part["Content-Transfer-Encoding"], part.get_content_charset())
    assert text == Message.from_email_message(parsed(message)).text


def test_the_html_part_and_a_text_part_next_to_attachments_follow_the_same_rule() -> None:
    message = Message(
        "a@example.com",
        ["b@example.net"],
        text="plain ASCII",
        html="<p>Grüße</p>",
        attachments=[Attachment("data.bin", bytes(range(256)))],
    )
    encodings = {p.get_content_type(): p["Content-Transfer-Encoding"] for p in parsed(message).walk()}
    assert {"text/plain": "7bit", "text/html": "quoted-printable", "application/octet-stream": "base64"} == {
        k: v for k, v in encodings.items() if not k.startswith("multipart/")
    }


def test_quoted_printable_lines_stay_short_and_a_stdlib_reader_gets_the_text_back() -> None:
    text = "Grüße " * 400 + "\nend  "
    message = Message("a@example.com", ["b@example.net"], text=text, html="<p>x</p>")
    [plain, _] = text_parts(message)
    raw = plain.get_payload()
    assert isinstance(raw, str)
    assert max(len(line) for line in raw.splitlines()) <= 76
    [from_stdlib] = [p for p in message.to_email_message().walk() if p.get_content_type() == "text/plain"]
    assert text == from_stdlib.get_content()


@pytest.mark.parametrize("text", ["no final newline", "one final newline\n", "two\n\n", ""])
def test_a_lone_text_part_keeps_whether_it_ends_with_a_newline(text: str) -> None:
    """The message's last line break is framing, so text with and without a final newline stay apart."""
    message = Message("a@example.com", ["b@example.net"], text=text)
    assert text == Message.from_email_message(message.to_email_message()).text
    assert text == Message.from_email_message(email.message_from_bytes(message.as_bytes())).text


@given(strategies.messages())
def test_no_text_part_is_ever_base64_and_no_line_is_longer_than_998_octets(message: Message) -> None:
    assert {"7bit", "quoted-printable"} >= {p["Content-Transfer-Encoding"] for p in text_parts(message)}
    assert max(len(line) for line in message.as_bytes().split(b"\r\n")) <= 998
