"""Gmail's own transport reads TLS failures as the shared HTTP base does."""

from __future__ import annotations

import http.client
import ssl

import pytest

from sendchannel._gmail._transport import NotSent, TlsRefused, Transport


@pytest.mark.parametrize(
    "closed", [ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError, ssl.SSLZeroReturnError]
)
def test_a_handshake_cut_short_is_a_lost_connection_not_a_refused_certificate(
    closed: type[ssl.SSLError], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSLWantRead/WriteError used to count as a closed connection for SparkPost only; Gmail now agrees."""

    def connect(self: http.client.HTTPSConnection) -> None:
        raise closed()

    monkeypatch.setattr(http.client.HTTPSConnection, "connect", connect)
    transport = Transport(None, timeout=5.0, tls_context=ssl.create_default_context())  # type: ignore[arg-type]
    with pytest.raises(NotSent) as caught:
        transport.exchange("https://127.0.0.1:9/gmail/v1/users/me/profile", "GET", None, {})
    assert not isinstance(caught.value, TlsRefused)


def test_a_refused_certificate_is_still_a_refused_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(self: http.client.HTTPSConnection) -> None:
        raise ssl.SSLCertVerificationError(1, "certificate verify failed")

    monkeypatch.setattr(http.client.HTTPSConnection, "connect", connect)
    transport = Transport(None, timeout=5.0, tls_context=ssl.create_default_context())  # type: ignore[arg-type]
    with pytest.raises(TlsRefused):
        transport.exchange("https://127.0.0.1:9/gmail/v1/users/me/profile", "GET", None, {})
