"""Reading a TLS failure: a refused certificate is permanent; a connection closed mid-handshake is not."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from sendchannel.errors import PermanentError

__all__ = ["TLS_CLOSED", "tls_failure", "tls_refused"]

#: TLS errors that only mean the connection closed (or would block) during the handshake: the network
#: failed, not the configuration, so they are a lost connection like any other.
TLS_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def tls_failure(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (following causes and contexts), unless it is a closed connection."""
    seen = exc
    for _ in range(8):  # a client's error -> its transport's -> ssl: a short chain
        if seen is None:
            return None
        # aiohttp's connector errors carry the ssl error as certificate_error or os_error.
        for attribute in ("certificate_error", "os_error"):
            inner = getattr(seen, attribute, None)
            if isinstance(inner, ssl.SSLError) and inner is not seen:
                return None if isinstance(inner, TLS_CLOSED) else inner
        if isinstance(seen, ssl.SSLError):
            return None if isinstance(seen, TLS_CLOSED) else seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_refused(
    error: ssl.SSLError,
    *,
    what: str,
    outcome: str,
    remedy: str,
    scrub: Callable[[str], str] | None = None,
) -> PermanentError:
    """The error for a failed TLS handshake with ``what`` (``"SparkPost at https://..."``).

    Args:
        error: The TLS error.
        what: Who the handshake was with.
        outcome: What it means for the message (``"nothing was sent"``).
        remedy: How the user makes the certificate trusted (``"pass tls_context=..."``).
        scrub: A callable that removes secrets from text, or None.
    """
    reason = str(getattr(error, "verify_message", None) or error.reason or error)
    if scrub is not None:
        reason = scrub(reason)
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentError(
            f"The TLS certificate of {what} could not be verified ({reason}), so {outcome}. If the server "
            f"uses a private certificate authority, {remedy} (or set SSL_CERT_FILE); check the host name."
        )
    return PermanentError(
        f"The TLS handshake with {what} failed ({reason}), so {outcome}; check the URL (https:// for a TLS "
        "endpoint) and the TLS settings."
    )
