"""A local aiohttp server on 127.0.0.1 that answers as Microsoft Graph documents its mail endpoints.

It serves, under ``/v1.0``:

- ``POST /me/sendMail`` and ``POST /users/{mailbox}/sendMail`` with a base64 MIME body
  (``Content-Type: text/plain``): 202 Accepted with no body;
- the large-message path: ``POST .../messages`` (a draft from base64 MIME, 201 with the message's ``id``
  and ``internetMessageId``), ``POST .../messages/{id}/attachments`` (a ``fileAttachment`` in JSON),
  ``POST .../messages/{id}/attachments/createUploadSession`` (201 with an ``uploadUrl``), ``PUT`` of the
  upload URL in chunks with ``Content-Range`` (200 with ``nextExpectedRanges``, 201 for the last chunk)
  and ``POST .../messages/{id}/send`` (202).

As Graph does, it checks the bearer token (an opaque token granted with :meth:`GraphDouble.grant`, or an
unsigned JWT whose ``scp``/``roles`` claims hold the permissions), the permissions each endpoint needs
(``Mail.Send``; ``Mail.ReadWrite`` for drafts), the mailbox (unknown: 404 ``ErrorInvalidUser``; marked
with :meth:`GraphDouble.not_rest_enabled`: ``MailboxNotEnabledForRESTAPI``), the RBAC scope of an
application (403 ``ErrorAccessDenied`` outside it), the From address (403 ``ErrorSendAsDenied`` unless it
is the mailbox or one it may send as), base64 (400), the 4 MB request cap (413), the upload rules (no
``Authorization`` header on the pre-authenticated upload URL, chunks of at most 4 MB in multiples of
320 KiB except the last, in order, ``Content-Range`` agreeing with the body and the declared size), and
the 4 requests a mailbox may have in flight (429 ``MailboxConcurrency`` past them). Errors have Graph's
shape, ``{"error": {"code", "message"}}``.

Tests script faults with :meth:`GraphDouble.script`: any answer (status, code, headers such as
Retry-After), ``"drop"`` (the connection is closed after the request was read, unanswered) or
``"hang"`` (no answer until the server stops). It runs its own event loop on a thread, so it serves
tests on any loop, including the conformance kit's ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import email
import email.message
import email.policy
import itertools
import json
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests import sentinels

#: Graph's cap on one request (413 past it).
MAX_REQUEST = 4 * 1024 * 1024
#: Upload chunks are multiples of this, except the last.
CHUNK_UNIT = 320 * 1024
#: Requests one app may have in flight against one mailbox.
MAX_IN_FLIGHT = 4
#: Attachments smaller than this cannot use an upload session (ErrorAttachmentSizeShouldNotBeLessThan...).
#: Graph says "3 MB"; the double takes the smaller reading, 3,000,000 bytes.
UPLOAD_MINIMUM = 3_000_000


@dataclass
class Answer:
    """A scripted answer: a status with Graph's error body (or ``body``), or ``action`` "drop"/"hang"."""

    status: int = 202
    code: str | None = None
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    action: str = "answer"
    body: Any = None
    raw: bytes | None = None


def error(status: int, code: str, message: str, **headers: str) -> Answer:
    """An answer with Graph's error body ``{"error": {"code", "message"}}``."""
    return Answer(status, code, message, headers=headers)


# The answers the table of DESIGN.md names, as Graph writes them.
TOO_MANY_REQUESTS = error(429, "TooManyRequests", "Too many requests.", **{"Retry-After": "7"})
TOO_MANY_REQUESTS_NO_WAIT = error(429, "TooManyRequests", "Too many requests.")
UNAVAILABLE = error(503, "ServiceUnavailable", "Service unavailable.", **{"Retry-After": "12"})
MAILBOX_CONCURRENCY = error(
    429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
)
SEND_AS_DENIED = error(
    403,
    "ErrorSendAsDenied",
    "The user account which was used to submit this request does not have the right to send mail on "
    "behalf of the specified sending account., Cannot submit message.",
)
INVALID_TOKEN = error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
ACCESS_DENIED = error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
NOT_REST_ENABLED = error(
    404,
    "MailboxNotEnabledForRESTAPI",
    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
)
MAILBOX_FULL = error(
    403, "ErrorQuotaExceeded", "The process failed to get the correct properties. Quota exceeded."
)
MESSAGE_TOO_BIG = error(400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
REQUEST_TOO_LARGE = error(413, "RequestEntityTooLarge", "The request is too large.")
BAD_REQUEST = error(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
SUBMISSION_QUOTA = error(
    429,
    "ErrorExceededMessageLimit",
    "Cannot send mail. The message limit has been exceeded for this mailbox.",
)
INTERNAL_ERROR = error(500, "InternalServerError", "An internal server error occurred.")
BAD_GATEWAY = error(502, "BadGateway", "Bad gateway.")
DROP = Answer(action="drop")
GARBAGE = Answer(action="garbage")
HANG = Answer(action="hang")


# -- tokens --------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned JWT with ``claims``, shaped as Entra's access tokens (the double reads, never verifies)."""
    header = _b64url(b'{"alg":"RS256","typ":"JWT"}')
    return f"{header}.{_b64url(json.dumps(dict(claims)).encode())}.{_b64url(b'not-a-signature')}"


def app_token(*roles: str, tenant: str = "contoso") -> str:
    """An application (client-credentials) token whose ``roles`` claim holds ``roles``."""
    return jwt({"aud": "https://graph.microsoft.com", "tid": tenant, "roles": list(roles), "appid": "app"})


def user_token(mailbox: str, *scopes: str) -> str:
    """A delegated token for ``mailbox`` whose ``scp`` claim holds ``scopes``."""
    return jwt({"aud": "https://graph.microsoft.com", "upn": mailbox, "scp": " ".join(scopes)})


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for: a user's mailbox (delegated) or an application (``mailbox`` None)."""

    mailbox: str | None
    permissions: frozenset[str]


def _claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


# -- what arrived --------------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    mailbox: str | None = None


@dataclass
class Upload:
    """One upload session: what was declared and the chunks that came."""

    message_id: str
    item: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    ranges: list[str] = field(default_factory=list)
    done: bool = False


@dataclass
class Draft:
    """A draft message: its MIME and the attachments added to it afterwards."""

    id: str
    mailbox: str
    mime: bytes
    internet_message_id: str
    added: list[tuple[str, str, bytes, bool, str | None]] = field(default_factory=list)


@dataclass
class Delivered:
    """A message Graph accepted for delivery, as its recipients would get it.

    ``mime`` is the decoded MIME as submitted (for the draft path, the draft's MIME), ``attachments`` every
    attachment's ``(filename, content type, bytes)`` (those in the MIME, then those added to the draft).
    """

    mailbox: str
    mime: bytes
    parsed: email.message.EmailMessage
    via: str
    recipients: list[str]
    attachments: list[tuple[str, str, bytes]]
    internet_message_id: str | None = None

    def header(self, name: str) -> str | None:
        value = self.parsed[name]
        return None if value is None else str(value)


def _addresses(parsed: email.message.EmailMessage, name: str) -> list[str]:
    found: list[str] = []
    for value in parsed.get_all(name) or []:
        found += [a.addr_spec for a in getattr(value, "addresses", ())]
    return found


def _mime_attachments(parsed: email.message.EmailMessage) -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename is None:
            continue
        payload = part.get_payload(decode=True)
        out.append((filename, part.get_content_type(), payload if isinstance(payload, bytes) else b""))
    return out


def _upload_token(session: str) -> str:
    """The credential in an upload URL: a sentinel, so the secret sweep catches the URL wherever it leaks."""
    return f"{sentinels.TOKEN}-upload-{session}"


_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_PATH_RE = re.compile(r"/v1\.0/(?:me|users/(?P<user>[^/]+))/(?P<rest>.+)")


# -- the server ----------------------------------------------------------------------------------------


class GraphDouble:
    """Microsoft Graph's mail endpoints on 127.0.0.1, for tests; ``url`` is the ``base_url`` (``.../v1.0``).

    Args:
        mailboxes: The tenant's mailboxes (lower-case addresses).
        ssl_context: Serve HTTPS with this server context.
        hold_until: Hold each mailbox request until this many are in flight for its mailbox (or 5
            seconds pass), so that a test sees how many a client runs at once.
    """

    def __init__(
        self,
        *,
        mailboxes: tuple[str, ...] = ("alice@contoso.com", "bob@contoso.com", "sales@contoso.com"),
        ssl_context: ssl.SSLContext | None = None,
        hold_until: int | None = None,
    ) -> None:
        self.mailboxes = {m.lower() for m in mailboxes}
        self.ssl_context = ssl_context
        self.hold_until = hold_until
        #: token -> Principal, for opaque tokens.
        self.tokens: dict[str, Principal] = {}
        #: mailbox -> addresses it may send as (besides itself).
        self.send_as: dict[str, set[str]] = collections.defaultdict(set)
        #: Mailboxes an application may reach (None: every mailbox of the tenant).
        self.rbac: set[str] | None = None
        self.not_enabled: set[str] = set()
        self.received: list[Received] = []
        self.delivered: list[Delivered] = []
        self.drafts: dict[str, Draft] = {}
        #: Ids of the drafts deleted.
        self.deleted: list[str] = []
        self.uploads: dict[str, Upload] = {}
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most_in_flight: collections.Counter[str] = collections.Counter()
        self._script: collections.deque[tuple[Answer, str | None]] = collections.deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self.port = 0

    # -- set-up --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1.0"

    def grant(
        self, token: str, *, mailbox: str | None = None, permissions: tuple[str, ...] = ("Mail.Send",)
    ) -> str:
        """Accept ``token``: delegated for ``mailbox``, or an application's when ``mailbox`` is None."""
        self.tokens[token] = Principal(None if mailbox is None else mailbox.lower(), frozenset(permissions))
        return token

    def revoke(self, token: str) -> None:
        """Stop accepting ``token`` (it expired): the next request with it gets 401."""
        self.tokens.pop(token, None)

    def not_rest_enabled(self, mailbox: str) -> None:
        """Mark ``mailbox`` unlicensed or on-premises: MailboxNotEnabledForRESTAPI."""
        self.not_enabled.add(mailbox.lower())

    def script(self, answer: Answer, times: int = 1, *, on: str | None = None) -> None:
        """Answer the next ``times`` requests (whose path ends with ``on``, if given) with ``answer``."""
        with self._lock:
            self._script.extend([(answer, on)] * times)

    def start(self) -> GraphDouble:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._serve(ready))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Graph double did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> GraphDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
        await self._stopping.wait()
        await self._runner.cleanup()

    # -- handling ------------------------------------------------------------------------------------

    def _scripted(self, path: str) -> Answer | None:
        with self._lock:
            for index, (answer, on) in enumerate(self._script):
                if on is None or path.endswith(on):
                    del self._script[index]
                    return answer
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received = Received(request.method, request.path_qs, headers, body)
        with self._lock:
            self.received.append(received)
        scripted = self._scripted(request.path)
        if scripted is not None:
            return await self._answer(request, scripted)
        if request.path.startswith("/upload/"):
            return await self._answer(request, self._upload(request, body))
        match = _PATH_RE.fullmatch(request.path)
        if match is None:
            return await self._answer(request, error(404, "NotFound", "Resource not found for the segment."))
        principal = self._principal(request.headers.get("Authorization", ""))
        if principal is None:
            return await self._answer(request, INVALID_TOKEN)
        user = match.group("user")
        mailbox = (user or principal.mailbox or "").lower()
        received.mailbox = mailbox
        refused = self._refuse(principal, user, mailbox, match.group("rest"))
        if refused is not None:
            return await self._answer(request, refused)
        async with self._in_flight(mailbox) as over:
            if over:
                return await self._answer(request, MAILBOX_CONCURRENCY)
            answer = self._mail(request.method, match.group("rest"), mailbox, request.headers, body)
            return await self._answer(request, answer)

    def _principal(self, authorization: str) -> Principal | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if token in self.tokens:
            return self.tokens[token]
        claims = _claims(token)
        if claims is None:
            return None
        if "roles" in claims:
            return Principal(None, frozenset(claims["roles"]))
        mailbox = claims.get("upn") or claims.get("preferred_username")
        return Principal(str(mailbox).lower(), frozenset(str(claims.get("scp", "")).split()))

    def _refuse(self, principal: Principal, user: str | None, mailbox: str, rest: str) -> Answer | None:
        needed = "Mail.Send" if rest == "sendMail" or rest.endswith("/send") else "Mail.ReadWrite"
        if needed not in principal.permissions:
            return ACCESS_DENIED
        if user is None and principal.mailbox is None:
            return error(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        if mailbox in self.not_enabled:
            return NOT_REST_ENABLED
        if mailbox not in self.mailboxes:
            return error(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.")
        if principal.mailbox is None and self.rbac is not None and mailbox not in self.rbac:
            return ACCESS_DENIED
        if principal.mailbox is not None and mailbox != principal.mailbox:
            return ACCESS_DENIED
        return None

    @contextlib.asynccontextmanager
    async def _in_flight(self, mailbox: str) -> AsyncIterator[bool]:
        assert self._changed is not None
        async with self._changed:
            self.in_flight[mailbox] += 1
            count = self.in_flight[mailbox]
            self.most_in_flight[mailbox] = max(self.most_in_flight[mailbox], count)
            self._changed.notify_all()
        try:
            if count > MAX_IN_FLIGHT:
                yield True
                return
            if self.hold_until is not None:
                async with self._changed:
                    held = self._changed.wait_for(lambda: self.in_flight[mailbox] >= (self.hold_until or 0))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(held, 5)
            yield False
        finally:
            async with self._changed:
                self.in_flight[mailbox] -= 1
                self._changed.notify_all()

    async def _answer(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        if answer.action == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if answer.action == "garbage":  # a reply that is not HTTP, then the connection closes
            assert request.transport is not None
            request.transport.write(answer.raw or b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n")
            request.transport.close()
            raise asyncio.CancelledError
        if answer.action == "hang":
            assert self._stopping is not None
            await self._stopping.wait()
            raise asyncio.CancelledError
        if answer.raw is not None:
            payload = answer.raw
        elif answer.body is not None:
            payload = json.dumps(answer.body).encode()
        elif answer.code is not None:
            payload = json.dumps({"error": {"code": answer.code, "message": answer.message}}).encode()
        else:
            payload = b""
        headers = dict(answer.headers)
        if payload and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        return web.Response(status=answer.status, body=payload, headers=headers)

    # -- mail ----------------------------------------------------------------------------------------

    def _mime(self, headers: Mapping[str, str], body: bytes) -> bytes | Answer:
        if len(body) > MAX_REQUEST:
            return REQUEST_TOO_LARGE
        if headers.get("Content-Type", "").split(";")[0].strip() != "text/plain":
            return error(400, "ErrorInvalidRequest", "Unsupported content type for a MIME message.")
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return error(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            )

    def _check_sender(self, mailbox: str, parsed: email.message.EmailMessage) -> Answer | None:
        senders = _addresses(parsed, "From")
        if len(senders) != 1:
            return error(400, "ErrorInvalidRequest", "The message has no From address.")
        sender = senders[0].lower()
        if sender != mailbox and sender not in self.send_as[mailbox]:
            return SEND_AS_DENIED
        if not (_addresses(parsed, "To") + _addresses(parsed, "Cc") + _addresses(parsed, "Bcc")):
            return error(400, "ErrorInvalidRecipients", "At least one recipient is required.")
        return None

    def _mail(self, method: str, rest: str, mailbox: str, headers: Mapping[str, str], body: bytes) -> Answer:
        parts = rest.split("/")
        if method == "POST" and rest == "sendMail":
            mime = self._mime(headers, body)
            if isinstance(mime, Answer):
                return mime
            return self._deliver(mailbox, mime, "sendMail", [], None) or Answer(202)
        if method == "POST" and rest == "messages":
            if len(body) > MAX_REQUEST:
                return REQUEST_TOO_LARGE
            mime = self._mime(headers, body)
            if isinstance(mime, Answer):
                return mime
            parsed = email.message_from_bytes(mime, policy=email.policy.default)
            draft_id = f"AAMkAD{next(self._ids):04d}="
            internet_id = str(parsed["Message-ID"] or f"<{draft_id}@contoso.com>")
            with self._lock:
                self.drafts[draft_id] = Draft(draft_id, mailbox, mime, internet_id)
            return Answer(201, body={"id": draft_id, "internetMessageId": internet_id, "isDraft": True})
        if len(parts) == 2 and method == "DELETE" and parts[0] == "messages" and parts[1] in self.drafts:
            with self._lock:
                self.deleted.append(self.drafts.pop(parts[1]).id)
            return Answer(204)
        if len(parts) < 3 or parts[0] != "messages" or parts[1] not in self.drafts:
            return error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        draft = self.drafts[parts[1]]
        if draft.mailbox != mailbox:
            return error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        action = "/".join(parts[2:])
        if method == "POST" and action == "attachments":
            return self._attach(draft, body)
        if method == "POST" and action == "attachments/createUploadSession":
            return self._create_session(draft, body)
        if method == "POST" and action == "send":
            return self._send_draft(draft)
        return error(405, "ErrorInvalidRequest", "The OData request is not supported.")

    def _deliver(
        self,
        mailbox: str,
        mime: bytes,
        via: str,
        added: list[tuple[str, str, bytes]],
        internet_id: str | None,
    ) -> Answer | None:
        parsed = email.message_from_bytes(mime, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        refused = self._check_sender(mailbox, parsed)
        if refused is not None:
            return refused
        recipients = _addresses(parsed, "To") + _addresses(parsed, "Cc") + _addresses(parsed, "Bcc")
        delivered = Delivered(
            mailbox, mime, parsed, via, recipients, _mime_attachments(parsed) + added, internet_id
        )
        with self._lock:
            self.delivered.append(delivered)
        return None

    def _attach(self, draft: Draft, body: bytes) -> Answer:
        if len(body) > MAX_REQUEST:
            return REQUEST_TOO_LARGE
        try:
            item = json.loads(body)
            content = base64.b64decode(item["contentBytes"], validate=True)
            assert item["@odata.type"] == "#microsoft.graph.fileAttachment"
        except (ValueError, KeyError, TypeError, AssertionError, binascii.Error):
            return error(400, "ErrorInvalidRequest", "The attachment is not a valid fileAttachment.")
        draft.added.append(
            (item["name"], item.get("contentType") or "application/octet-stream", content,
             bool(item.get("isInline")), item.get("contentId"))
        )
        return Answer(201, body={"id": f"att-{next(self._ids)}", "name": item["name"]})

    def _create_session(self, draft: Draft, body: bytes) -> Answer:
        try:
            item = json.loads(body)["AttachmentItem"]
            size = int(item["size"])
            assert item["attachmentType"] == "file"
            assert isinstance(item["name"], str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return error(400, "ErrorInvalidRequest", "AttachmentItem is not valid.")
        if size < UPLOAD_MINIMUM:
            return error(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size must be greater than the minimum size.",
            )
        session = f"s{next(self._ids)}"
        with self._lock:
            self.uploads[session] = Upload(draft.id, item)
        root = self.url.rsplit("/v1.0", 1)[0]
        return Answer(
            201,
            body={
                "uploadUrl": f"{root}/upload/{session}?authtoken={_upload_token(session)}",
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "nextExpectedRanges": ["0-"],
            },
        )

    def _upload(self, request: web.Request, body: bytes) -> Answer:
        session = request.path.removeprefix("/upload/")
        upload = self.uploads.get(session)
        if upload is None or request.query.get("authtoken") != _upload_token(session) or upload.done:
            return error(404, "ErrorItemNotFound", "The upload session was not found.")
        if request.method != "PUT":
            return error(405, "ErrorInvalidRequest", "Use PUT to upload.")
        if "Authorization" in request.headers:
            # The upload URL is pre-authenticated; a bearer token there is refused (and would leak it).
            return error(401, "InvalidAuthenticationToken", "Do not send an Authorization header.")
        match = _RANGE_RE.fullmatch(request.headers.get("Content-Range", ""))
        if match is None:
            return error(400, "InvalidContentRange", "The Content-Range header is missing or malformed.")
        start, end, total = (int(g) for g in match.groups())
        size = int(upload.item["size"])
        if total != size or start != len(upload.data) or end < start or end >= total:
            return error(400, "InvalidContentRange", f"Expected bytes {len(upload.data)}- of {size}.")
        if end - start + 1 != len(body) or int(request.headers.get("Content-Length", "-1")) != len(body):
            return error(400, "InvalidContentRange", "The body does not match the Content-Range.")
        last = end == total - 1
        if len(body) > MAX_REQUEST or (not last and len(body) % CHUNK_UNIT):
            return error(
                400, "InvalidContentRange", "Chunks must be at most 4 MB and multiples of 320 KiB."
            )
        upload.data += body
        upload.ranges.append(f"{start}-{end}/{total}")
        if not last:
            return Answer(200, body={"expirationDateTime": "2030-01-01T00:00:00Z",
                                     "nextExpectedRanges": [f"{end + 1}-"]})
        upload.done = True
        draft = self.drafts[upload.message_id]
        draft.added.append(
            (upload.item["name"], upload.item.get("contentType") or "application/octet-stream",
             bytes(upload.data), bool(upload.item.get("isInline")), upload.item.get("contentId"))
        )
        return Answer(201, headers={"Location": f"{self.url}/attachments/{session}"})

    def _send_draft(self, draft: Draft) -> Answer:
        pending = [u for u in self.uploads.values() if u.message_id == draft.id and not u.done]
        if pending:
            return error(400, "ErrorInvalidRequest", "An attachment upload is not finished.")
        added = [(name, kind, data) for name, kind, data, _, _ in draft.added]
        refused = self._deliver(draft.mailbox, draft.mime, "draft", added, draft.internet_message_id)
        if refused is not None:
            return refused
        with self._lock:
            del self.drafts[draft.id]
        return Answer(202)

    # -- for tests -----------------------------------------------------------------------------------

    def requests_to(self, suffix: str) -> list[Received]:
        """The requests whose path (without the query) ends with ``suffix``."""
        return [r for r in self.received if r.path.split("?")[0].endswith(suffix)]


def attachments_of(delivered: Delivered) -> Iterator[tuple[str, bytes]]:
    """``(filename, bytes)`` of every attachment that arrived."""
    for filename, _kind, data in delivered.attachments:
        yield filename, data
