"""The conformance kit every Channel passes, run against SparkpostChannel and the local SparkPost server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from sendchannel import Channel, SparkpostChannel
from sendchannel.testing.conformance import ChannelContract
from tests.sparkpost.server import API_KEY, Delivered, SparkpostServer


class TestSparkpostConforms(ChannelContract):
    sender = "app@example.com"
    recipient = "someone@example.net"
    outside_sender = "stranger@not-covered.example"

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        self.server = SparkpostServer().start()
        yield
        self.server.stop()

    def make_channel(self) -> Channel:
        return SparkpostChannel(API_KEY, domains=["example.com"], base_url=self.server.url)

    def delivered(self, channel: Channel) -> Sequence[Delivered]:
        return list(self.server.delivered)

    def secrets(self) -> Sequence[str]:
        return [API_KEY]
