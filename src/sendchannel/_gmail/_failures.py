"""Gmail failures that are not HTTP answers: lost connections, TLS, the token endpoint, refused refreshes.

Each function returns the SendError for one kind of failure, for the account ``account``, with
Google's words passed through ``scrub`` (which removes the credentials' secrets).
"""

from __future__ import annotations

from collections.abc import Callable

import google.auth.exceptions

from sendchannel._gmail._transport import AnswerLost, NotSent, TlsRefused, TokenEndpointFailed, describe
from sendchannel._http import tls_refused
from sendchannel.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    SendError,
    ThrottledError,
    TransientError,
)

__all__ = ["translate", "unreadable"]

Scrub = Callable[[str], str]


def translate(exc: BaseException, operation: str, *, account: str, scrub: Scrub, robot: bool) -> SendError:
    """The error for a failure of the transport or of google-auth (``robot``: a service account)."""
    detail = scrub(describe(exc))
    refused = exc if isinstance(exc, TlsRefused) else exc.__cause__
    if isinstance(refused, TlsRefused):
        server = "Google's token endpoint" if refused is not exc else "Gmail's server"
        return tls_refused(
            refused.error,
            what=f"{server} {refused.where}",
            outcome=f"nothing was sent for {account}",
            remedy="pass tls_context=ssl.create_default_context(cafile=...)",
            scrub=scrub,
        )
    if isinstance(exc, TokenEndpointFailed):
        return _token_endpoint_failed(exc, account=account, scrub=scrub)
    if isinstance(exc, NotSent):
        return ConnectionLostError(
            f"Could not reach Gmail for {account} ({detail}); nothing was sent, so trying again is safe."
        )
    if isinstance(exc, AnswerLost):
        if operation != "send":
            return ConnectionLostError(
                f"The connection to Gmail was lost while waiting for an answer for {account} ({detail}); "
                "try again."
            )
        return DeliveryUnknownError(
            f"The connection to Gmail was lost after the message for {account} was handed over "
            f"({detail}), so it may or may not have been sent; check the Sent folder before sending "
            "it again."
        )
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return _refresh_failed(exc, account=account, scrub=scrub, robot=robot)
    if isinstance(exc, google.auth.exceptions.TransportError):
        return ConnectionLostError(
            f"Could not reach Google's token endpoint to refresh the access token for {account} "
            f"({detail}); nothing was sent, so trying again is safe."
        )
    return AuthenticationError(
        f"Google could not authorise the request for {account} ({detail}); check the credentials."
    )


def _token_endpoint_failed(exc: TokenEndpointFailed, *, account: str, scrub: Scrub) -> SendError:
    said = scrub(str(exc.args[0] if exc.args else exc.status))
    if exc.status == 429:
        return ThrottledError(
            f"Google's token endpoint asked to slow down while refreshing the token for {account} "
            f"({said}); nothing was sent, so trying again later is safe.",
            code=429,
            retry_after=exc.retry_after,
            reply=said,
        )
    if exc.status >= 500 or exc.status in (200, 408):
        what = "gave an answer that is not a token" if exc.status == 200 else "failed for now"
        return TransientError(
            f"Google's token endpoint {what} while refreshing the token for {account} ({said}); "
            "nothing was sent, so trying again is safe.",
            code=exc.status,
            retry_after=exc.retry_after,
            reply=said,
        )
    return AuthenticationError(
        f"Google's token endpoint refused to refresh the token for {account} with an answer that is "
        f"not OAuth ({said}); check the credentials' token_uri.",
        code=exc.status,
        reply=said,
    )


def _refresh_failed(
    exc: google.auth.exceptions.RefreshError, *, account: str, scrub: Scrub, robot: bool
) -> SendError:
    text = scrub(" ".join(str(exc.args[0] if exc.args else exc).split()))[:500]
    if robot and ("invalid_grant" in text or "unauthorized_client" in text):
        return AuthenticationError(
            f"Google refused a token for the service account acting as {account} ({text}). The "
            "Workspace administrator must allow the service account's client ID the gmail.send "
            "scope (domain-wide delegation), and the account must exist.",
            enhanced_code=text.partition(":")[0] or None,
            reply=text,
        )
    if "invalid_grant" in text:
        return AuthenticationError(
            f"Google refused to refresh the access token for {account} ({text}): the grant was revoked "
            "or has expired, so the user must connect their Gmail account again.",
            code=400,
            enhanced_code="invalid_grant",
            reply=text,
        )
    if getattr(exc, "retryable", False):
        return TransientError(
            f"Google's token endpoint failed for now while refreshing the token for {account} ({text}); "
            "nothing was sent, so trying again is safe.",
            reply=text,
        )
    return AuthenticationError(
        f"Google refused to refresh the access token for {account} ({text}); check the OAuth client "
        "ID and secret, or have the user connect their Gmail account again.",
        reply=text,
    )


def unreadable(exc: BaseException, operation: str, *, account: str, scrub: Scrub) -> SendError:
    """The error for an answer Google's client could not use: for a send, it may have gone out."""
    detail = scrub(describe(exc))[:300]
    if operation != "send":
        return TransientError(
            f"Gmail's answer for {account} could not be read ({detail}); try again."
        )
    return DeliveryUnknownError(
        f"Gmail's answer to the message for {account} could not be read ({detail}), so it may "
        "have been sent; check the Sent folder before sending it again."
    )
