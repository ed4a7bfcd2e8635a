"""What SparkpostChannel sends: the request SparkPost receives for each kind of Message, and the result."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendchannel import (
    Attachment,
    InvalidMessageError,
    Limits,
    Message,
    SenderNotAllowedError,
    SparkpostChannel,
)
from sendchannel._sparkpost._template import BRACE_DATA as _BRACE_DATA
from sendchannel._sparkpost._template import escape_template_syntax as _escape_template_syntax
from tests.sparkpost.server import API_KEY, SparkpostServer, render_template

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def test_a_message_is_posted_to_transmissions_with_the_raw_key_and_its_mime(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message("app@example.com", ["bob@example.net"], subject="Hello", text="Hi Bob.\n")

    result = await channel.send(message)

    [request] = server.received
    assert ("POST", "/api/v1/transmissions") == (request.method, request.path)
    assert API_KEY == request.headers["authorization"]
    assert "application/json" == request.headers["content-type"]
    assert {
        "options": {"open_tracking": False, "click_tracking": False},
        "recipients": [{"address": {"email": "bob@example.net", "header_to": "bob@example.net"}}],
        "content": {"email_rfc822": message.as_bytes().decode()},
    } == request.json
    assert message.message_id == result.message_id
    assert "11668787484950529" == result.provider_id
    assert ("bob@example.net",) == result.accepted
    assert {} == dict(result.rejected)
    assert "sparkpost" == result.channel


async def test_recipients_see_exactly_the_message(server: SparkpostServer, channel: SparkpostChannel) -> None:
    message = Message(
        "Team <app@example.com>",
        ["Bob <bob@example.net>"],
        subject="Quarterly report",
        text="Plain text.\n",
        html="<p>HTML</p>\n",
    )

    await channel.send(message)

    [delivered] = server.delivered
    assert "Team <app@example.com>" == delivered.header("From")
    assert "Bob <bob@example.net>" == delivered.header("To")
    assert message.subject == delivered.header("Subject")
    assert message.message_id == delivered.header("Message-ID")
    assert (message.text, message.html) == (delivered.text, delivered.html)


async def test_non_ascii_names_subject_body_and_international_domains_arrive_intact(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message(
        "Jürgen Müller <jurgen@example.com>",
        ["Zoë <zoe@bücher.example>"],
        subject="Grüße — 你好, ça va ?",
        text="Ünïcödé ✓ and a very long line " + "é" * 200 + "\n",
    )

    result = await channel.send(message)

    [delivered] = server.delivered
    assert ["zoe@xn--bcher-kva.example"] == [
        r["address"]["email"] for r in server.received[0].json["recipients"]
    ]
    assert ("zoe@xn--bcher-kva.example",) == result.accepted
    assert "Jürgen Müller <jurgen@example.com>" == delivered.header("From")
    assert "Zoë <zoe@xn--bcher-kva.example>" == delivered.header("To")
    assert message.subject == delivered.header("Subject")
    # A text that ends the message shows one more final line break (the message's own, see _mime.py).
    assert message.text + "\n" == delivered.text
    assert server.received[0].body.isascii()


async def test_attachments_keep_their_names_types_and_bytes(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 10
    message = Message(
        "app@example.com",
        ["bob@example.net"],
        subject="Invoice",
        text="Attached.\n",
        attachments=[
            Attachment("Rechnung März.pdf", pdf, "application/pdf"),
            Attachment("notes.txt", b"{{not a template}}\n", "text/plain"),
        ],
    )

    await channel.send(message)

    mime = server.received[0].rfc822
    found = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in mime.iter_attachments()]
    assert [
        ("Rechnung März.pdf", "application/pdf", pdf),
        ("notes.txt", "text/plain", "{{not a template}}\n"),
    ] == found
    assert message.text == server.delivered[0].text


async def test_inline_images_travel_with_the_html_under_their_content_id(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message(
        "app@example.com",
        ["bob@example.net"],
        subject="Logo",
        text="See the logo.\n",
        html='<p><img src="cid:logo@example.com"></p>\n',
        attachments=[Attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@example.com")],
    )

    await channel.send(message)

    mime = server.received[0].rfc822
    related = next(p for p in mime.walk() if p.get_content_type() == "multipart/related")
    html_part, image = related.iter_parts()
    assert "text/html" == html_part.get_content_type()
    assert ("<logo@example.com>", "inline", "image/png", PNG) == (
        image["Content-ID"],
        image.get_content_disposition(),
        image.get_content_type(),
        image.get_content(),
    )
    assert message.html == server.delivered[0].html


async def test_cc_and_bcc_recipients_are_in_the_envelope_and_bcc_nowhere_in_the_headers(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message(
        "app@example.com",
        ["Ann <ann@example.net>", "al@example.net"],
        cc=["cat@example.org"],
        bcc=["Secret Sam <sam@example.org>"],
        subject="Minutes",
        text="Minutes attached.\n",
    )

    result = await channel.send(message)

    request = server.received[0]
    header_to = "ann@example.net,al@example.net"
    assert [
        {"address": {"email": "ann@example.net", "header_to": header_to}},
        {"address": {"email": "al@example.net", "header_to": header_to}},
        {"address": {"email": "cat@example.org", "header_to": header_to}},
        {"address": {"email": "sam@example.org", "header_to": header_to}},
    ] == request.json["recipients"]
    mime = request.rfc822
    assert ("Ann <ann@example.net>, al@example.net", "cat@example.org") == (str(mime["To"]), str(mime["Cc"]))
    assert mime["Bcc"] is None
    assert "sam@example.org" not in request.json["content"]["email_rfc822"]
    assert ("ann@example.net", "al@example.net", "cat@example.org", "sam@example.org") == result.accepted


async def test_a_message_with_only_bcc_recipients_sets_no_header_to(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message("app@example.com", bcc=["sam@example.org", "sue@example.org"], text="Hi.\n")

    await channel.send(message)

    request = server.received[0]
    assert [
        {"address": {"email": "sam@example.org"}},
        {"address": {"email": "sue@example.org"}},
    ] == request.json["recipients"]
    assert request.rfc822["To"] is None


async def test_reply_to_and_custom_headers_are_kept(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message(
        "app@example.com",
        ["bob@example.net"],
        reply_to=["Support <support@example.com>"],
        subject="Ticket",
        text="We are on it.\n",
        headers={"X-Ticket": "4711", "List-Unsubscribe": "<mailto:unsubscribe@example.com>"},
    )

    await channel.send(message)

    delivered = server.delivered[0]
    assert "Support <support@example.com>" == delivered.header("Reply-To")
    assert "4711" == delivered.header("X-Ticket")
    assert "<mailto:unsubscribe@example.com>" == delivered.header("List-Unsubscribe")


async def test_template_syntax_in_any_field_reaches_recipients_unchanged(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    """SparkPost renders {{...}} in headers and bodies even without data; the channel escapes it."""
    message = Message(
        "Team {{app}} <app@example.com>",
        ["The {{name}} <bob@example.net>"],
        subject="Your {{code}} is ready}}",
        text="Hello {{name}}, {} {{{raw}}} }}}} {}} {{}} and {{\n",
        html="<p>{{ name }} costs ${{price}}</p>\n",
        headers={"X-Template": "{{x}}"},
    )

    await channel.send(message)

    request = server.received[0]
    assert _BRACE_DATA == request.json["substitution_data"]
    delivered = server.delivered[0]
    assert '"Team {{app}}" <app@example.com>' == delivered.header("From")
    assert '"The {{name}}" <bob@example.net>' == delivered.header("To")
    assert message.subject == delivered.header("Subject")
    assert message.headers["X-Template"] == delivered.header("X-Template")
    assert (message.text, message.html) == (delivered.text, delivered.html)
    assert message.message_id == delivered.header("Message-ID")


async def test_a_message_without_template_syntax_is_sent_as_rendered_without_substitution_data(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    message = Message("app@example.com", ["bob@example.net"], subject="{ single } braces", text="a {b} c\n")

    await channel.send(message)

    assert "substitution_data" not in server.received[0].json
    assert message.as_bytes().decode() == server.received[0].json["content"]["email_rfc822"]


@given(st.text(alphabet="{}a \n", max_size=40))
def test_escaped_text_renders_back_to_itself(text: str) -> None:
    assert text == render_template(_escape_template_syntax(text), _BRACE_DATA)


def test_the_test_server_renders_template_syntax_as_sparkpost_does() -> None:
    """Without the channel's escaping, the server (like SparkPost) would change the text."""
    assert "Hello , {{ and }}" == render_template(
        "Hello {{name}}, {{opening_double_curly()}} and {{{closing_double_curly()}}}", {}
    )


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
async def test_template_syntax_in_an_address_is_refused_before_sending(
    server: SparkpostServer, channel: SparkpostChannel, field: str
) -> None:
    """A Bcc too: it travels only in the request's recipients, which SparkPost reads as template text."""
    fields = {"to": ["bob@example.net"], field: ["a{{b}}@example.net"]}
    message = Message("app@example.com", text="x", **fields)

    with pytest.raises(InvalidMessageError, match="template syntax"):
        await channel.send(message)

    assert [] == server.received


async def test_options_are_sent_with_every_transmission_and_can_turn_tracking_on(
    server: SparkpostServer,
) -> None:
    channel = SparkpostChannel(
        API_KEY,
        domains=["example.com"],
        base_url=server.url,
        options={"transactional": True, "ip_pool": "receipts", "click_tracking": True},
    )
    async with channel:
        await channel.send(Message("app@example.com", ["bob@example.net"], text="x"))

    assert {
        "open_tracking": False,
        "click_tracking": True,
        "transactional": True,
        "ip_pool": "receipts",
    } == server.received[0].json["options"]


async def test_a_sender_outside_the_domains_is_refused_before_any_request(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    for sender in ("app@other.example", "app@mail.example.com"):
        with pytest.raises(SenderNotAllowedError, match="verify"):
            await channel.send(Message(sender, ["bob@example.net"], text="x"))

    assert [] == server.received


async def test_any_address_at_a_declared_domain_may_send(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    for sender in ("alice@example.com", "Bob <BOB@Example.COM>"):
        await channel.send(Message(sender, ["carol@example.net"], text="x"))

    assert 2 == len(server.delivered)


async def test_too_many_recipients_for_the_declared_limits_is_refused_before_any_request(
    server: SparkpostServer,
) -> None:
    channel = SparkpostChannel(
        API_KEY, domains=["example.com"], base_url=server.url, limits=Limits(max_recipients_per_message=2)
    )
    message = Message("app@example.com", ["a@example.net", "b@example.net", "c@example.net"], text="x")
    async with channel:
        with pytest.raises(InvalidMessageError, match="at most 2"):
            await channel.send(message)

    assert [] == server.received


async def test_sends_share_one_connection_pool(server: SparkpostServer, channel: SparkpostChannel) -> None:
    for index in range(3):
        await channel.send(Message("app@example.com", [f"r{index}@example.net"], text="x"))

    assert 1 == len({request.client for request in server.received})


async def test_a_closed_channel_refuses_to_send(server: SparkpostServer) -> None:
    channel = SparkpostChannel(API_KEY, domains=["example.com"], base_url=server.url)
    await channel.send(Message("app@example.com", ["bob@example.net"], text="x"))
    await channel.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(Message("app@example.com", ["bob@example.net"], text="x"))
    assert 1 == len(server.received)


async def test_every_transmission_carries_its_message_id_as_idempotency_key(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    sent = Message("app@example.com", ["bob@example.net"], text="x")
    await channel.send(sent)

    assert sent.message_id == server.received[0].headers["idempotency-key"]
    assert channel.idempotent
