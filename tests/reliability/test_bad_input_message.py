"""Bad input to Message, Attachment and the address parser: refused with a named field, or rendered safely.

Every field gets hostile text (line breaks of every kind, control characters, lone surrogates, encoded
words that decode to line breaks, folding tricks, very long values). Either construction raises
InvalidMessageError naming the field, or the message renders to bytes whose every line ends in CRLF
within 998 characters and whose header block holds exactly the headers the message should have; and
the bytes read back (by the stdlib's parser) to the same Message, so no boundary moved.
"""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sendchannel import Attachment, Message
from sendchannel._address import parse_address
from sendchannel.errors import InvalidMessageError
from tests import strategies
from tests.reliability._badinput import (
    LINE_BREAKS,
    any_address,
    any_header_name,
    any_text,
    assert_names_a_field,
    check_wire,
    hostile_text,
    long_text,
    message_ids,
    time_limit,
)

content_types = st.one_of(
    st.none(),
    st.sampled_from(["image/png", "application/pdf", "Text/Plain"]),
    any_text,
    st.integers(100, 1200).map(lambda n: "application/" + "x" * n),
)
content_ids = st.one_of(
    st.none(),
    any_text,
    st.builds(lambda t: f"<{t}@example.com>", any_text),
    st.integers(100, 1200).map(lambda n: "c" * n + "@example.com"),
)
filenames = st.one_of(
    strategies.filenames,
    any_text,
    st.integers(100, 3000).map(lambda n: "f" * n + ".pdf"),
    st.integers(100, 1000).map(lambda n: "é" * n + ".txt"),
)


def build(constructor: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``constructor``; an InvalidMessageError must name its field, and nothing else may escape."""
    try:
        with time_limit(5, "construction"):
            built = constructor(*args, **kwargs)
    except InvalidMessageError as error:
        assert_names_a_field(error)
        event(f"{constructor.__name__} refused: {str(error).partition(':')[0][:20]}")
        return None
    event(f"{constructor.__name__} accepted")
    return built


def check_rendered(message: Message) -> None:
    """The rendering is safe on the wire and reads back to the same message."""
    with time_limit(10, "rendering"):
        data = message.as_bytes()
    check_wire(data, message)
    if message.to or message.cc:  # a message with only Bcc has no recipient in its headers
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert message.evolve(bcc=()) == Message.from_email_message(parsed)
    gmail = message.evolve()  # the Gmail rendering adds Bcc
    from sendchannel._mime import render

    check_wire(render(gmail, bcc_header=True), gmail, bcc_header=True)


@st.composite
def attachments(draw: st.DrawFn) -> Attachment | None:
    inline = draw(st.booleans())
    return build(  # type: ignore[no-any-return]
        Attachment,
        draw(filenames),
        draw(st.binary(max_size=64)),
        draw(content_types),
        inline=inline,
        content_id=draw(content_ids),
    )


@st.composite
def message_fields(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(any_header_name, max_size=3))
    return {
        "sender": draw(any_address),
        "to": draw(st.lists(any_address, max_size=3)),
        "cc": draw(st.lists(any_address, max_size=2)),
        "bcc": draw(st.lists(any_address, max_size=2)),
        "reply_to": draw(st.lists(any_address, max_size=2)),
        "subject": draw(any_text),
        "text": draw(st.none() | any_text),
        "html": draw(st.none() | any_text),
        "headers": {name: draw(any_text) for name in names},
        "attachments": [a for a in draw(st.lists(attachments(), max_size=2)) if a is not None],
        "message_id": draw(message_ids),
    }


@settings(max_examples=300)
@given(message_fields())
def test_any_message_is_refused_with_its_field_named_or_renders_safely(fields: dict[str, Any]) -> None:
    message = build(Message, **fields)
    if message is not None:
        check_rendered(message)


# One hostile field at a time, on an otherwise valid message, so that each field is reached (a message
# with many hostile fields is refused for the first one).
SINGLE_FIELDS = {
    "sender": any_address,
    "to": any_address.map(lambda a: [a]),
    "cc": any_address.map(lambda a: [a]),
    "bcc": any_address.map(lambda a: [a]),
    "reply_to": any_address.map(lambda a: [a]),
    "subject": any_text,
    "text": any_text,
    "html": any_text,
    "headers": st.dictionaries(any_header_name, any_text, min_size=1, max_size=2),
    "message_id": message_ids,
    "attachments": attachments().map(lambda a: [] if a is None else [a]),
}


@pytest.mark.parametrize("field", sorted(SINGLE_FIELDS))
@settings(max_examples=60)
@given(data=st.data())
def test_each_field_alone_is_refused_with_its_name_or_renders_safely(field: str, data: st.DataObject) -> None:
    fields: dict[str, Any] = {"sender": "App <app@example.com>", "to": ["bob@example.net"], "subject": "Hi"}
    fields[field] = data.draw(SINGLE_FIELDS[field], label=field)
    refusal: InvalidMessageError | None = None
    try:
        with time_limit(5, "construction"):
            message = Message(**fields)
    except InvalidMessageError as error:
        refusal = error
    if refusal is not None:
        assert_names_a_field(refusal)
        event("refused")
        expected = {"to": "to[", "cc": "cc[", "bcc": "bcc[", "reply_to": "reply_to["}.get(field, field)
        if field != "attachments":  # a built Attachment is valid; its own refusals are checked in build()
            assert expected in str(refusal), f"the error for {field} does not name it: {refusal}"
        return
    event("accepted and rendered")
    check_rendered(message)


@settings(max_examples=200)
@given(any_address)
def test_address_parser_refuses_with_the_field_or_returns_a_clean_address(value: str) -> None:
    refusal: InvalidMessageError | None = None
    try:
        with time_limit(5, "parse_address"):
            parsed = parse_address(value, "to[0]")
    except InvalidMessageError as error:
        refusal = error
    if refusal is not None:
        assert "to[0]" in str(refusal)
        str(refusal).encode("utf-8")
        return
    for part in (parsed.local_part, parsed.domain, parsed.display_name):
        assert not set(part) & set(LINE_BREAKS), f"a line break survived in {part!r}"
        part.encode("utf-8")
    assert parsed.domain.isascii()


@pytest.mark.parametrize("breaker", [*LINE_BREAKS[:4], "\x00"])
@pytest.mark.parametrize(
    "field",
    ["subject", "headers", "sender", "to", "filename", "content_type", "content_id", "message_id"],
)
def test_a_line_break_in_any_header_field_is_refused(field: str, breaker: str) -> None:
    """CR, LF, CRLF and NUL never reach a header: each field refuses them, naming itself."""
    evil = f"x{breaker}Bcc: evil@attacker.example"
    fields: dict[str, Any] = {"sender": "app@example.com", "to": ["bob@example.net"]}
    attempts = {
        "subject": lambda: Message(**fields, subject=evil),
        "message_id": lambda: Message(**fields, message_id=f"<{evil}@example.com>"),
        "headers": lambda: Message(**fields, headers={"X-Note": evil}),
        "sender": lambda: Message(**{**fields, "sender": f"{evil} <a@example.com>"}),
        "to": lambda: Message(**{**fields, "to": [evil]}),
        "filename": lambda: Attachment(evil, b"x"),
        "content_type": lambda: Attachment("a.txt", b"x", f"text/plain{breaker}"),
        "content_id": lambda: Attachment("a.png", b"x", inline=True, content_id=f"a{breaker}@example.com"),
    }
    with pytest.raises(InvalidMessageError) as caught:
        attempts[field]()
    assert_names_a_field(caught.value)


@given(hostile_text | long_text)
def test_bodies_with_any_text_render_safely(text: str) -> None:
    message = build(Message, "app@example.com", ["bob@example.net"], text=text, html=f"<p>{text}</p>")
    if message is not None:
        check_rendered(message)


@pytest.mark.parametrize("name", [" ", "\t", "  \t "])
def test_a_blank_file_name_is_refused_as_no_name(name: str) -> None:
    """Readers strip the blanks of a file name, so a blank one would arrive as no name at all."""
    with pytest.raises(InvalidMessageError, match="give the file a name"):
        Attachment(name, b"x")


@pytest.mark.parametrize("name", ["<>", "<report.pdf>", "<ü>", " padded name.txt ", "ab " * 200])
def test_file_names_that_readers_would_trim_arrive_exactly(name: str) -> None:
    """A name in angle brackets or with outer blanks reaches the reader unchanged (stdlib and ours)."""
    message = Message("app@example.com", ["bob@example.net"], attachments=[Attachment(name, b"x")])
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert message == Message.from_email_message(parsed)
    legacy = email.message_from_bytes(message.as_bytes())
    assert name.strip() == [part.get_filename() for part in legacy.walk()][-1]
