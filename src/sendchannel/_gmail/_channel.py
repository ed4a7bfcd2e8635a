"""GmailOAuthChannel: send through the Gmail API with the account owner's OAuth grant.

Google's client (google-api-python-client) builds each request from the discovery document it ships, so
nothing is fetched at build time; google-auth credentials supply and refresh the access token. The client
is synchronous, so every call runs on a worker thread of the channel's own executor.

The client's usual transport, httplib2, sends a request again, POST included, when the connection drops
before the answer: for ``users.messages.send`` that can deliver a message twice. This module therefore
gives the client its own transport (:class:`_Transport`): one fresh connection per request, no keep-alive
reuse and no silent retry. A connection that fails before the whole request is written means nothing was
sent (:class:`~sendchannel.errors.ConnectionLostError`); a connection lost after it was written means the
outcome is unknown (:class:`~sendchannel.errors.DeliveryUnknownError`). The only request the transport
repeats is one answered 401, after refreshing the token: Gmail acted on nothing it answered 401.

Google's error answers are classified by the table :data:`_RULES`, next to :func:`_classify`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import email.utils
import functools
import http.client
import json
import logging
import math
import os
import re
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, cast

import attrs
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.oauth2.credentials
import google.oauth2.service_account
import httplib2
from google.auth.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import Error as GoogleClientError
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaInMemoryUpload

from sendchannel._channel import BaseChannel
from sendchannel._limits import Limits, Rate
from sendchannel._message import Message
from sendchannel._mime import render
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._urls import redact_url
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    DeliveryUnknownError,
    InvalidMessageError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)

__all__ = ["CREDENTIALS_ENV", "GMAIL_SEND_SCOPE", "GmailOAuthChannel"]

logger = logging.getLogger("sendchannel.gmail")

T = TypeVar("T")

#: The narrowest OAuth scope that lets an application send mail as the user.
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
#: Scopes that include sending (the Gmail API accepts ``users.messages.send`` with any of them).
_SEND_SCOPES = frozenset(
    {
        GMAIL_SEND_SCOPE,
        "https://mail.google.com/",
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/gmail.modify",
    }
)
#: The environment variable ``gmail://`` URLs read the credentials from when the URL names none: a path
#: to an authorised-user (or service-account) JSON file, or that JSON itself.
CREDENTIALS_ENV = "SENDCHANNEL_GMAIL_CREDENTIALS"

_DEFAULT_ENDPOINT = "https://gmail.googleapis.com/"
#: Messages up to this size (rendered MIME) go as ``{"raw": base64url}`` in a JSON body; larger ones as a
#: one-request multipart upload to the ``/upload`` path, which takes up to 35 MB. Google limits the size
#: of JSON request bodies (some accounts answer "Request payload size exceeds the limit: 1048576 bytes"),
#: and base64 adds a third, so the JSON form is kept well below 1 MiB.
_JSON_RAW_MAX_BYTES = 512 * 1024
#: The largest message users.messages.send takes (the discovery document's maxSize: 35 MB).
_MAX_MESSAGE_BYTES = 36_700_160
_PACIFIC = "America/Los_Angeles"


# -- transport ------------------------------------------------------------------------------------


class _NotSent(Exception):
    """The connection failed before the whole request was written: the server acted on nothing."""


class _TlsRefused(_NotSent):
    """The TLS handshake failed: the certificate could not be verified, or no common protocol."""

    def __init__(self, where: str, error: ssl.SSLError) -> None:
        super().__init__(f"{where}: {_describe(error)}")
        self.where = where
        self.error = error


class _AnswerLost(Exception):
    """The request was written, then the connection failed before a whole answer came back."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decoded(content: bytes, encoding: str | None) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(content, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)
    return content


class _Transport:
    """What Google's client needs of an ``httplib2.Http``, without its silent re-sends.

    Each request gets a fresh connection that is closed after the answer, so no state is shared between
    threads and no stale keep-alive connection can make a lost answer look like a harmless failure. The
    access token is refreshed under a lock when it has expired, and once after a 401.
    """

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        *,
        timeout: float,
        tls_context: ssl.SSLContext,
    ) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._tls_context = tls_context
        self._lock = threading.Lock()
        self._token_request = _TokenRequest(self)

    # The signature of httplib2.Http.request, which googleapiclient calls.
    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        redirections: int = 5,
        connection_type: object = None,
    ) -> tuple[httplib2.Response, bytes]:
        """Send one request with a bearer token; refresh the token and repeat once after a 401."""
        sent_headers = dict(headers or {})
        token = self._authorise(sent_headers)
        response, content = self.exchange(uri, method, body, sent_headers)
        if response.status == 401:
            # Gmail acted on nothing it answered 401, so sending the request again is safe.
            self._refresh_unless_changed(token)
            self._authorise(sent_headers)
            response, content = self.exchange(uri, method, body, sent_headers)
        return response, content

    def _authorise(self, headers: dict[str, str]) -> str | None:
        credentials = self._credentials
        with self._lock:
            if not credentials.valid:
                credentials.refresh(self._token_request)  # type: ignore[no-untyped-call]
            credentials.apply(headers)  # type: ignore[no-untyped-call]
            token: str | None = credentials.token
            return token

    def _refresh_unless_changed(self, used: str | None) -> None:
        credentials = self._credentials
        with self._lock:
            # Another thread may have refreshed it already after its own 401.
            if credentials.token == used:
                credentials.refresh(self._token_request)  # type: ignore[no-untyped-call]

    def refresh(self) -> None:
        """Refresh the access token now (used by ``verify`` when the token is still valid)."""
        with self._lock:
            self._credentials.refresh(self._token_request)  # type: ignore[no-untyped-call]

    def exchange(
        self, uri: str, method: str, body: bytes | str | None, headers: Mapping[str, str]
    ) -> tuple[httplib2.Response, bytes]:
        """One request on one new connection, with no retry of any kind.

        Raises:
            _NotSent: The connection failed before the whole request was written.
            _AnswerLost: The request was written; the answer did not come back whole.
        """
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname or ""
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, parts.port, timeout=self._timeout, context=self._tls_context
            )
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(host, parts.port, timeout=self._timeout)
        else:
            raise _NotSent(f"unsupported URL scheme {parts.scheme!r} in {uri}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if isinstance(body, str):
            body = body.encode("utf-8")
        where = f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        try:
            try:
                connection.connect()
            except ssl.SSLError as exc:
                # The handshake: a certificate that cannot be verified, or no version or cipher in common.
                if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    raise _NotSent(f"{where}: {_describe(exc)}") from exc
                raise _TlsRefused(where, exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise _NotSent(f"{where}: {_describe(exc)}") from exc
            try:
                connection.request(method, target, body=body, headers=dict(headers))
            except (OSError, http.client.HTTPException) as exc:
                raise _NotSent(f"{where}: {_describe(exc)}") from exc
            try:
                answer = connection.getresponse()
                content = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                raise _AnswerLost(f"{where}: {_describe(exc)}") from exc
        finally:
            connection.close()
        response = httplib2.Response(answer)
        try:
            content = _decoded(content, response.get("content-encoding"))
        except zlib.error as exc:
            raise _AnswerLost(f"{where}: the answer could not be decompressed ({exc})") from exc
        return response, content


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class _TokenRequest(google.auth.transport.Request):
    """google-auth's request callable over the same no-retry transport (used to refresh tokens)."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        try:
            response, content = self._transport.exchange(url, method, body, dict(headers or {}))
        except (_NotSent, _AnswerLost) as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        status = int(response.status)
        # google-auth reads every answer of a token endpoint (a POST) as an OAuth JSON object: anything
        # else (a proxy's HTML page) makes it fail with a TypeError, a 5xx without an OAuth error reads as
        # a refused grant, and it retries 5xx and 429 itself, sleeping. Such answers are reported here
        # instead, and the retry layer decides about retrying. (GETs, such as a metadata server's, may
        # answer plain text.)
        unreadable = method.upper() == "POST" and not _is_json_object(content)
        if status in (408, 429) or status >= 500 or unreadable:
            retry_after = parse_retry_after(response.get("retry-after"))
            raise _TokenEndpointFailed(status, retry_after, content)
        return _TokenResponse(status, dict(response), content)


def _is_json_object(content: bytes) -> bool:
    try:
        return isinstance(json.loads(content.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


class _TokenEndpointFailed(google.auth.exceptions.TransportError):
    """The token endpoint answered 408, 429 or 5xx, or with something that is not OAuth JSON."""

    def __init__(self, status: int, retry_after: float | None, content: bytes) -> None:
        text = " ".join(re.sub(r"<[^>]*>", " ", content.decode("utf-8", "replace")).split())[:200]
        super().__init__(f"{status}: {text}" if text else str(status))  # type: ignore[no-untyped-call]
        self.status = status
        self.retry_after = retry_after


# -- Google's answers -----------------------------------------------------------------------------


@attrs.frozen
class _GoogleAnswer:
    """What an error answer from Google said."""

    status: int
    reasons: tuple[str, ...]
    # Google's own words, unscrubbed: they can echo a token from the request, so they stay out of the repr
    # and reach an error message only through the channel's scrubber.
    text: str = attrs.field(repr=False)
    retry_after: float | None


_RETRY_AFTER_TEXT = re.compile(r"retry after (\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)", re.I)


def _seconds_until(moment: datetime.datetime, now: float) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - now)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, given in seconds or as an HTTP date; None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    now = time.time() if now is None else now
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # NaN and infinity (also "1e309" or 400 digits) are unreadable: no real wait is that long.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return _seconds_until(moment, now)


def _retry_after_in_text(text: str, now: float) -> float | None:
    # Gmail's 429 for the sending limit says "User-rate limit exceeded. Retry after 2024-05-14T20:03:25.613Z".
    match = _RETRY_AFTER_TEXT.search(text)
    if match is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(match[1])
    except ValueError:
        return None
    return _seconds_until(moment, now)


def _read_answer(exc: HttpError, now: float) -> _GoogleAnswer:
    status = int(exc.resp.status)
    text = ""
    reasons: list[str] = []
    try:
        data = json.loads(exc.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # not JSON, or nested too deep to read
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        text = str(error.get("message") or "")
        for key in ("errors", "details"):
            items = error.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and item.get("reason"):
                    reasons.append(str(item["reason"]))
        if error.get("status"):
            reasons.append(str(error["status"]))
    elif isinstance(error, str):
        # The OAuth style: {"error": "invalid_token", "error_description": "..."}.
        reasons.append(error)
        text = str(data.get("error_description") or "") if isinstance(data, dict) else ""
    if not text:
        text = str(getattr(exc, "reason", "") or exc.resp.reason or "")
    retry_after = parse_retry_after(exc.resp.get("retry-after"), now=now)
    if retry_after is None:
        retry_after = _retry_after_in_text(text, now)
    reasons = [_printable(reason) for reason in reasons]
    return _GoogleAnswer(status, tuple(dict.fromkeys(reasons)), _printable(text)[:500], retry_after)


def _printable(text: str) -> str:
    """``text`` on one line (a line break in it would forge log lines) and encodable (JSON may carry a
    lone surrogate such as ``"\ud800"``), for error messages, logs and terminals."""
    return " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")


def _next_pacific_midnight(now: float) -> float | None:
    """When Google's daily API quotas reset: the next midnight, Pacific time."""
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python builds without zoneinfo
        return None
    try:
        zone = ZoneInfo(_PACIFIC)
    except ZoneInfoNotFoundError:  # pragma: no cover - a system without a time-zone database
        return None
    local = datetime.datetime.fromtimestamp(now, zone)
    midnight = datetime.datetime.combine(local.date() + datetime.timedelta(days=1), datetime.time(), zone)
    return midnight.timestamp()


#: Which scopes each operation needs, for the remedy of an "insufficient scopes" answer.
_SCOPES_NEEDED = {
    "send": "the gmail.send scope",
    "profile": "the gmail.readonly (or gmail.metadata) scope",
    "send-as": "the gmail.settings.basic (or gmail.readonly) scope",
}


@attrs.frozen
class _Rule:
    """One row of the reply table: which answers it matches and what they mean.

    A rule matches when every criterion it sets holds: ``statuses`` (HTTP status), ``reasons`` (any of
    Google's reason strings) and ``text`` (a lower-case fragment of Google's message).
    """

    error: type[SendError]
    happened: str
    remedy: str
    statuses: frozenset[int] | None = None
    reasons: frozenset[str] | None = None
    text: str | None = None
    any_5xx: bool = False

    def matches(self, answer: _GoogleAnswer) -> bool:
        if self.any_5xx and not 500 <= answer.status <= 599:
            return False
        if self.statuses is not None and answer.status not in self.statuses:
            return False
        if self.reasons is not None and not self.reasons.intersection(answer.reasons):
            return False
        return self.text is None or self.text in answer.text.lower()


def _rule(error: type[SendError], happened: str, remedy: str, **criteria: Any) -> _Rule:
    for key in ("statuses", "reasons"):
        if key in criteria:
            criteria[key] = frozenset(criteria[key])
    return _Rule(error, happened, remedy, **criteria)


_DAILY_SENDING_LIMIT = (
    "Gmail's daily sending limit for {account} is used up",
    "Gmail counts the last 24 hours, so sending works again as older messages age out "
    "(resets_at says when, if Google said); spread the mail over more accounts or send less.",
)

#: Google's answers, most specific first; the first rule that matches decides.
_RULES: tuple[_Rule, ...] = (
    _rule(QuotaExceededError, *_DAILY_SENDING_LIMIT, text="daily user sending quota exceeded"),
    _rule(QuotaExceededError, *_DAILY_SENDING_LIMIT, text="daily user sending limit exceeded"),
    # The sending limit as the API reports it: 429 "User-rate limit exceeded. Retry after ... (Mail sending)".
    _rule(QuotaExceededError, *_DAILY_SENDING_LIMIT, statuses={429, 403}, text="mail sending"),
    _rule(
        QuotaExceededError,
        "The Google Cloud project's daily Gmail API quota is spent (sending for {account})",
        "It resets at midnight Pacific time; ask Google for a higher quota in the Cloud console.",
        reasons={"dailyLimitExceeded"},
    ),
    _rule(
        ThrottledError,
        "Gmail asked the sender of {account} to slow down",
        "Wait retry_after seconds (when given) and send more slowly.",
        reasons={"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"},
    ),
    _rule(
        ThrottledError,
        "Gmail answered 'too many requests' for {account}",
        "Wait retry_after seconds (when given) and send more slowly.",
        statuses={429},
    ),
    _rule(
        AuthenticationError,
        "The Gmail grant for {account} does not allow this ({needed} is missing)",
        "The user must connect their Gmail account again and grant {needed}.",
        reasons={"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"},
    ),
    _rule(
        AuthenticationError,
        "The Google Workspace domain of {account} does not allow this application to use Gmail",
        "Ask the domain's administrator to allow the application's OAuth client.",
        reasons={"domainPolicy"},
    ),
    _rule(
        SenderNotAllowedError,
        "Gmail refused to act for {account}: the credentials belong to another account",
        "Use credentials granted by {account} itself (or, for a service account, subject={account}).",
        statuses={403},
        text="delegation denied",
    ),
    _rule(
        AuthenticationError,
        "Gmail does not accept the access token for {account}, even after refreshing it",
        "The grant may have been revoked or lack the gmail.send scope: the user must connect their "
        "Gmail account again.",
        statuses={401},
    ),
    _rule(
        AuthenticationError,
        "Gmail cannot be used for {account} with these credentials",
        "The account may have no Gmail service, or a service account needs domain-wide delegation "
        "and subject={account}.",
        statuses={400},
        reasons={"failedPrecondition", "FAILED_PRECONDITION"},
    ),
    _rule(
        MessageRejectedError,
        "Gmail refused the message from {account}",
        "Fix what Google names (addresses, headers, size); sending it unchanged will fail the same way.",
        statuses={400, 413},
    ),
    _rule(
        AuthenticationError,
        "Gmail forbade the request for {account}",
        "Check that the grant is for this account and that Gmail is enabled for it.",
        statuses={403},
    ),
    _rule(
        TransientError,
        "Gmail timed out reading the request for {account}, so nothing was sent",
        "Sending again is safe.",
        statuses={408},
    ),
    _rule(
        DeliveryUnknownError,
        "Google's front end gave up waiting for Gmail while sending for {account}, "
        "so the message may or may not have gone out",
        "Check the account's Sent folder before sending it again.",
        statuses={504},
    ),
    _rule(
        TransientError,
        "Gmail failed for now while handling the request for {account}",
        "Try again later.",
        any_5xx=True,
    ),
    _rule(
        MessageRejectedError,
        "Gmail refused the request for {account}",
        "Fix what Google names; sending it unchanged will fail the same way.",
    ),
)


def _classify(
    answer: _GoogleAnswer, *, account: str, operation: str, now: float, scrub: Callable[[str], str]
) -> SendError:
    """The error for an error answer from Google, by the first matching rule of :data:`_RULES`."""
    rule = next(rule for rule in _RULES if rule.matches(answer))
    error: type[SendError] = rule.error
    if error is DeliveryUnknownError and operation != "send":
        error = TransientError  # reading a profile or the aliases changes nothing: just try again
    fields = {"account": account, "needed": _SCOPES_NEEDED.get(operation, "the scope it needs")}
    reason = answer.reasons[0] if answer.reasons else None
    reply = scrub(answer.text)
    quoted = reply.rstrip(". ")
    said = f"{answer.status} {reason}: {quoted}" if reason else f"{answer.status}: {quoted}"
    message = f"{rule.happened.format(**fields)} ({said}). {rule.remedy.format(**fields)}"
    kwargs: dict[str, Any] = {
        "code": answer.status,
        "enhanced_code": reason,
        "retry_after": answer.retry_after,
        "reply": reply,
    }
    if error is QuotaExceededError:
        resets_at = None if answer.retry_after is None else now + answer.retry_after
        if resets_at is None and "dailyLimitExceeded" in answer.reasons:
            resets_at = _next_pacific_midnight(now)
        return QuotaExceededError(message, resets_at=resets_at, **kwargs)
    return error(message, **kwargs)


# -- the channel ----------------------------------------------------------------------------------

_WORKSPACE_LIMITS = Limits(
    rates=(Rate.per_day(2000), Rate.per_day(10_000, "recipients")),
    max_recipients_per_message=100,
    max_message_bytes=_MAX_MESSAGE_BYTES,
)
_CONSUMER_LIMITS = Limits(
    rates=(Rate.per_day(500),),
    max_recipients_per_message=100,
    max_message_bytes=_MAX_MESSAGE_BYTES,
)


def _prepare_credentials(credentials: Any, address: str) -> google.auth.credentials.Credentials:
    if not isinstance(credentials, google.auth.credentials.Credentials):
        raise ConfigurationError(
            f"credentials must be google-auth Credentials, got {type(credentials).__name__}; load a grant "
            "with google.oauth2.credentials.Credentials.from_authorized_user_file(path), or a service "
            "account with google.oauth2.service_account.Credentials.from_service_account_file(path)."
        )
    if isinstance(credentials, google.oauth2.service_account.Credentials):
        subject = getattr(credentials, "_subject", None)
        if subject is None:
            credentials = credentials.with_subject(address)  # type: ignore[no-untyped-call]
        elif subject.lower() != address.lower():
            raise ConfigurationError(
                f"The service account acts for {subject}, but the channel sends as {address}; "
                f"build the credentials with subject={address!r} (domain-wide delegation)."
            )
        if not credentials.scopes:
            credentials = credentials.with_scopes([GMAIL_SEND_SCOPE])
    scopes = getattr(credentials, "scopes", None)
    if scopes and not _SEND_SCOPES.intersection(scopes):
        raise ConfigurationError(
            f"The credentials for {address} were granted {', '.join(sorted(scopes))}, none of which allows "
            f"sending; the user must connect their Gmail account again and grant {GMAIL_SEND_SCOPE}."
        )
    prepared: google.auth.credentials.Credentials = credentials
    return prepared


def _secrets_of(credentials: google.auth.credentials.Credentials) -> list[str]:
    values = [
        getattr(credentials, "token", None),
        getattr(credentials, "refresh_token", None),
        getattr(credentials, "client_secret", None),
    ]
    return [value for value in values if isinstance(value, str) and len(value) >= 6]


class GmailOAuthChannel(BaseChannel):
    """Send through the Gmail API (``users.messages.send``) with the account owner's OAuth grant.

    The credential belongs to one account: its scope is per-address (``address``, plus the send-as
    aliases given in ``send_as`` or found by :meth:`discover_send_as`), so it must not be shared.

    Args:
        credentials: google-auth credentials: an authorised-user grant with a refresh token (scope
            ``gmail.send``), or a service account with domain-wide delegation in Google Workspace (its
            subject is set to ``address`` when missing). Expired tokens are refreshed before use and once
            after a 401.
        address: The Gmail or Workspace address the grant belongs to.
        workspace: True for Google Workspace limits (2,000 messages and 10,000 recipients a day), False
            for a consumer account (about 500 messages a day).
        api_endpoint: The API root, ``https://gmail.googleapis.com/`` by default; point it at another
            server (a test server, a proxy that speaks the Gmail API).
        send_as: Send-as aliases of the account to allow as senders, in addition to ``address``.
        limits: Limits to use instead of the documented defaults.
        timeout: Seconds each network wait may take (connecting, writing, waiting for the answer).
        tls_context: The TLS settings for ``https`` endpoints; the system trust store by default.
        max_concurrency: How many Gmail API calls may run at once; more wait for a worker thread.

    Raises:
        ConfigurationError: Credentials that are not google-auth credentials, that cannot send, or that
            belong to another account; a malformed address; a bad option.
    """

    name = "gmail"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.PER_ADDRESS
    provider_name: ClassVar[str | None] = "Gmail"
    #: Google Workspace: 2,000 messages and 10,000 recipients in any 24 hours, 100 recipients a message
    #: through the API, 35 MB a message.
    default_limits: ClassVar[Limits] = _WORKSPACE_LIMITS
    #: Consumer Gmail accounts (``workspace=False``): about 500 messages a day.
    consumer_limits: ClassVar[Limits] = _CONSUMER_LIMITS

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        *,
        address: str,
        workspace: bool = True,
        api_endpoint: str | None = None,
        send_as: Iterable[str] = (),
        limits: Limits | None = None,
        timeout: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if isinstance(send_as, str):
            send_as = (send_as,)
        try:
            self.scope = CredentialScope.per_address(address, *send_as, provider="Gmail")
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"GmailOAuthChannel needs the account's e-mail address: {exc}") from None
        self.address = address
        self._credentials = _prepare_credentials(credentials, address)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a Limits object, got {type(limits).__name__}")
        self.limits = (
            limits if limits is not None else (self.default_limits if workspace else self.consumer_limits)
        )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}"
            )
        endpoint = api_endpoint or _DEFAULT_ENDPOINT
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"api_endpoint must be an http(s) URL such as {_DEFAULT_ENDPOINT}, "
                f"got {redact_url(endpoint)!r}"
            )
        self.api_endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self._transport = _Transport(
            self._credentials,
            timeout=float(timeout),
            tls_context=tls_context or ssl.create_default_context(),
        )
        # The discovery document ships with the client: build() reads no network.
        service = build(
            "gmail",
            "v1",
            http=self._transport,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self.api_endpoint},
        )
        users = service.users()
        self._users = users
        self._messages = users.messages()
        self._send_as = users.settings().sendAs()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="sendchannel-gmail"
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"<GmailOAuthChannel {self.address} scope={self.scope} endpoint={self.api_endpoint}>"

    # -- public operations --------------------------------------------------------------------

    async def verify(self) -> None:
        """Refresh the access token and call ``users.getProfile``, sending nothing.

        A grant with only the ``gmail.send`` scope may not read the profile: Google then answers
        "insufficient scopes", which still proves the token was accepted, so verify succeeds.

        Raises:
            AuthenticationError: The grant was revoked or expired, or lacks the gmail.send scope.
            ConnectionLostError: Google could not be reached.
            SendError: Another failure, classified as for a send.
        """
        await self._run(self._verify_blocking)

    async def discover_send_as(self) -> tuple[str, ...]:
        """Read the account's send-as aliases (``users.settings.sendAs.list``) and allow the verified ones.

        The primary address and aliases whose verification status is ``accepted`` are added to the scope;
        pending ones are not.

        Returns:
            The verified addresses found, in Google's order (the primary address included).

        Raises:
            AuthenticationError: The grant lacks a scope that may read the aliases (gmail.settings.basic or
                gmail.readonly): pass ``send_as=`` instead, or ask for that scope too.
            SendError: Another failure, classified as for a send.
        """
        answer = await self._run(self._call, lambda: self._send_as.list(userId="me"), "send-as")
        verified: list[str] = []
        for entry in answer.get("sendAs") or ():
            if not isinstance(entry, dict):
                continue
            alias = entry.get("sendAsEmail")
            if not isinstance(alias, str):
                continue
            if entry.get("isPrimary") or entry.get("verificationStatus") == "accepted":
                verified.append(alias)
        if verified:
            self.scope = CredentialScope.per_address(*self.scope.identities, *verified, provider="Gmail")
        return tuple(verified)

    async def aclose(self) -> None:
        """Stop the worker threads (calls in flight finish); the channel cannot send afterwards."""
        self._closed = True
        self._executor.shutdown(wait=False)

    # -- sending ------------------------------------------------------------------------------

    async def _send(self, message: Message) -> SendResult:
        return await self._run(self._send_blocking, message)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"the Gmail channel for {self.address} is closed; open a new channel")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(function, *args))
        except SendError as exc:
            if exc.channel is None:  # send() fills it in too; verify() and discover_send_as() need it here
                exc.channel = self.name
            raise

    def _send_blocking(self, message: Message) -> SendResult:
        # Gmail takes the recipients from the headers, so the submitted copy carries Bcc (Gmail removes it).
        raw = render(message, bcc_header=True)
        most = self.limits.max_message_bytes
        if most is not None and len(raw) > most:
            raise InvalidMessageError(
                f"The message is {len(raw):,} bytes with its Bcc header, but Gmail accepts at most {most:,}; "
                "send large files as links instead of attachments."
            )
        answer = self._call(functools.partial(self._send_request, raw), "send")
        provider_id = answer.get("id")
        return SendResult(
            message_id=message.message_id,
            provider_id=provider_id if isinstance(provider_id, str) else None,
            accepted=message.recipients,
            channel=self.name,
        )

    def _send_request(self, raw: bytes) -> HttpRequest:
        if len(raw) <= _JSON_RAW_MAX_BYTES:
            encoded = base64.urlsafe_b64encode(raw).decode("ascii")
            return self._messages.send(userId="me", body={"raw": encoded})
        media = MediaInMemoryUpload(raw, mimetype="message/rfc822", resumable=False)
        request = self._messages.send(userId="me", body={}, media_body=media)
        request.uri = self._upload_uri(request.uri)
        return request

    def _upload_uri(self, uri: str) -> str:
        # The client builds upload URLs from the discovery document's https:// root and swaps in only the
        # host of api_endpoint, losing an http:// scheme or a path prefix: rebuild it under api_endpoint.
        parts = urllib.parse.urlsplit(uri)
        rebuilt = urllib.parse.urljoin(self.api_endpoint, parts.path.lstrip("/"))
        return f"{rebuilt}?{parts.query}" if parts.query else rebuilt

    def _verify_blocking(self) -> None:
        # A fresh token proves the grant is alive now and tells which scopes it has.
        refreshable = not isinstance(self._credentials, google.oauth2.credentials.Credentials) or (
            self._credentials.refresh_token is not None
        )
        if self._credentials.valid and refreshable:
            try:
                self._transport.refresh()
            except (google.auth.exceptions.GoogleAuthError, _NotSent, _AnswerLost) as exc:
                raise self._translate(exc, "profile") from None
        try:
            self._call(lambda: self._users.getProfile(userId="me"), "profile")
        except AuthenticationError as exc:
            if exc.enhanced_code not in ("insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
                raise
            # The token was accepted; a gmail.send-only grant may not read the profile.
        granted = getattr(self._credentials, "granted_scopes", None)
        if granted and not _SEND_SCOPES.intersection(granted):
            raise AuthenticationError(
                f"The Gmail grant for {self.address} covers {', '.join(sorted(granted))} but not sending; "
                f"the user must connect their Gmail account again and grant {GMAIL_SEND_SCOPE}.",
                enhanced_code="insufficientPermissions",
            )

    def _call(self, make_request: Callable[[], HttpRequest], operation: str) -> dict[str, Any]:
        """Build and execute one request on this worker thread; every failure becomes a SendError."""
        try:
            answer = make_request().execute(num_retries=0)
        except HttpError as exc:
            error = _classify(
                _read_answer(exc, time.time()),
                account=self.address,
                operation=operation,
                now=time.time(),
                scrub=self._scrub,
            )
            # Not chained: Google's own exception holds its answer unscrubbed (it can echo a token), and a
            # traceback would print it. The error carries the scrubbed reason and code.
            raise error from None
        except (google.auth.exceptions.GoogleAuthError, _NotSent, _AnswerLost) as exc:
            raise self._translate(exc, operation) from None
        except GoogleClientError as exc:
            # The client refused an answer it could not use: for a send, it may have gone out.
            raise self._unreadable(exc, operation) from exc
        except Exception as exc:
            # The client failed inside itself reading an odd answer (its HttpError cannot parse every
            # error body; deeply nested JSON exhausts the recursion limit): the same as an unusable answer.
            raise self._unreadable(exc, operation) from exc
        return answer if isinstance(answer, dict) else {}

    # -- failures that are not HTTP answers ----------------------------------------------------

    def _translate(self, exc: BaseException, operation: str) -> SendError:
        account = self.address
        detail = self._scrub(_describe(exc))
        refused = exc if isinstance(exc, _TlsRefused) else exc.__cause__
        if isinstance(refused, _TlsRefused):
            return self._tls_refused(refused, token=refused is not exc)
        if isinstance(exc, _TokenEndpointFailed):
            return self._token_endpoint_failed(exc)
        if isinstance(exc, _NotSent):
            return ConnectionLostError(
                f"Could not reach Gmail for {account} ({detail}); nothing was sent, so trying again is safe."
            )
        if isinstance(exc, _AnswerLost):
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
            return self._refresh_failed(exc)
        if isinstance(exc, google.auth.exceptions.TransportError):
            return ConnectionLostError(
                f"Could not reach Google's token endpoint to refresh the access token for {account} "
                f"({detail}); nothing was sent, so trying again is safe."
            )
        return AuthenticationError(
            f"Google could not authorise the request for {account} ({detail}); check the credentials."
        )

    def _tls_refused(self, exc: _TlsRefused, *, token: bool) -> SendError:
        where = f"Google's token endpoint {exc.where}" if token else f"Gmail's server {exc.where}"
        reason = self._scrub(str(getattr(exc.error, "verify_message", None) or exc.error.reason or exc.error))
        if isinstance(exc.error, ssl.SSLCertVerificationError):
            return PermanentError(
                f"The TLS certificate of {where} could not be verified ({reason}), so nothing was sent for "
                f"{self.address}. If the server uses a private certificate authority, pass tls_context="
                "ssl.create_default_context(cafile=...) (or set SSL_CERT_FILE); check the api_endpoint."
            )
        return PermanentError(
            f"The TLS handshake with {where} failed ({reason}), so nothing was sent for {self.address}; "
            "check the api_endpoint and tls_context."
        )

    def _token_endpoint_failed(self, exc: _TokenEndpointFailed) -> SendError:
        account = self.address
        said = self._scrub(str(exc.args[0] if exc.args else exc.status))
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

    def _refresh_failed(self, exc: google.auth.exceptions.RefreshError) -> SendError:
        account = self.address
        text = self._scrub(" ".join(str(exc.args[0] if exc.args else exc).split()))[:500]
        robot = isinstance(self._credentials, google.oauth2.service_account.Credentials)
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

    def _unreadable(self, exc: BaseException, operation: str) -> SendError:
        detail = self._scrub(_describe(exc))[:300]
        if operation != "send":
            return TransientError(
                f"Gmail's answer for {self.address} could not be read ({detail}); try again."
            )
        return DeliveryUnknownError(
            f"Gmail's answer to the message for {self.address} could not be read ({detail}), so it may "
            "have been sent; check the Sent folder before sending it again."
        )

    def _scrub(self, text: str) -> str:
        for secret in _secrets_of(self._credentials):
            text = text.replace(secret, "***")
        return text


# -- gmail:// URLs --------------------------------------------------------------------------------

_URL_OPTIONS = frozenset(
    {"credentials", "workspace", "api_endpoint", "timeout", "send_as", "max_concurrency"}
)


def _load_credentials(source: str, *, address: str, origin: str) -> google.auth.credentials.Credentials:
    """Credentials from a JSON file path, or from JSON text (only from the environment variable)."""
    text = source.strip()
    if text.startswith("{"):
        where = f"the JSON in {origin}"
    else:
        path = os.path.expanduser(text)
        where = f"the file {path!r} (from {origin})"
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigurationError(
                f"Could not read the Gmail credentials from {where}: {exc.strerror or exc}; give the path "
                "of an authorised-user JSON file."
            ) from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigurationError(
            f"The Gmail credentials in {where} are not JSON; save the authorised-user grant as JSON "
            "(credentials.to_json())."
        ) from None
    if not isinstance(info, dict):
        raise ConfigurationError(f"The Gmail credentials in {where} must be a JSON object.")
    kind = info.get("type", "authorized_user")
    try:
        if kind == "authorized_user":
            user = google.oauth2.credentials.Credentials
            return cast(Credentials, user.from_authorized_user_info(info))  # type: ignore[no-untyped-call]
        if kind == "service_account":
            robot = google.oauth2.service_account.Credentials
            return cast(
                Credentials,
                robot.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=[GMAIL_SEND_SCOPE], subject=address
                ),
            )
    except (ValueError, KeyError) as exc:
        # google-auth names the missing fields, never their values.
        raise ConfigurationError(f"The Gmail credentials in {where} are incomplete: {exc}") from None
    raise ConfigurationError(
        f"The Gmail credentials in {where} are of type {kind!r}; use an authorised-user grant "
        "(type authorized_user) or a service account key (type service_account)."
    )


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"gmail:// option {name}={value!r} must be true or false")


def _from_url(url: urllib.parse.SplitResult, **overrides: Any) -> GmailOAuthChannel:
    """``gmail://alice@example.com?credentials=/path/grant.json&workspace=false``.

    Without ``credentials`` in the URL or the overrides, the environment variable
    ``SENDCHANNEL_GMAIL_CREDENTIALS`` gives the path of the JSON file, or the JSON itself.
    """
    if url.password is not None:
        raise ConfigurationError(
            f"{redact_url(url)} has a password, but Gmail is reached with OAuth only; write "
            "gmail://alice@example.com?credentials=/path/to/authorized_user.json and keep the password out "
            "of the URL."
        )
    address = urllib.parse.unquote(url.netloc)
    if not address or "@" not in address or url.path not in ("", "/"):
        raise ConfigurationError(
            f"{redact_url(url)} does not name the Gmail account; write gmail://alice@example.com"
            "?credentials=/path/to/authorized_user.json"
        )
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    unknown = sorted(set(query) - _URL_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"Unknown gmail:// option(s) {', '.join(unknown)}; known: {', '.join(sorted(_URL_OPTIONS))}"
        )
    options: dict[str, Any] = {}
    if "workspace" in query:
        options["workspace"] = _flag(query["workspace"], "workspace")
    if "api_endpoint" in query:
        options["api_endpoint"] = query["api_endpoint"]
    if "send_as" in query:
        options["send_as"] = tuple(a.strip() for a in query["send_as"].split(",") if a.strip())
    for name, kind in (("timeout", float), ("max_concurrency", int)):
        if name in query:
            try:
                options[name] = kind(query[name])
            except ValueError:
                raise ConfigurationError(f"gmail:// option {name}={query[name]!r} is not a number") from None
    options.update(overrides)
    credentials = options.pop("credentials", None)
    if credentials is None:
        if "credentials" in query:
            credentials = _load_credentials(query["credentials"], address=address, origin="the URL")
        elif os.environ.get(CREDENTIALS_ENV):
            credentials = _load_credentials(
                os.environ[CREDENTIALS_ENV], address=address, origin=f"${CREDENTIALS_ENV}"
            )
        else:
            raise ConfigurationError(
                f"{redact_url(url)} names no credentials; add ?credentials=/path/to/authorized_user.json "
                f"or set {CREDENTIALS_ENV} to that path."
            )
    elif isinstance(credentials, str):
        credentials = _load_credentials(credentials, address=address, origin="credentials=")
    return GmailOAuthChannel(credentials, address=address, **options)

