"""A conformance kit for plugin authors: run the contract every Channel keeps against your own.

Subclass :class:`ChannelContract` in your test suite and say how to build your channel::

    from sendchannel.testing.conformance import ChannelContract

    class TestMyChannel(ChannelContract):
        sender = "app@example.com"          # an address the channel may send as
        recipient = "someone@example.net"   # where test messages go
        outside_sender = "stranger@elsewhere.example"  # an address outside its scope, or None

        def make_channel(self):
            return MyChannel(api_key="test", base_url=self.server_url)

        def delivered(self, channel):       # optional: how to see what arrived
            return my_test_server.messages

The tests need nothing but pytest: each runs its coroutine with :func:`asyncio.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sendchannel._channel import Channel
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope
from sendchannel.errors import InvalidMessageError, SenderNotAllowedError, SendError
from sendchannel.testing._store_conformance import StoreContract

__all__ = ["ChannelContract", "StoreContract"]

T = TypeVar("T")


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


class ChannelContract:
    """Tests every Channel must pass. Subclass it and set ``make_channel`` and the addresses."""

    sender: str = "sender@example.com"
    recipient: str = "recipient@example.net"
    #: An address the channel's scope does not allow, or None when the scope is unrestricted.
    outside_sender: str | None = "outsider@not-covered.example"

    def make_channel(self) -> Channel:
        """Build a fresh channel (override this)."""
        raise NotImplementedError("override make_channel() to build the channel under test")

    def delivered(self, channel: Channel) -> Sequence[Any] | None:
        """What the provider received so far, or None when it cannot be seen (override if you can)."""
        return None

    def message(self, **changes: Any) -> Message:
        fields: dict[str, Any] = {
            "to": [self.recipient],
            "subject": "conformance",
            "text": "Hello from the conformance kit.",
        }
        fields.update(changes)
        return Message(self.sender, **fields)

    def _with_channel(self, body: Callable[[Channel], Awaitable[T]]) -> T:
        async def main() -> T:
            channel = self.make_channel()
            async with channel:
                return await body(channel)

        return _run(main)

    def test_declares_name_scope_and_limits(self) -> None:
        channel = self.make_channel()
        assert isinstance(channel.name, str)
        assert channel.name
        assert isinstance(channel.scope, CredentialScope)
        assert isinstance(channel.limits, Limits)
        assert isinstance(channel, Channel)
        _run(channel.aclose)

    def test_send_returns_a_result_for_the_message(self) -> None:
        message = self.message()

        async def body(channel: Channel) -> SendResult:
            return await channel.send(message)

        result = self._with_channel(body)
        assert isinstance(result, SendResult)
        assert message.message_id == result.message_id
        assert self.recipient in result.accepted
        delivered = self.delivered(self.make_channel())
        if delivered is not None:
            assert len(delivered) >= 1

    def test_scope_is_checked_before_any_io(self) -> None:
        if self.outside_sender is None:
            return
        message = Message(self.outside_sender, [self.recipient], text="should not go")
        before = self.delivered(self.make_channel())

        async def body(channel: Channel) -> None:
            try:
                await channel.send(message)
            except SenderNotAllowedError:
                return
            raise AssertionError("a sender outside the scope was not refused with SenderNotAllowedError")

        self._with_channel(body)
        after = self.delivered(self.make_channel())
        if before is not None and after is not None:
            assert len(before) == len(after)

    def test_too_many_recipients_is_refused_before_sending(self) -> None:
        channel = self.make_channel()
        most = channel.limits.max_recipients_per_message
        _run(channel.aclose)
        if most is None:
            return
        local, _, domain = self.recipient.partition("@")
        message = self.message(to=[f"{local}+{i}@{domain}" for i in range(most + 1)])

        async def body(channel: Channel) -> None:
            try:
                await channel.send(message)
            except InvalidMessageError:
                return
            raise AssertionError("a message over max_recipients_per_message was not refused")

        self._with_channel(body)

    def test_errors_are_send_errors_without_secrets_in_repr(self) -> None:
        channel = self.make_channel()
        text = repr(channel) + str(channel)
        for secret in self.secrets():
            assert secret not in text, "a secret appears in the channel's repr or str"
        _run(channel.aclose)

    def secrets(self) -> Sequence[str]:
        """Secrets the channel was built with, which must never show (override to list them)."""
        return ()

    def test_verify_succeeds_with_good_credentials(self) -> None:
        async def body(channel: Channel) -> None:
            try:
                await channel.verify()
            except SendError as exc:  # pragma: no cover - reported to the plugin author
                raise AssertionError(f"verify() failed: {exc}") from exc

        self._with_channel(body)
