"""GmailOAuthChannel: send through the Gmail API with the account owner's OAuth grant.

Google's client (google-api-python-client) builds each request from the discovery document it ships, so
nothing is fetched at build time; google-auth credentials supply and refresh the access token. The client
is synchronous, so every call runs on a worker thread of the channel's own executor, over the package's
own transport (``_transport.py``: one connection a request, no silent re-sends). Google's error answers are
read by the table in ``_answers.py``; other failures by ``_failures.py``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import google.auth.credentials
import google.auth.exceptions
import google.oauth2.credentials
import google.oauth2.service_account
from googleapiclient.discovery import build
from googleapiclient.errors import Error as GoogleClientError
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaInMemoryUpload

from sendchannel._channel import BaseChannel
from sendchannel._gmail._answers import classify, read_answer
from sendchannel._gmail._config import CREDENTIALS_ENV, GMAIL_SEND_SCOPE
from sendchannel._gmail._failures import translate, unreadable
from sendchannel._gmail._transport import AnswerLost, NotSent, Transport
from sendchannel._http import Redactor, check_timeout
from sendchannel._limits import Limits, Rate
from sendchannel._message import Message
from sendchannel._mime import render
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._urls import redact_url
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidMessageError,
    SendError,
)

__all__ = ["CREDENTIALS_ENV", "GMAIL_SEND_SCOPE", "GmailOAuthChannel"]

T = TypeVar("T")

#: Scopes that include sending (the Gmail API accepts ``users.messages.send`` with any of them).
_SEND_SCOPES = frozenset(
    {
        GMAIL_SEND_SCOPE,
        "https://mail.google.com/",
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/gmail.modify",
    }
)

_DEFAULT_ENDPOINT = "https://gmail.googleapis.com/"
#: Messages up to this size (rendered MIME) go as ``{"raw": base64url}`` in a JSON body; larger ones as a
#: one-request multipart upload to the ``/upload`` path, which takes up to 35 MB. Google limits the size
#: of JSON request bodies (some accounts answer "Request payload size exceeds the limit: 1048576 bytes"),
#: and base64 adds a third, so the JSON form is kept well below 1 MiB.
_JSON_RAW_MAX_BYTES = 512 * 1024
#: The largest message users.messages.send takes (the discovery document's maxSize: 35 MB).
_MAX_MESSAGE_BYTES = 36_700_160
#: The Gmail API's per-user quota for Cloud projects created from May 2026: 6,000 units a minute at 100
#: units a send, so 60 sends a minute (older projects have 15,000 units: 150; pass your own limits).
_API_RATE = Rate(60, 60)

_WORKSPACE_LIMITS = Limits(
    rates=(Rate.per_day(2000), Rate.per_day(10_000, "recipients"), _API_RATE),
    max_recipients_per_message=100,
    max_message_bytes=_MAX_MESSAGE_BYTES,
)
_CONSUMER_LIMITS = Limits(
    rates=(Rate.per_day(500), _API_RATE),
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
        timeout = check_timeout(timeout)
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
        # The credentials' secrets change as tokens are refreshed: the redactor asks for them each time.
        self._redact = Redactor(lambda: _secrets_of(self._credentials))
        self._transport = Transport(
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
            except (google.auth.exceptions.GoogleAuthError, NotSent, AnswerLost) as exc:
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
            error = classify(
                read_answer(exc, time.time()),
                account=self.address,
                operation=operation,
                now=time.time(),
                scrub=self._scrub,
            )
            # Not chained: Google's own exception holds its answer unscrubbed (it can echo a token), and a
            # traceback would print it. The error carries the scrubbed reason and code.
            raise error from None
        except (google.auth.exceptions.GoogleAuthError, NotSent, AnswerLost) as exc:
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
        robot = isinstance(self._credentials, google.oauth2.service_account.Credentials)
        return translate(exc, operation, account=self.address, scrub=self._scrub, robot=robot)

    def _unreadable(self, exc: BaseException, operation: str) -> SendError:
        return unreadable(exc, operation, account=self.address, scrub=self._scrub)

    def _scrub(self, text: str) -> str:
        return self._redact(text, limit=None)
