"""The conformance kit, run against FakeChannel as a plugin author would run it against theirs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sendchannel import Channel, CredentialScope, Limits, Message, SendResult
from sendchannel.testing import FakeChannel
from sendchannel.testing.conformance import ChannelContract

_shared = FakeChannel(
    scope=CredentialScope.per_domain("example.com"), limits=Limits(max_recipients_per_message=3)
)


class TestFakeChannelConforms(ChannelContract):
    sender = "app@example.com"

    def make_channel(self) -> Channel:
        _shared.closed = False
        return _shared

    def delivered(self, channel: Channel) -> Sequence[Message]:
        return _shared.outbox


class _Careless(FakeChannel):
    """A channel that skips the scope check: the kit must catch it."""

    async def send(self, message: Message) -> SendResult:
        return await self._send(message)


def test_the_kit_fails_a_channel_that_skips_the_scope_check() -> None:
    class Contract(ChannelContract):
        def make_channel(self) -> Channel:
            return _Careless(scope=CredentialScope.per_domain("example.com"))

    with pytest.raises(AssertionError, match="not refused with SenderNotAllowedError"):
        Contract().test_scope_is_checked_before_any_io()
