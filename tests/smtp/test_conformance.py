"""The conformance kit every Channel must pass, run against SmtpChannel and Office365Channel."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from sendchannel import Channel, Limits, Office365Channel, SmtpChannel
from sendchannel.testing.conformance import ChannelContract
from tests import sentinels
from tests.smtp.servers import Certificates, Office365Double, Received, SmtpServer


class TestSmtpChannelConforms(ChannelContract):
    sender = "app@example.com"
    recipient = "bob@example.net"
    outside_sender = None
    server: SmtpServer
    certificates: Certificates

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _server(cls, certificates: Certificates) -> Iterator[None]:
        server = SmtpServer(
            tls="starttls", certificates=certificates, credentials={"bob": sentinels.PASSWORD}
        )
        with server.in_thread():
            cls.server = server
            cls.certificates = certificates
            yield

    def make_channel(self) -> Channel:
        return SmtpChannel(
            "127.0.0.1",
            self.server.port,
            username="bob",
            password=sentinels.PASSWORD,
            tls_context=self.certificates.client_context(),
            limits=Limits(max_recipients_per_message=10),
        )

    def delivered(self, channel: Channel) -> Sequence[Received]:
        return self.server.messages

    def secrets(self) -> Sequence[str]:
        return (sentinels.PASSWORD,)


class TestOffice365ChannelConforms(ChannelContract):
    sender = "alice@contoso.com"
    recipient = "bob@fabrikam.com"
    outside_sender = "mallory@contoso.com"
    double: Office365Double
    certificates: Certificates

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _double(cls, certificates: Certificates) -> Iterator[None]:
        double = Office365Double(certificates=certificates, mailboxes={cls.sender: sentinels.PASSWORD})
        with double.in_thread():
            cls.double = double
            cls.certificates = certificates
            yield

    def make_channel(self) -> Channel:
        return Office365Channel(
            self.sender,
            password=sentinels.PASSWORD,
            host="127.0.0.1",
            port=self.double.port,
            tls_context=self.certificates.client_context(),
        )

    def delivered(self, channel: Channel) -> Sequence[Received]:
        return self.double.messages

    def secrets(self) -> Sequence[str]:
        return (sentinels.PASSWORD,)
