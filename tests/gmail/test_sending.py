"""What reaches the Gmail API when GmailOAuthChannel sends: path, token, the raw message, Bcc, uploads."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import ssl
import threading
from collections.abc import Callable

import pytest
import trustme
from hypothesis import given, settings

from sendchannel import Attachment, GmailOAuthChannel, Message, SendResult
from sendchannel._gmail._channel import _JSON_RAW_MAX_BYTES
from sendchannel._mime import render
from sendchannel.errors import PermanentError
from tests import strategies
from tests.gmail.conftest import ADDRESS, user_credentials
from tests.gmail.server import GmailServer

SEND_PATH = "/gmail/v1/users/me/messages/send"
UPLOAD_PATH = "/upload/gmail/v1/users/me/messages/send"


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait on the event loop until ``condition()`` holds (at most about ten seconds)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


MESSAGES = {
    "plain ascii": Message(ADDRESS, ["bob@example.net"], subject="Hello", text="Just text.\n"),
    "non-ascii everywhere": Message(
        "Alice Müller <alice@example.com>",
        ["Zoë Ångström <zoe@example.net>", "bob@bücher.example"],
        subject="Grüße aus Köln – 東京 ✓",
        text="Ünïcödé body, with emoji 📨 and a long line " + "ä" * 300 + "\n",
    ),
    "html and text with cc, bcc, reply-to and headers": Message(
        ADDRESS,
        ["bob@example.net"],
        cc=["carol@example.org"],
        bcc=["dave@example.org", "Eve <eve@example.com>"],
        reply_to=["replies@example.com"],
        subject="Quarterly report",
        text="See the HTML part.",
        html="<p>Hello <b>Bob</b></p>",
        headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:unsub@example.com>"},
    ),
    "attachments, inline image and a non-ascii file name": Message(
        ADDRESS,
        ["bob@example.net"],
        subject="Files",
        text="Two files attached.",
        html='<p><img src="cid:logo@example.com"></p>',
        attachments=[
            Attachment("report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40, "application/pdf"),
            Attachment("Übersicht 2024.csv", "Größe;Wert\n1;2\n".encode(), "text/csv"),
            Attachment(
                "logo.png",
                b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
                "image/png",
                inline=True,
                content_id="logo@example.com",
            ),
        ],
    ),
    "bcc only": Message(ADDRESS, [], bcc=["hidden@example.org"], subject="Blind", text="Only Bcc."),
}


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_the_raw_message_decodes_back_to_the_message_sent(
    channel: GmailOAuthChannel, gmail_server: GmailServer, message: Message
) -> None:
    result = await channel.send(message)
    [sent] = gmail_server.sent
    assert message == Message.from_email_message(sent.message)
    assert (
        SendResult(
            message_id=message.message_id,
            provider_id=sent.id,
            accepted=message.recipients,
            channel="gmail",
        )
        == result
    )


async def test_send_posts_json_raw_to_users_me_messages_send_with_the_bearer_token(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    message = MESSAGES["plain ascii"]
    await channel.send(message)
    [request] = gmail_server.api_requests()
    assert ("POST", SEND_PATH) == (request.method, request.path)
    assert [f"Bearer {token}" for token in gmail_server.issued_tokens()] == [request.headers["authorization"]]
    assert request.headers["content-type"].startswith("application/json")
    raw = json.loads(request.body)["raw"]
    assert not {"+", "/"} & set(raw), "raw must be base64url, not standard base64"
    assert gmail_server.sent[0].raw == base64.urlsafe_b64decode(raw)


async def test_the_submitted_message_carries_a_bcc_header_with_every_blind_recipient(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """Gmail takes the recipients from the headers, so Bcc must be in what it receives."""
    message = MESSAGES["html and text with cc, bcc, reply-to and headers"]
    await channel.send(message)
    [sent] = gmail_server.sent
    assert ["dave@example.org", "eve@example.com"] == [a.addr_spec for a in sent.message["Bcc"].addresses]
    assert b"\r\nBcc: " in sent.raw.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in message.as_bytes(), "the message for SMTP and the recipients keeps no Bcc"


async def test_a_message_above_the_json_threshold_goes_as_a_multipart_upload_to_the_endpoint(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """The client builds https:// upload URLs; the channel sends them to the http:// api_endpoint."""
    big = Attachment(
        "big.bin", bytes(range(256)) * (_JSON_RAW_MAX_BYTES // 256 + 1), "application/octet-stream"
    )
    message = Message(
        ADDRESS,
        ["bob@example.net"],
        bcc=["hidden@example.org"],
        subject="Big",
        text="Big file.",
        attachments=[big],
    )
    await channel.send(message)
    [request] = gmail_server.api_requests()
    assert ("POST", UPLOAD_PATH, "multipart") == (request.method, request.path, request.query["uploadType"])
    [sent] = gmail_server.sent
    assert message == Message.from_email_message(sent.message)
    assert ["hidden@example.org"] == [a.addr_spec for a in sent.message["Bcc"].addresses]


async def test_a_message_just_below_the_threshold_still_goes_as_json(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    message = Message(ADDRESS, ["bob@example.net"], subject="Edge", text="x")
    room = _JSON_RAW_MAX_BYTES - len(message.as_bytes()) - 1000
    # base64 in 76-character lines turns 57 bytes into 78
    filler = Attachment("pad.bin", b"\x01" * (room * 57 // 78), "application/octet-stream")
    message = message.evolve(attachments=[filler])
    assert _JSON_RAW_MAX_BYTES - 2000 < len(render(message, bcc_header=True)) <= _JSON_RAW_MAX_BYTES
    await channel.send(message)
    [request] = gmail_server.api_requests()
    assert (SEND_PATH, None) == (request.path, request.query.get("uploadType"))


@settings(max_examples=25, deadline=None)
@given(message=strategies.messages())
def test_any_message_survives_the_trip_through_gmail(message: Message) -> None:
    message = message.evolve(sender=ADDRESS)

    async def main() -> None:
        with GmailServer(ADDRESS) as server:
            async with GmailOAuthChannel(
                user_credentials(server), address=ADDRESS, api_endpoint=server.url
            ) as ch:
                await ch.send(message)
            [sent] = server.sent
            assert message == Message.from_email_message(sent.message)

    asyncio.run(main())


async def test_concurrent_sends_run_at_once_without_blocking_the_event_loop(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    """Five sends are in flight at the server together while the loop keeps running other tasks."""
    gmail_server.hold_sends = hold = threading.Event()
    await channel.verify()  # fetch the token first, so the sends go straight to the API
    messages = [Message(ADDRESS, [f"r{i}@example.net"], subject=f"n{i}", text="hi") for i in range(5)]
    sends = [asyncio.create_task(channel.send(m)) for m in messages]
    # This polling runs on the event loop: it only makes progress if the sends do not block it.
    await eventually(lambda: gmail_server.in_flight == 5, "five sends in flight at the server together")
    hold.set()
    results = await asyncio.gather(*sends)
    assert 5 == gmail_server.most_in_flight
    assert [m.message_id for m in messages] == [r.message_id for r in results]
    assert 5 == len({r.provider_id for r in results})


async def test_max_concurrency_caps_the_calls_in_flight(gmail_server: GmailServer) -> None:
    gmail_server.hold_sends = hold = threading.Event()
    channel = GmailOAuthChannel(
        user_credentials(gmail_server), address=ADDRESS, api_endpoint=gmail_server.url, max_concurrency=2
    )
    async with channel:
        await channel.verify()
        sends = [
            asyncio.create_task(channel.send(Message(ADDRESS, ["b@example.net"], text=str(i))))
            for i in range(4)
        ]
        await eventually(lambda: gmail_server.in_flight == 2, "two sends in flight")
        await asyncio.sleep(0.05)
        assert 2 == gmail_server.in_flight
        hold.set()
        await asyncio.gather(*sends)
    assert 2 == gmail_server.most_in_flight
    assert 4 == len(gmail_server.sent)


async def test_gzip_answers_are_decoded(channel: GmailOAuthChannel, gmail_server: GmailServer) -> None:
    body = gzip.compress(json.dumps({"id": "gz1", "threadId": "gz1", "labelIds": ["SENT"]}).encode())
    gmail_server.fail_next(
        200, body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    result = await channel.send(MESSAGES["plain ascii"])
    assert "gz1" == result.provider_id


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_https_endpoints_are_verified_against_the_given_tls_context(
    certificate_authority: trustme.CA,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    with GmailServer(ADDRESS, tls=server_context) as server:
        assert server.url.startswith("https://")
        async with GmailOAuthChannel(
            user_credentials(server), address=ADDRESS, api_endpoint=server.url, tls_context=client_context
        ) as channel:
            await channel.send(MESSAGES["plain ascii"])
        assert 1 == len(server.sent)


async def test_an_untrusted_certificate_fails_before_anything_is_sent(
    certificate_authority: trustme.CA,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    with GmailServer(ADDRESS, tls=server_context) as server:
        async with GmailOAuthChannel(
            user_credentials(server), address=ADDRESS, api_endpoint=server.url
        ) as channel:
            # Not retried: every attempt would fail the same way until the trust is configured.
            with pytest.raises(PermanentError, match=r"certificate .* could not be verified") as caught:
                await channel.send(MESSAGES["plain ascii"])
        assert [] == server.sent
        assert ADDRESS in str(caught.value)


async def test_concurrent_first_sends_share_one_token_refresh(
    channel: GmailOAuthChannel, gmail_server: GmailServer
) -> None:
    messages = [Message(ADDRESS, [f"r{i}@example.net"], text="hi") for i in range(6)]
    await asyncio.gather(*(channel.send(m) for m in messages))
    assert 1 == len(gmail_server.token_requests)
    assert 6 == len(gmail_server.sent)
