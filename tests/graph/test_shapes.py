"""Hypothesis over the message shapes that reach Graph: what the double decodes from the base64 body is the
message's own MIME (``Message.as_bytes()``) with a Bcc header in front naming every Bcc recipient, and the
double takes it (202) as a message from the mailbox."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendchannel import Message, Office365GraphChannel
from tests import sentinels, strategies
from tests.graph.conftest import ALICE, Tokens
from tests.graph.server import GraphDouble


@pytest.fixture(scope="module")
def shared_graph() -> Iterator[GraphDouble]:
    with GraphDouble() as double:
        double.grant(sentinels.TOKEN, mailbox=ALICE)
        yield double


senders = st.sampled_from([ALICE, "Alice <alice@contoso.com>", '"Ålice Ünïcode, CFO" <alice@contoso.com>'])


def _split_bcc(mime: bytes) -> tuple[bytes, bytes]:
    """The leading Bcc header (with its folded lines) and the rest."""
    if not mime.startswith(b"Bcc:"):
        return b"", mime
    end = 0
    while True:
        end = mime.index(b"\r\n", end) + 2
        if mime[end : end + 1] not in (b" ", b"\t"):
            return mime[:end], mime[end:]


@given(message=strategies.messages(), sender=senders)
def test_what_graph_decodes_is_the_messages_own_mime_plus_its_bcc_header(
    shared_graph: GraphDouble, message: Message, sender: str
) -> None:
    message = message.evolve(sender=sender)
    before = len(shared_graph.received)

    async def send() -> None:
        channel = Office365GraphChannel(ALICE, token_provider=Tokens(), base_url=shared_graph.url)
        async with channel:
            await channel.send(message)

    asyncio.run(send())
    request = shared_graph.received[before]
    decoded = base64.b64decode(request.body, validate=True)
    bcc, rest = _split_bcc(decoded)
    assert message.as_bytes() == rest
    parsed = email.message_from_bytes(bcc + b"\r\n", policy=email.policy.default)
    named = [a.addr_spec.lower() for a in getattr(parsed["Bcc"], "addresses", ())] if bcc else []
    assert [a.addr_spec.lower() for a in message.parsed("bcc")] == named
    assert shared_graph.delivered[-1].mime == decoded
