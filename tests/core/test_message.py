"""Message and Attachment: validation at construction, normalisation, MIME rendering and round trips."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sendchannel import Attachment, InvalidMessageError, Message
from tests import strategies


def msg(**fields: object) -> Message:
    fields.setdefault("sender", "alice@example.com")
    fields.setdefault("to", ["bob@example.com"])
    return Message(**fields)  # type: ignore[arg-type]


def parsed(message: Message) -> EmailMessage:
    result = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("sender", "not an address", "sender"),
        ("sender", "alice@", "sender"),
        ("sender", "@example.com", "sender"),
        ("sender", "alice@example", "sender"),
        ("sender", "alice@exa mple.com", "sender"),
        ("sender", "Alice <alice@example.com", "sender"),
        ("to", ["bob@example.com", "nobody"], "to[1]"),
        ("cc", ["x@-bad-.com"], "cc[0]"),
        ("bcc", ["a@b..com"], "bcc[0]"),
        ("reply_to", ["<>"], "reply_to[0]"),
    ],
)
def test_malformed_address_names_its_field(field: str, value: object, named: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        msg(**{field: value})
    assert str(info.value).startswith(f"{named}:")


def test_no_recipient_is_refused() -> None:
    with pytest.raises(InvalidMessageError, match="no recipient"):
        Message("alice@example.com", [])


def test_bcc_alone_is_a_recipient() -> None:
    assert ("carol@example.com",) == Message("alice@example.com", bcc=["carol@example.com"]).recipients


@pytest.mark.parametrize("breaker", ["\r", "\n", "\r\n", "\x00"])
@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("subject", lambda b: msg(subject=f"hi{b}Bcc: victim@example.com")),
        ("sender", lambda b: msg(sender=f"Alice{b}Bcc: v@example.com <alice@example.com>")),
        ("to[0]", lambda b: msg(to=[f"bob@example.com{b}Bcc: v@example.com"])),
        ("cc[0]", lambda b: msg(cc=[f"Eve{b} <eve@example.com>"])),
        ("reply_to[0]", lambda b: msg(reply_to=[f"r@example.com{b}X: y"])),
        ("headers['X-Tag']", lambda b: msg(headers={"X-Tag": f"a{b}Bcc: v@example.com"})),
        ("Attachment.filename", lambda b: Attachment(f"a{b}.txt", b"x")),
        ("Attachment.content_type", lambda b: Attachment("a.txt", b"x", f"text/plain{b}X: y")),
        ("Attachment.content_id", lambda b: Attachment("a.png", b"x", inline=True, content_id=f"c{b}X")),
        ("message_id", lambda b: msg(message_id=f"<a{b}@example.com>")),
    ],
)
def test_header_injection_is_refused_in_every_field(field: str, build: object, breaker: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        build(breaker)  # type: ignore[operator]
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    "name",
    [
        "From",
        "to",
        "CC",
        "Bcc",
        "Reply-To",
        "Subject",
        "Message-ID",
        "Date",
        "MIME-Version",
        "Content-Type",
        "content-transfer-encoding",
    ],
)
def test_owned_headers_cannot_be_set_through_headers(name: str) -> None:
    with pytest.raises(InvalidMessageError, match="set by sendchannel itself"):
        msg(headers={name: "x"})


@pytest.mark.parametrize("name", ["", "X Tag", "X:Tag", "Tâg", "X-\x01"])
def test_invalid_header_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidMessageError, match="not a valid header name"):
        msg(headers={name: "x"})


def test_wrong_types_are_refused_clearly() -> None:
    with pytest.raises(InvalidMessageError, match="expected an address string"):
        msg(to=[42])
    with pytest.raises(InvalidMessageError, match="encode it first"):
        Attachment("a.txt", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match=r"attachments\[0\]: expected an Attachment"):
        msg(attachments=[b"raw"])
    with pytest.raises(InvalidMessageError, match="headers: expected a mapping"):
        msg(headers=[("X-A", "b")])
    with pytest.raises(InvalidMessageError, match="body as a string"):
        msg(text=b"bytes")


def test_bad_message_id_and_content_type_are_refused() -> None:
    with pytest.raises(InvalidMessageError, match="not a Message-ID"):
        msg(message_id="no-at-sign")
    with pytest.raises(InvalidMessageError, match="not a MIME type"):
        Attachment("a.bin", b"x", "binary")
    with pytest.raises(InvalidMessageError, match="give the file a name"):
        Attachment("", b"x")


# -- normalisation -----------------------------------------------------------------------------------


def test_sequences_become_tuples_and_a_single_string_is_one_address() -> None:
    message = msg(to="bob@example.com", cc=["c@example.com"], headers={"X-A": "1"})
    assert ("bob@example.com",) == message.to
    assert ("c@example.com",) == message.cc
    assert {"X-A": "1"} == dict(message.headers)


def test_recipients_are_deduplicated_case_insensitively_in_order() -> None:
    message = msg(
        to=["Bob <bob@example.com>", "c@example.com"], cc=["BOB@example.com"], bcc=["d@example.com"]
    )
    assert ("bob@example.com", "c@example.com", "d@example.com") == message.recipients


def test_internationalised_domain_is_stored_as_idna() -> None:
    message = msg(sender="Jörg <jorg@bücher.example>", to=["x@münchen.de"])
    assert "Jörg <jorg@xn--bcher-kva.example>" == message.sender
    assert ("x@xn--mnchen-3ya.de",) == message.to
    assert not message.needs_smtputf8


def test_non_ascii_local_part_needs_smtputf8() -> None:
    assert msg(to=["用户@example.com"]).needs_smtputf8


def test_message_id_is_generated_at_the_sender_domain_and_kept_when_given() -> None:
    assert msg().message_id.endswith("@example.com>")
    assert msg().message_id != msg().message_id
    assert "<abc@host.example>" == msg(message_id="abc@host.example").message_id


def test_line_breaks_in_bodies_are_normalised_to_newlines() -> None:
    assert "a\nb\nc" == msg(text="a\r\nb\rc").text


def test_empty_message_has_an_empty_text_body() -> None:
    assert "" == msg().text


def test_attachment_type_is_guessed_and_inline_parts_get_a_content_id() -> None:
    assert "image/png" == Attachment("logo.png", b"x").content_type
    assert "application/octet-stream" == Attachment("blob", b"x").content_type
    inline = Attachment("logo.png", b"x", inline=True)
    assert inline.content_id is not None
    assert (
        Attachment("l.png", b"x", inline=True, content_id="<logo@example.com>").content_id
        == "logo@example.com"
    )


def test_repr_shows_no_body_or_attachment_content() -> None:
    message = msg(text="secret body", attachments=[Attachment("a.txt", b"secret bytes")])
    assert "secret" not in repr(message)
    assert "secret" not in repr(message.attachments[0])


def test_messages_are_hashable_values() -> None:
    message = msg(headers={"X-A": "1"})
    assert message == message.evolve()
    assert hash(message) == hash(message.evolve())


# -- rendering -----------------------------------------------------------------------------------------


def test_bcc_is_never_in_the_rendered_headers() -> None:
    message = msg(bcc=["secret@example.com"])
    assert b"secret@example.com" not in message.as_bytes()
    assert parsed(message)["Bcc"] is None


def test_bcc_header_is_rendered_on_request_for_apis_that_read_it() -> None:
    from sendchannel._mime import render

    assert (
        str(
            email.message_from_bytes(
                render(msg(bcc=["secret@example.com"]), bcc_header=True), policy=email.policy.default
            )["Bcc"]
        )
        == "secret@example.com"
    )


def test_non_ascii_subject_and_names_are_encoded_as_7bit_headers() -> None:
    message = msg(sender="Jörg Müller <jorg@example.com>", subject="Grüße — 你好")
    raw = message.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert "Grüße — 你好" == str(parsed(message)["Subject"])
    assert "Jörg Müller" == parsed(message)["From"].addresses[0].display_name


def test_lines_are_crlf_and_no_header_line_is_too_long() -> None:
    message = msg(to=[f"user{i}@example.com" for i in range(60)], subject="word " * 100)
    raw = message.as_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_rendering_is_cached_so_size_and_bytes_agree() -> None:
    message = msg(text="x" * 100)
    assert message.as_bytes() is message.as_bytes()
    assert len(message.as_bytes()) == message.size


def test_attachment_filenames_in_any_script_survive() -> None:
    message = msg(attachments=[Attachment("résumé 履歴書.pdf", b"%PDF")])
    [part] = list(parsed(message).iter_attachments())
    assert "résumé 履歴書.pdf" == part.get_filename()
    assert b"%PDF" == part.get_content()


def test_html_with_inline_image_is_multipart_related() -> None:
    message = msg(
        text="t",
        html='<img src="cid:logo">',
        attachments=[
            Attachment("logo.png", b"PNG", inline=True, content_id="logo"),
            Attachment("a.pdf", b"PDF"),
        ],
    )
    em = parsed(message)
    assert "multipart/mixed" == em.get_content_type()
    types = [part.get_content_type() for part in em.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]


# -- round trips -----------------------------------------------------------------------------------------


@given(strategies.messages(bcc=False))
def test_round_trip_through_email_message_keeps_every_field(message: Message) -> None:
    assert message == Message.from_email_message(message.to_email_message())


@given(strategies.messages())
def test_round_trip_drops_only_bcc(message: Message) -> None:
    """to_email_message() leaves Bcc out (it is envelope-only); every other field survives."""
    assume(message.to or message.cc)
    assert message.evolve(bcc=()) == Message.from_email_message(message.to_email_message())


@given(strategies.messages(bcc=False))
def test_round_trip_through_bytes_parsed_with_compat32(message: Message) -> None:
    """A message read back with the stdlib's legacy parser converts to the same Message."""
    legacy = email.message_from_bytes(message.as_bytes())
    assert message == Message.from_email_message(legacy)


@given(
    sender=strategies.addresses,
    to=st.lists(strategies.addresses, min_size=1, max_size=3),
    subject=strategies.header_text,
    text=strategies.body_text,
    html=st.none() | strategies.body_text,
    files=st.lists(st.tuples(strategies.filenames, st.binary(max_size=200)), max_size=2),
)
def test_email_message_converts_to_message_and_back(
    sender: str, to: list[str], subject: str, text: str, html: str | None, files: list[tuple[str, bytes]]
) -> None:
    """An EmailMessage built with the stdlib API keeps its content through Message and back."""
    source = EmailMessage()
    source["From"] = sender
    source["To"] = ", ".join(to)
    source["Subject"] = subject
    source.set_content(text)
    if html is not None:
        source.add_alternative(html, subtype="html")
    for name, data in files:
        source.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    message = Message.from_email_message(source)
    back = message.to_email_message()
    assert str(source["Subject"]) == str(back["Subject"])
    assert [Message(sender, [a.addr_spec]).to[0] for a in source["To"].addresses] == [
        a.addr_spec for a in back["To"].addresses
    ]
    assert source.get_body(("plain",)).get_content() == back.get_body(("plain",)).get_content()
    if html is not None:
        assert source.get_body(("html",)).get_content() == back.get_body(("html",)).get_content()
    assert [(p.get_filename(), p.get_content()) for p in source.iter_attachments()] == [
        (p.get_filename(), p.get_content()) for p in back.iter_attachments()
    ]


def test_from_email_message_needs_exactly_one_from() -> None:
    source = EmailMessage()
    source["To"] = "bob@example.com"
    with pytest.raises(InvalidMessageError, match="0 From addresses"):
        Message.from_email_message(source)


def test_from_email_message_reads_bcc_and_custom_headers() -> None:
    source = EmailMessage()
    source["From"] = "a@example.com"
    source["Bcc"] = "hidden@example.com"
    source["X-Campaign"] = "spring"
    source.set_content("hi")
    message = Message.from_email_message(source)
    assert ("hidden@example.com",) == message.bcc
    assert {"X-Campaign": "spring"} == dict(message.headers)


@given(
    name=st.one_of(
        strategies.display_names,
        st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
        st.text(alphabet='ab "\\()<>@,:;.[]', max_size=12),
    ),
    address=strategies.bare_addresses,
)
def test_addresses_are_written_as_the_standard_library_writes_them(name: str, address: str) -> None:
    """ParsedAddress.formatted() quotes display names exactly as email.headerregistry.Address does."""
    from email.headerregistry import Address

    from sendchannel._address import ParsedAddress, parse_address

    bare = parse_address(address, "to")
    parsed = ParsedAddress(" ".join(name.split()), bare.local_part, bare.domain)
    expected = str(Address(display_name=parsed.display_name, addr_spec=parsed.addr_spec))
    assert expected == parsed.formatted()


def test_an_encoded_word_in_an_address_is_refused_since_readers_decode_it_into_a_header() -> None:
    """'=?utf-8?b?DQpCY2M6...?=@x' decodes to CRLF + 'Bcc: ...' in the stdlib's reader (RFC 2047, 5)."""
    with pytest.raises(InvalidMessageError, match=r"to\[0\].*encoded word"):
        Message("app@example.com", ["=?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=@example.com"])
    assert ["a=?b@example.com"] == list(Message("app@example.com", ["a=?b@example.com"]).to)
