"""Pathological sizes: no input hangs, and the work grows about linearly with the input.

Each case builds its input outside the clock, then runs under a hard time limit (``signal`` alarm). The
growth check compares the best of three runs at size n and at 8n: linear work takes about 8 times as
long, quadratic work 64 times; the bound (8 x 4 = 32 times, with a floor for tiny runs) leaves room for
a busy machine and still catches quadratic work. A 1 MB subject and 10,000 recipients are among them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable

import httplib2
import pytest
from googleapiclient.errors import HttpError

from sendchannel import Attachment, Message, SparkpostChannel
from sendchannel._address import parse_address
from sendchannel._gmail._answers import read_answer as _read_answer
from sendchannel._smtp._classify import Reply, ReplyContext, Stage, classify_reply
from sendchannel.errors import InvalidMessageError, SendError
from tests.reliability._badinput import check_wire, time_limit

SENDER = "App <app@example.com>"
Work = Callable[[], object]


def _message(**fields: object) -> Work:
    return lambda: Message(SENDER, **fields).as_bytes()  # type: ignore[arg-type]


def recipients(n: int) -> Work:
    addresses = [f"user{i}@example.net" for i in range(n)]
    return _message(to=addresses)


def named_recipients(n: int) -> Work:
    addresses = [f'"Ünïcode Nåme {i}, Jr." <user{i}@example.net>' for i in range(n)]
    return _message(to=["bob@example.net"], cc=addresses)


def subject_words(n: int) -> Work:
    return _message(to=["bob@example.net"], subject="word " * (n // 5))


def subject_one_word(n: int) -> Work:
    return _message(to=["bob@example.net"], subject="é" * n)


def header_value(n: int) -> Work:
    return _message(to=["bob@example.net"], headers={"X-Long": "=?x?= a" * (n // 7)})


def attachment_name(n: int) -> Work:
    return _message(to=["bob@example.net"], attachments=[Attachment("ü" * n + ".pdf", b"x")])


def text_body(n: int) -> Work:
    return _message(to=["bob@example.net"], text="line .\n" * (n // 7), html="<p>é</p>\r\n" * (n // 10))


def hostile_address(n: int) -> Work:
    values = [
        "a." * (n // 2) + "@example.com",
        '"' + '\\"' * (n // 2) + '" <a@example.com>',
        "<" * n + "a@example.com>",
        "a@" + "b." * (n // 2) + "com",
        "a" * n + "@example.com",
    ]

    def parse() -> None:
        for value in values:
            with contextlib.suppress(InvalidMessageError):
                parse_address(value, "to[0]")

    return parse


def smtp_reply(n: int) -> Work:
    text = "5.7.1 try again in 30 seconds " * (n // 30) + "9" * 1000
    return lambda: classify_reply(Reply(550, text), Stage.MESSAGE, ReplyContext("smtp.example.com:587"))


def gmail_answer(n: int) -> Work:
    body = json.dumps(
        {
            "error": {
                "message": "Retry after " * (n // 12),
                "errors": [{"reason": "rateLimitExceeded"}] * (n // 100),
            }
        }
    ).encode()
    error = HttpError(httplib2.Response({"status": "429", "retry-after": "9" * 400}), body)
    return lambda: _read_answer(error, 1_700_000_000.0)


def sparkpost_refusals(n: int) -> Work:
    """A 200 answer refusing all but one of n recipients, each by name (attributed per recipient)."""
    channel = SparkpostChannel("key", domains=["example.com"])
    message = Message(SENDER, [f"user{i}@example.net" for i in range(n)])
    errors = [
        {"message": "invalid recipient", "description": f"user{i}@example.net", "code": "1300"}
        for i in range(1, n)
    ]
    errors[0]["description"] += " (not x@" + "a." * 2000 + ")"  # a host run far longer than a domain
    results = {"id": "1", "total_accepted_recipients": 1, "rcpt_to_errors": errors}

    def accept() -> None:
        result = channel._accepted(message, results)
        assert n - 1 == len(result.rejected)

    return accept


# (name, work for size n, the smaller size)
CASES: list[tuple[str, Callable[[int], Work], int]] = [
    ("10,000 recipients", recipients, 1_250),
    ("8,000 named non-ASCII recipients", named_recipients, 1_000),
    ("1 MB subject of words", subject_words, 125_000),
    ("1 MB one-word non-ASCII subject", subject_one_word, 125_000),
    ("1 MB header of encoded-word look-alikes", header_value, 125_000),
    ("160 KB attachment file name", attachment_name, 20_000),
    ("1 MB bodies", text_body, 125_000),
    ("regex-hostile addresses", hostile_address, 25_000),
    ("SMTP reply text", smtp_reply, 125_000),
    ("Gmail error answer", gmail_answer, 125_000),
    ("SparkPost refusals of 2,000 recipients", sparkpost_refusals, 250),
]
FACTOR = 8


def best_of_three(work: Work) -> float:
    # CPU time of this process, not the wall clock: on a loaded machine the wall clock also counts the
    # time other processes ran, which would make a linear parser look superlinear by chance.
    best = math.inf
    for _ in range(3):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize(("name", "make", "size"), CASES, ids=[case[0] for case in CASES])
def test_work_grows_about_linearly_and_never_hangs(name: str, make: Callable[[int], Work], size: int) -> None:
    small, large = make(size), make(size * FACTOR)
    logging.disable(logging.WARNING)  # the SparkPost case logs thousands of refusals
    try:
        with time_limit(60, name):
            small_time = best_of_three(small)
            large_time = best_of_three(large)
    finally:
        logging.disable(logging.NOTSET)
    assert large_time <= max(small_time, 0.002) * FACTOR * 4, (
        f"{name}: {small_time * 1000:.1f} ms at n={size}, {large_time * 1000:.1f} ms at n={size * FACTOR}"
    )


def test_a_one_megabyte_subject_and_ten_thousand_recipients_render_to_a_valid_message() -> None:
    with time_limit(20, "building and rendering"):
        message = Message(
            SENDER,
            [f"user{i}@example.net" for i in range(10_000)],
            subject="ab " * 350_000,
            headers={"X-Note": "é" * 100_000},
        )
        data = message.as_bytes()
    check_wire(data, message)


@pytest.mark.parametrize("retry_after", ["9" * 400, "1e309", "inf", "nan"])
def test_an_absurd_wait_from_a_provider_is_no_wait_at_all(retry_after: str) -> None:
    """A Retry-After or reply text that overflows a float gives retry_after None, never infinity."""
    smtp = classify_reply(
        Reply(451, f"4.7.0 try again in {retry_after} seconds"), Stage.MAIL, ReplyContext("s")
    )
    gmail = _read_answer(
        HttpError(httplib2.Response({"status": "429", "retry-after": retry_after}), b"{}"), 0.0
    )
    assert isinstance(smtp, SendError)
    assert smtp.retry_after is None or math.isfinite(smtp.retry_after)
    assert gmail.retry_after is None
