"""A provider plugin as a third party would write it: a channel and a URL factory."""

from __future__ import annotations

from typing import Any

from sendchannel import BaseChannel, CredentialScope, Limits, Message, Rate, SendResult

LOADED = True


class ExampleChannel(BaseChannel):
    name = "example"

    def __init__(self, domain: str, token: str, **options: Any) -> None:
        self.scope = CredentialScope.per_domain(domain)
        self.limits = Limits(Rate.per_minute(10), max_recipients_per_message=5)
        self._token = token
        self.options = options
        self.sent: list[Message] = []

    async def _send(self, message: Message) -> SendResult:
        self.sent.append(message)
        return SendResult(message.message_id, f"ex-{len(self.sent)}", message.recipients, channel=self.name)


def from_url(url: Any, **overrides: Any) -> ExampleChannel:
    return ExampleChannel(url.hostname, url.password or "", **overrides)
