"""Messages whose request would pass 4 MB go through a draft, upload sessions and /send, and arrive whole:
every attachment byte-identical, the chunks within Graph's rules, the upload URL without a bearer token."""

from __future__ import annotations

import base64
import json
import random

import pytest

from sendchannel import (
    Attachment,
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    Message,
    MessageRejectedError,
    Office365GraphChannel,
    PermanentError,
    TransientError,
)
from sendchannel._graph._submission import CHUNK, MAX_REQUEST, UPLOAD_ABOVE
from tests import sentinels
from tests.graph.conftest import ALICE, Tokens
from tests.graph.server import CHUNK_UNIT, DROP, Answer, GraphDouble, error

MB = 1024 * 1024


def _bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def readwrite(graph: GraphDouble) -> GraphDouble:
    """Alice's token also holds Mail.ReadWrite, which the draft path needs."""
    graph.grant(sentinels.TOKEN, mailbox=ALICE, permissions=("Mail.Send", "Mail.ReadWrite"))
    return graph


async def test_a_large_message_arrives_whole_through_a_draft_and_upload_sessions(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    files = {
        "video.mp4": _bytes(9 * MB + 123, 1),  # three chunks, the last one short
        "scan.pdf": _bytes(UPLOAD_ABOVE + 1, 2),  # just over 3 MB: an upload session
        "notes.txt": _bytes(200_000, 3),  # small: inside the draft's MIME
        "photo.jpg": _bytes(2 * MB, 4),  # small, but not all small ones fit the draft: a fileAttachment
        "chart.png": _bytes(2 * MB, 5),
    }
    message = Message(f"Alice <{ALICE}>", ["bob@fabrikam.com"], bcc=["carol@fabrikam.com"],
                      subject="Everything", text="See attached.\n",
                      attachments=[Attachment(name, data) for name, data in files.items()])
    result = await alice.send(message)

    [delivered] = readwrite.delivered
    assert "draft" == delivered.via
    assert files == {name: data for name, _kind, data in delivered.attachments}
    assert 5 == len(delivered.attachments)
    assert ["bob@fabrikam.com", "carol@fabrikam.com"] == delivered.recipients
    assert message.message_id == delivered.internet_message_id == result.provider_id
    assert message.message_id == result.message_id
    assert ("bob@fabrikam.com", "carol@fabrikam.com") == result.accepted
    paths = [r.path.split("?")[0] for r in readwrite.received]
    assert "/v1.0/me/messages" == paths[0]
    assert paths[-1].endswith("/send")
    assert 2 == sum(p.endswith("/createUploadSession") for p in paths)
    assert ({}, []) == (readwrite.drafts, readwrite.deleted)


async def test_every_request_stays_within_4_mb_and_chunks_follow_graphs_rules(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    big = _bytes(10 * MB, 6)
    await alice.send(Message(ALICE, ["bob@fabrikam.com"], text="big",
                             attachments=[Attachment("big.bin", big)]))
    assert all(len(r.body) <= MAX_REQUEST for r in readwrite.received)
    puts = [r for r in readwrite.received if r.method == "PUT"]
    sizes = [len(r.body) for r in puts]
    assert all(size % CHUNK_UNIT == 0 for size in sizes[:-1])
    assert sum(sizes) == len(big)
    assert CHUNK == sizes[0]
    ranges = [r.headers["content-range"] for r in puts]
    expected = ["bytes 0-3932159/10485760", "bytes 3932160-7864319/10485760",
                "bytes 7864320-10485759/10485760"]
    assert expected == ranges
    assert all("authorization" not in r.headers for r in puts)
    [upload] = readwrite.uploads.values()
    assert {"attachmentType": "file", "name": "big.bin", "size": len(big),
            "contentType": "application/octet-stream"} == upload.item


async def test_a_large_inline_image_keeps_its_content_id(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    image = _bytes(4 * MB, 7)
    message = Message(ALICE, ["bob@fabrikam.com"], html='<img src="cid:logo@x">',
                      attachments=[Attachment("logo.png", image, "image/png", inline=True,
                                              content_id="logo@x")])
    await alice.send(message)
    [upload] = readwrite.uploads.values()
    assert (True, "logo@x") == (upload.item["isInline"], upload.item["contentId"])
    assert [("logo.png", "image/png", image)] == readwrite.delivered[0].attachments


async def test_the_draft_mime_is_the_message_without_the_uploaded_attachments_plus_bcc(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    message = Message(ALICE, ["bob@fabrikam.com"], bcc=["eve@fabrikam.com"], subject="s", text="t",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 8)), Attachment("b.txt", b"small")])
    await alice.send(message)
    draft = readwrite.requests_to("/me/messages")[0]
    mime = base64.b64decode(draft.body)
    assert mime.startswith(b"Bcc: eve@fabrikam.com\r\n")
    assert b"b.txt" in mime
    assert b"a.bin" not in mime


async def test_without_mail_readwrite_the_draft_path_is_an_authentication_error_naming_it(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    message = Message(ALICE, ["bob@fabrikam.com"], text="x",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 9))])
    with pytest.raises(AuthenticationError, match=r"Mail\.ReadWrite") as caught:
        await alice.send(message)
    assert "over 4 MB go through a draft" in str(caught.value)
    assert [] == graph.delivered


async def test_a_failed_upload_deletes_the_draft_and_keeps_the_upload_url_out_of_the_error(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    # The first session's upload URL (ids count from 1: draft, session). aiohttp tries an idempotent PUT
    # once more on a fresh connection when a kept-alive one drops, so it is dropped twice.
    readwrite.script(DROP, times=2, on="/upload/s2")
    message = Message(ALICE, ["bob@fabrikam.com"], text="x",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 10))])
    with pytest.raises(ConnectionLostError) as caught:
        await alice.send(message)
    assert "authtoken" not in str(caught.value)
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value))
    assert 1 == len(readwrite.deleted)
    assert [] == readwrite.delivered


async def test_a_connection_dropped_at_send_of_the_draft_is_an_unknown_outcome(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    readwrite.script(DROP, on="/send")
    message = Message(ALICE, ["bob@fabrikam.com"], text="x",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 11))])
    with pytest.raises(DeliveryUnknownError, match="may or may not have accepted it"):
        await alice.send(message)
    assert [] == readwrite.deleted


async def test_a_body_over_4_mb_without_attachments_is_refused_before_any_request(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    message = Message(ALICE, ["bob@fabrikam.com"], text="x" * (4 * MB))
    with pytest.raises(MessageRejectedError, match="more than the 4 MB"):
        await alice.send(message)
    assert [] == readwrite.received


async def test_an_application_channel_makes_the_draft_in_the_senders_mailbox(graph: GraphDouble) -> None:
    graph.grant(sentinels.TOKEN, permissions=("Mail.Send", "Mail.ReadWrite"))
    channel = Office365GraphChannel(domains=["contoso.com"], token_provider=Tokens(), base_url=graph.url)
    async with channel:
        await channel.send(Message("bob@contoso.com", ["x@fabrikam.com"], text="x",
                                   attachments=[Attachment("a.bin", _bytes(5 * MB, 12))]))
    assert graph.received[0].path == "/v1.0/users/bob@contoso.com/messages"
    assert "bob@contoso.com" == graph.delivered[0].mailbox


async def test_small_inline_images_that_do_not_fit_the_draft_keep_their_content_id(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    images = [
        Attachment(f"i{n}.png", _bytes(1_500_000, 20 + n), "image/png", inline=True, content_id=f"i{n}@x")
        for n in range(3)
    ]
    await alice.send(Message(ALICE, ["bob@fabrikam.com"], html="<p>pictures</p>", attachments=images))
    [draft] = [r for r in readwrite.received if r.path.endswith("/attachments")][:1]
    added = json.loads(draft.body)
    assert (True, "image/png") == (added["isInline"], added["contentType"])
    assert added["contentId"] in {"i0@x", "i1@x", "i2@x"}
    arrived = {name: data for name, _kind, data in readwrite.delivered[0].attachments}
    assert {a.filename: a.content for a in images} == arrived


async def test_an_attachment_whose_json_would_pass_4_mb_goes_through_an_upload_session(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    """Just under 3 MiB: small enough for the draft's packing, too large as a fileAttachment in JSON."""
    near = _bytes(UPLOAD_ABOVE - 20, 30)
    other = _bytes(2_000_000, 31)
    await alice.send(Message(ALICE, ["bob@fabrikam.com"], text="x",
                             attachments=[Attachment("near.bin", near), Attachment("other.bin", other)]))
    [upload] = readwrite.uploads.values()
    assert ("near.bin", len(near)) == (upload.item["name"], upload.item["size"])
    arrived = {name: data for name, _kind, data in readwrite.delivered[0].attachments}
    assert {"near.bin": near, "other.bin": other} == arrived


@pytest.mark.parametrize(
    ("on", "answer", "says"),
    [
        ("/me/messages", Answer(201, body={"isDraft": True}), "made a draft .* but its answer has no id"),
        ("/createUploadSession", Answer(201, body={"expirationDateTime": "2030-01-01T00:00:00Z"}),
         "without an upload URL"),
        ("/upload/s2", error(400, "InvalidContentRange", "The Content-Range header is malformed."),
         "refused the message"),
    ],
    ids=["draft-without-id", "session-without-url", "chunk-refused"],
)
async def test_a_draft_path_answer_graph_should_not_give_fails_before_sending(
    readwrite: GraphDouble, alice: Office365GraphChannel, on: str, answer: Answer, says: str
) -> None:
    readwrite.script(answer, on=on)
    message = Message(ALICE, ["bob@fabrikam.com"], text="x",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 32))])
    with pytest.raises(PermanentError, match=says) as caught:
        await alice.send(message)
    assert [] == sentinels.leaked(str(caught.value) + repr(caught.value) + str(caught.value.reply))
    assert [] == readwrite.delivered
    assert [] == readwrite.requests_to("/send")


async def test_a_draft_that_cannot_be_deleted_leaves_the_first_error_standing(
    readwrite: GraphDouble, alice: Office365GraphChannel
) -> None:
    readwrite.script(error(500, "InternalServerError", "Upload failed."), on="/upload/s2")
    readwrite.script(DROP, times=2, on="AAMkAD0001=")  # the DELETE of the draft
    message = Message(ALICE, ["bob@fabrikam.com"], text="x",
                      attachments=[Attachment("a.bin", _bytes(5 * MB, 33))])
    with pytest.raises(TransientError, match="failed for now"):
        await alice.send(message)
    assert [] == readwrite.deleted
