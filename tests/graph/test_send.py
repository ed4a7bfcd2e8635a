"""Office365GraphChannel sending through the local Graph double: the request, the scopes, the mailbox's 4
requests in flight, a fresh token after a 401, and a connection lost after the request was written."""

from __future__ import annotations

import asyncio
import base64

import pytest

from sendchannel import (
    AuthenticationError,
    DeliveryUnknownError,
    Message,
    Office365GraphChannel,
    SenderNotAllowedError,
)
from sendchannel._graph._submission import submitted_mime
from tests import sentinels
from tests.graph.conftest import ALICE, Tokens
from tests.graph.server import DROP, GARBAGE, INVALID_TOKEN, GraphDouble


async def test_a_delegated_send_posts_the_messages_own_mime_as_base64_to_me_sendmail(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    message = Message(f"Alice <{ALICE}>", ["bob@fabrikam.com"], cc=["carol@fabrikam.com"],
                      bcc=["dave@fabrikam.com"], subject="Quarterly report", text="Attached.\n")
    result = await alice.send(message)

    [request] = graph.received
    assert ("POST", "/v1.0/me/sendMail") == (request.method, request.path)
    assert f"Bearer {sentinels.TOKEN}" == request.headers["authorization"]
    assert "text/plain" == request.headers["content-type"]
    assert b"Bcc: dave@fabrikam.com\r\n" + message.as_bytes() == base64.b64decode(request.body)
    [delivered] = graph.delivered
    assert ["bob@fabrikam.com", "carol@fabrikam.com", "dave@fabrikam.com"] == delivered.recipients
    assert (message.message_id, None, "msgraph") == (result.message_id, result.provider_id, result.channel)
    assert ("bob@fabrikam.com", "carol@fabrikam.com", "dave@fabrikam.com") == result.accepted
    assert {} == dict(result.rejected)


async def test_a_message_without_bcc_goes_exactly_as_rendered(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    message = Message(ALICE, ["bob@fabrikam.com"], subject="Hi", text="x", html="<p>x</p>")
    await alice.send(message)
    assert message.as_bytes() == graph.delivered[0].mime
    assert message.as_bytes() == submitted_mime(message)


async def test_a_delegated_channel_sends_as_a_declared_send_as_address(graph: GraphDouble) -> None:
    graph.send_as[ALICE].add("sales@contoso.com")
    channel = Office365GraphChannel(ALICE, token_provider=Tokens(), send_as=["sales@contoso.com"],
                                    base_url=graph.url)
    async with channel:
        await channel.send(Message("Sales <sales@contoso.com>", ["bob@fabrikam.com"], text="offer"))
    assert ["/v1.0/me/sendMail"] == [r.path for r in graph.received]
    assert "Sales <sales@contoso.com>" == graph.delivered[0].header("From")


async def test_an_application_sends_as_each_senders_own_mailbox(
    graph: GraphDouble, app: Office365GraphChannel
) -> None:
    await app.send(Message("alice@contoso.com", ["x@fabrikam.com"], text="1"))
    await app.send(Message("Bob <bob@contoso.com>", ["x@fabrikam.com"], text="2"))
    paths = [r.path for r in graph.received]
    assert ["/v1.0/users/alice@contoso.com/sendMail", "/v1.0/users/bob@contoso.com/sendMail"] == paths
    assert ["alice@contoso.com", "bob@contoso.com"] == [d.mailbox for d in graph.delivered]


@pytest.mark.parametrize(
    ("which", "sender"),
    [("alice", "bob@contoso.com"), ("app", "mallory@fabrikam.com")],
    ids=["delegated-other-mailbox", "application-other-domain"],
)
async def test_a_sender_outside_the_scope_is_refused_before_any_request(
    graph: GraphDouble, alice: Office365GraphChannel, app: Office365GraphChannel, which: str, sender: str
) -> None:
    channel = alice if which == "alice" else app
    with pytest.raises(SenderNotAllowedError, match=f"cannot send as {sender}"):
        await channel.send(Message(sender, ["x@fabrikam.com"], text="no"))
    assert [] == graph.received


async def test_at_most_four_requests_are_in_flight_for_one_mailbox() -> None:
    """The double holds each request until four are in flight; a fifth would be refused
    (MailboxConcurrency)."""
    with GraphDouble(hold_until=4) as graph:
        graph.grant(sentinels.TOKEN, mailbox=ALICE)
        channel = Office365GraphChannel(ALICE, token_provider=Tokens(), base_url=graph.url)
        async with channel:
            messages = [Message(ALICE, ["x@fabrikam.com"], text=str(i)) for i in range(12)]
            await asyncio.gather(*(channel.send(m) for m in messages))
    assert 4 == graph.most_in_flight[ALICE]
    assert 12 == len(graph.delivered)


async def test_an_application_keeps_four_in_flight_per_mailbox_not_four_in_all() -> None:
    with GraphDouble(hold_until=4) as graph:
        graph.grant(sentinels.TOKEN)
        channel = Office365GraphChannel(domains=["contoso.com"], token_provider=Tokens(), base_url=graph.url)
        async with channel:
            messages = [Message(sender, ["x@fabrikam.com"], text=str(i))
                        for i in range(8) for sender in ("alice@contoso.com", "bob@contoso.com")]
            await asyncio.gather(*(channel.send(m) for m in messages))
    assert {"alice@contoso.com": 4, "bob@contoso.com": 4} == dict(graph.most_in_flight)
    assert 16 == len(graph.delivered)


async def test_a_refused_token_is_invalidated_and_the_send_tried_once_more_with_a_fresh_one(
    graph: GraphDouble,
) -> None:
    graph.revoke(sentinels.TOKEN)
    fresh = graph.grant(sentinels.TOKEN + "-fresh", mailbox=ALICE)
    tokens = Tokens(sentinels.TOKEN, fresh)
    channel = Office365GraphChannel(ALICE, token_provider=tokens, base_url=graph.url)
    async with channel:
        await channel.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert 1 == tokens.invalidated
    presented = [r.headers["authorization"] for r in graph.received]
    assert [f"Bearer {sentinels.TOKEN}", f"Bearer {fresh}"] == presented
    assert 1 == len(graph.delivered)


async def test_a_token_refused_twice_is_an_authentication_error_after_exactly_two_requests(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    graph.script(INVALID_TOKEN, times=2)
    refused = r"refused the access token for alice@contoso\.com"
    with pytest.raises(AuthenticationError, match=refused) as caught:
        await alice.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert 2 == len(graph.received)
    assert "also after a fresh token" in str(caught.value)
    assert (401, "InvalidAuthenticationToken") == (caught.value.code, caught.value.enhanced_code)


async def test_a_token_provider_that_fails_is_an_authentication_error_and_nothing_is_sent(
    graph: GraphDouble,
) -> None:
    async def broken() -> str:
        raise OSError(f"cannot read {sentinels.CLIENT_SECRET}")

    channel = Office365GraphChannel(ALICE, token_provider=broken, base_url=graph.url)
    async with channel:
        failed = r"token_provider of msgraph failed \(OSError\)"
        with pytest.raises(AuthenticationError, match=failed) as caught:
            await channel.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert [] == sentinels.leaked(repr(caught.value) + str(caught.value))
    assert [] == graph.received


async def test_a_connection_dropped_after_sendmail_was_read_is_an_unknown_outcome(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    graph.script(DROP)
    message = Message(ALICE, ["x@fabrikam.com"], text="hi")
    with pytest.raises(DeliveryUnknownError, match="may or may not have accepted it") as caught:
        await alice.send(message)
    assert message.message_id in str(caught.value)
    assert "Sent Items" in str(caught.value)
    assert 1 == len(graph.received)


async def test_a_closed_channel_refuses_to_send(graph: GraphDouble) -> None:
    channel = Office365GraphChannel(ALICE, token_provider=Tokens(), base_url=graph.url)
    await channel.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await channel.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))


async def test_a_reply_that_is_not_http_is_an_unknown_outcome_whose_cause_keeps_no_token(
    graph: GraphDouble, alice: Office365GraphChannel
) -> None:
    """aiohttp's parse error carries the request's headers (the bearer token): it must not be chained."""
    graph.script(GARBAGE)
    with pytest.raises(DeliveryUnknownError) as caught:
        await alice.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    cause = caught.value.__cause__
    assert [] == sentinels.leaked(f"{cause!r} {cause}")


async def test_a_token_providers_own_send_error_passes_through_unchanged(graph: GraphDouble) -> None:
    refused = AuthenticationError("Microsoft refused the token request (invalid_grant: ...); sign in again.")

    async def revoked() -> str:
        raise refused

    channel = Office365GraphChannel(ALICE, token_provider=revoked, base_url=graph.url, name="alice-graph")
    async with channel:
        with pytest.raises(AuthenticationError) as caught:
            await channel.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert refused is caught.value
    assert "alice-graph" == caught.value.channel
    assert [] == graph.received


async def test_a_token_provider_returning_no_string_is_an_authentication_error(graph: GraphDouble) -> None:
    async def nothing() -> str:
        return None  # type: ignore[return-value]

    channel = Office365GraphChannel(ALICE, token_provider=nothing, base_url=graph.url)
    async with channel:
        with pytest.raises(AuthenticationError, match="returned NoneType instead of an access token"):
            await channel.send(Message(ALICE, ["x@fabrikam.com"], text="hi"))
    assert [] == graph.received
