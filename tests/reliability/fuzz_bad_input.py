"""Coverage-guided fuzzing (atheris) of the bad-input targets, run by hand, not by pytest.

    pip install atheris
    python -m tests.reliability.fuzz_bad_input -max_total_time=120

The first byte picks the target: Message construction and rendering (checked as the wire tests check
it), the address parser, the SMTP reply classifier, SparkPost's refusal matching, Google's error
answers and channel_from_url. Anything but a documented error, or a rendering that breaks the RFC 5322
checks, crashes the fuzzer with the input that caused it.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    import httplib2
    from googleapiclient.errors import HttpError

    from sendchannel import Attachment, Message, channel_from_url
    from sendchannel._address import parse_address
    from sendchannel._gmail._answers import classify as _classify
    from sendchannel._gmail._answers import read_answer as _read_answer
    from sendchannel._smtp._classify import SMTP_RULES, Reply, ReplyContext, Stage, classify_reply
    from sendchannel._sparkpost._recipients import mentioned as _mentioned
    from sendchannel.errors import ConfigurationError, InvalidMessageError, SendError

from tests.reliability._badinput import check_wire

STAGES = list(Stage)
WANTED = {f"user{i}@example.net": f"user{i}@example.net" for i in range(20)}


def _message(data: atheris.FuzzedDataProvider) -> None:
    texts = [data.ConsumeUnicodeNoSurrogates(40) for _ in range(8)]
    try:
        attachment = Attachment(
            texts[6] or "a", data.ConsumeBytes(20), inline=data.ConsumeBool(), content_id=texts[7] or None
        )
        message = Message(
            texts[0] or "app@example.com",
            [texts[1] or "bob@example.net"],
            cc=[texts[2]] if texts[2] else [],
            subject=texts[3],
            text=texts[4],
            html=texts[5] or None,
            headers={f"X-{texts[3][:10]}": texts[4]} if texts[3] else {},
            attachments=[attachment],
        )
    except InvalidMessageError as error:
        str(error).encode("utf-8")
        return
    check_wire(message.as_bytes(), message)


def _address(data: atheris.FuzzedDataProvider) -> None:
    with contextlib.suppress(InvalidMessageError):
        parse_address(data.ConsumeUnicode(200), "to[0]")


def _reply(data: atheris.FuzzedDataProvider) -> None:
    code = data.ConsumeIntInRange(-1, 999)
    stage = STAGES[data.ConsumeIntInRange(0, len(STAGES) - 1)]
    error = classify_reply(Reply(code, data.ConsumeUnicode(300)), stage, ReplyContext("s"), SMTP_RULES)
    assert isinstance(error, SendError)
    str(error).encode("utf-8")


def _refusal(data: atheris.FuzzedDataProvider) -> None:
    _mentioned(data.ConsumeUnicode(500), WANTED)


def _google(data: atheris.FuzzedDataProvider) -> None:
    status = data.ConsumeIntInRange(300, 599)
    headers = {"status": str(status), "retry-after": data.ConsumeUnicodeNoSurrogates(20)}
    try:
        failure = HttpError(httplib2.Response(headers), data.ConsumeBytes(300))
    except Exception:  # Google's client cannot build its own error: the channel reads that as unusable
        return
    answer = _read_answer(failure, 0.0)
    error = _classify(answer, account="a@example.com", operation="send", now=0.0, scrub=lambda t: t)
    str(error).encode("utf-8")


def _url(data: atheris.FuzzedDataProvider) -> None:
    scheme = ["smtp", "smtps", "office365", "gmail", "sparkpost", "memory", "x"][data.ConsumeIntInRange(0, 6)]
    try:
        channel_from_url(f"{scheme}://{data.ConsumeUnicode(120)}")
    except ConfigurationError as error:
        str(error).encode("utf-8")


TARGETS = [_message, _address, _reply, _refusal, _google, _url]


def one_input(raw: bytes) -> None:
    data = atheris.FuzzedDataProvider(raw)
    TARGETS[data.ConsumeIntInRange(0, len(TARGETS) - 1)](data)


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
