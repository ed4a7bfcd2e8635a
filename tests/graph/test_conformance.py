"""The conformance kit every Channel passes, run unchanged against Office365GraphChannel and the local Graph
double, for a delegated mailbox and for an application (with Graph-shaped tokens, whose claims verify()
reads)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from sendchannel import Channel, Office365GraphChannel
from sendchannel.testing.conformance import ChannelContract
from tests.graph.conftest import ALICE, Tokens
from tests.graph.server import Delivered, GraphDouble, app_token, user_token

USER_TOKEN = user_token(ALICE, "Mail.Send")
APP_TOKEN = app_token("Mail.Send")


class TestDelegatedGraphConforms(ChannelContract):
    sender = ALICE
    recipient = "someone@fabrikam.com"
    outside_sender = "bob@contoso.com"

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with GraphDouble() as self.server:
            yield

    def make_channel(self) -> Channel:
        return Office365GraphChannel(ALICE, token_provider=Tokens(USER_TOKEN), base_url=self.server.url)

    def delivered(self, channel: Channel) -> Sequence[Delivered]:
        return list(self.server.delivered)

    def secrets(self) -> Sequence[str]:
        return [USER_TOKEN]


class TestApplicationGraphConforms(TestDelegatedGraphConforms):
    sender = "sales@contoso.com"
    outside_sender = "stranger@fabrikam.com"

    def make_channel(self) -> Channel:
        return Office365GraphChannel(domains=["contoso.com"], token_provider=Tokens(APP_TOKEN),
                                     base_url=self.server.url)

    def secrets(self) -> Sequence[str]:
        return [APP_TOKEN]
