"""Shared pieces of the bad-input suite: hostile text, a time limit, a loop thread, and a wire checker.

* Strategies that mix valid values with what an attacker or a careless caller would send: line breaks
  of every kind (CR, LF, CRLF, NUL, VT, FF, NEL, U+2028/U+2029), other control characters, lone
  surrogates, RFC 2047 look-alikes and encoded words that decode to line breaks, folding tricks,
  boundary look-alikes, very long values.
* :func:`time_limit` fails a block that runs too long (``signal.alarm``), so no input can hang a test.
* :class:`LoopThread` runs one event loop in a thread for channels that live across hypothesis examples;
  ``loop.run(coro, timeout)`` waits for a coroutine with a deadline.
* :func:`check_wire` reads the header block of rendered or received bytes as RFC 5322 says (lines end in
  CRLF, a line that starts with a blank continues the previous one, the first empty line ends the
  header) and asserts it holds exactly the headers the message should have.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from email.header import decode_header, make_header
from typing import Any, TypeVar

from hypothesis import strategies as st

from sendchannel import Message
from sendchannel.errors import InvalidMessageError
from tests import strategies

T = TypeVar("T")

#: RFC 5322: "Each line of characters MUST be no more than 998 characters ... excluding the CRLF."
MAX_LINE = 998

# -- hostile text --------------------------------------------------------------------------------------

LINE_BREAKS = [
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]
CONTROLS = ["\x01", "\x07", "\x08", "\t", "\x1b", "\x7f", "\x80", "\x9f", "\ufeff", "\u200b", "\u202e"]
SURROGATES = ["\ud800", "\udfff", "\udc80"]
#: Text that tries to smuggle a header, a folded line, a body boundary or an encoded line break.
TRICKS = [
    "\r\nBcc: evil@attacker.example",
    "\nX-Injected: yes",
    "\r\n\r\n<script>body</script>",
    " \r\n X-Folded: continued",
    "\r\n\tX-Tab-Folded: 1",
    "\r\n.\r\nMAIL FROM:<evil@attacker.example>",
    "=?utf-8?q?=0D=0ABcc:_evil@attacker.example?=",
    "=?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=",
    "=?us-ascii?Q?X-Injected:_1?=",
    "=?utf-8?q?caf=C3=A9?= =?utf-8?q?_next?=",
    "=?",
    "?=",
    "=?utf-8?",
    "=?=?=?",
    "--=_sc_0123456789abcdef0123456789abcdef",
    "--boundary--",
    "Content-Type: text/html",
    "MIME-Version: 1.0",
    "From: evil@attacker.example",
    ":",
    ";",
    ",",
    "<",
    ">",
    '"',
    "\\",
    "@",
    "(",
    ")",
    "[",
    "]",
    "%0d%0a",
    "{{x}}",
    "}}}",
    "  ",
    " ",
    "\t ",
]


def _joined(parts: list[str]) -> str:
    return "".join(parts)


_pieces = st.one_of(
    st.sampled_from(LINE_BREAKS),
    st.sampled_from(CONTROLS),
    st.sampled_from(SURROGATES),
    st.sampled_from(TRICKS),
    st.text(max_size=6),
    st.text(alphabet=st.characters(codec="ascii"), max_size=10),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF), max_size=4),
)

#: Short hostile text: any mix of the pieces above.
hostile_text = st.lists(_pieces, max_size=10).map(_joined)

#: Long values: one word without a blank, many short words, or long non-ASCII text, around the line limit.
long_text = st.one_of(
    st.integers(900, 2500).map(lambda n: "a" * n),
    st.integers(200, 1200).map(lambda n: "ab " * n),
    st.integers(300, 1200).map(lambda n: "é" * n),
    st.integers(60, 400).map(lambda n: "=?utf-8?q?x?=" * n),
)

#: Any text a caller could pass: valid, hostile or long.
any_text = st.one_of(strategies.header_text, hostile_text, long_text)

#: A valid address with a hostile or long display name, bare or quoted.
hostile_named = st.one_of(
    st.builds(lambda name, addr: f"{name} <{addr}>", any_text, strategies.bare_addresses),
    st.builds(lambda name, addr: f'"{name}" <{addr}>', any_text, strategies.bare_addresses),
)

#: A local part or a domain with hostile text inside.
hostile_parts = st.one_of(
    st.builds(lambda text, domain: f"{text}@{domain}", hostile_text, strategies.domains),
    st.builds(lambda local, text: f"{local}@{text}", strategies.local_parts, hostile_text),
    st.builds(
        lambda local, text, domain: f"{local}{text}@{domain}",
        strategies.local_parts,
        st.sampled_from(LINE_BREAKS + CONTROLS + SURROGATES),
        strategies.domains,
    ),
)

#: Addresses: valid ones, with hostile display names, with hostile parts, or any text at all.
any_address = st.one_of(strategies.addresses, hostile_named, hostile_parts, hostile_text)

#: Header names: valid, library-owned, or hostile.
any_header_name = st.one_of(
    strategies.header_names,
    st.sampled_from(
        [
            "Bcc",
            "bcc",
            "To",
            "Subject",
            "Content-Type",
            "content-transfer-encoding",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Reply-To",
            "From",
            "Received",
            "Return-Path",
        ]
    ),
    hostile_text,
    st.integers(70, 1200).map(lambda n: "X-" + "a" * n),
)

message_ids = st.one_of(
    st.none(),
    any_text,
    st.builds(lambda text: f"<{text}@example.com>", any_text),
)

#: Words an InvalidMessageError must contain one of: the field it is about.
FIELD_WORDS = (
    "sender",
    "to[",
    "cc[",
    "bcc[",
    "reply_to[",
    "recipient",
    "subject",
    "headers",
    "message_id",
    "Attachment.",
    "attachments",
    "text",
    "html",
)


def assert_names_a_field(error: InvalidMessageError) -> None:
    """The error is a sentence that says which field is wrong, and can be printed anywhere."""
    text = str(error)
    assert text, "an InvalidMessageError without a message"
    assert any(word in text for word in FIELD_WORDS), f"the error names no field: {text!r}"
    text.encode("utf-8")  # a lone surrogate in an error would break every log handler and terminal


# -- a time limit --------------------------------------------------------------------------------------


class TookTooLong(AssertionError):
    """A block ran past its time limit (a hang, or work that grows too fast with the input)."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the block") -> Iterator[None]:
    """Fail with TookTooLong when the block uses more than ``seconds`` of CPU (main thread only).

    CPU time, not the wall clock: runaway work (a regex backtracking, a quadratic loop) burns CPU and is
    caught, while a loaded machine that gives the tests a small share of its cores is not taken for one.
    """

    def expired(signum: int, frame: object) -> None:
        raise TookTooLong(f"{what} used more than {seconds:g} s of CPU")

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


class LoopThread:
    """An event loop in a background thread, for channels and servers shared by hypothesis examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="badinput-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coroutine`` on the loop; TookTooLong (and the coroutine cancelled) past ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TookTooLong(f"the coroutine took longer than {timeout:g} s") from None

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# -- reading what went over the wire -------------------------------------------------------------------


def header_block(data: bytes) -> list[tuple[str, str]]:
    """The header fields of ``data`` as (name, unfolded raw value), read strictly by RFC 5322.

    Asserts that every line of the whole message ends in CRLF with no bare CR or LF and is at most 998
    characters long, that the header block ends with an empty line, and that every header line is a
    ``name: value`` field or the continuation of one.
    """
    assert data.endswith(b"\r\n"), "the message does not end with CRLF"
    lines = data[:-2].split(b"\r\n")
    for number, line in enumerate(lines):
        assert b"\r" not in line, f"line {number} has a bare CR: {line[:80]!r}"
        assert b"\n" not in line, f"line {number} has a bare LF: {line[:80]!r}"
        assert b"\x00" not in line, f"line {number} has a NUL: {line[:80]!r}"
        assert len(line) <= MAX_LINE, f"line {number} is {len(line)} characters long: {line[:80]!r}..."
    assert b"" in lines, "the header block never ends (no empty line)"
    end = lines.index(b"")
    fields: list[tuple[str, str]] = []
    for line in lines[:end]:
        if line[:1] in (b" ", b"\t"):
            assert fields, f"the header block starts with a continuation line: {line[:80]!r}"
            name, value = fields[-1]
            fields[-1] = (name, value + line.decode("utf-8"))
            continue
        name, colon, value = line.partition(b":")
        assert colon, f"not a header field: {line[:80]!r}"
        assert name, f"a header field without a name: {line[:80]!r}"
        assert all(33 <= byte <= 126 for byte in name), f"not a header name: {line[:80]!r}"
        fields.append((name.decode("ascii"), value.decode("utf-8")))
    return fields


def decoded(value: str) -> str:
    """An unstructured header value with its RFC 2047 encoded words decoded."""
    return str(make_header(decode_header(value.removeprefix(" "))))


def expected_names(message: Message, *, bcc_header: bool = False) -> list[str]:
    """The header names, in order, that ``message`` must render to (Content-* decided by its structure)."""
    names = ["From"]
    for field, name in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "Reply-To")):
        if getattr(message, field) and (field != "bcc" or bcc_header):
            names.append(name)
    names += ["Subject", "Message-ID", "Date", *message.headers, "MIME-Version", "Content-Type"]
    single = not message.attachments and (message.text is None or message.html is None)
    if single:
        names.append("Content-Transfer-Encoding")
    return names


def check_wire(data: bytes, message: Message, *, bcc_header: bool = False) -> None:
    """``data`` carries exactly ``message``'s headers, unsplit, with its values, and its body after them."""
    fields = header_block(data)
    assert expected_names(message, bcc_header=bcc_header) == [name for name, _ in fields]
    values = dict(fields)
    assert message.subject == decoded(values["Subject"])
    for name, value in message.headers.items():
        assert value == decoded(values[name]), f"header {name!r} changed on the wire"
    assert f" {message.message_id}" == values["Message-ID"]
