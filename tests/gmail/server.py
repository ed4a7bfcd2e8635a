"""A local HTTP server on 127.0.0.1 that answers as the Gmail API and Google's OAuth token endpoint document.

It implements what GmailOAuthChannel uses:

* ``POST /token``: the OAuth 2.0 token endpoint. ``grant_type=refresh_token`` refreshes an authorised-user
  grant (``invalid_grant`` once the refresh token is revoked, ``invalid_client`` for a wrong secret);
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` answers a service account (domain-wide
  delegation), reading the JWT's subject and scope without checking its signature.
* ``POST /gmail/v1/users/{userId}/messages/send`` with ``{"raw": base64url}``, and the upload path
  ``POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=multipart|media``.
* ``GET /gmail/v1/users/{userId}/profile`` (users.getProfile) and ``GET .../settings/sendAs``
  (users.settings.sendAs.list).

Every API call needs ``Authorization: Bearer <token>`` with a token this server issued and has not
expired, and a scope the discovery document lists for the method; otherwise it answers 401 or 403 with
Google's error bodies. Tests script other answers (``fail_next``), lost connections (``drop_next``) and
slow sends (``hold_sends``), and read back what arrived (``requests``, ``sent``, ``token_requests``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.message
import email.policy
import http.server
import itertools
import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests import sentinels

GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_SETTINGS_BASIC = "https://www.googleapis.com/auth/gmail.settings.basic"
FULL = "https://mail.google.com/"

#: The scopes the Gmail discovery document lists for each method.
SCOPES_FOR = {
    "send": {
        FULL,
        GMAIL_SEND,
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/gmail.modify",
    },
    "profile": {
        FULL,
        GMAIL_READONLY,
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/gmail.metadata",
        "https://www.googleapis.com/auth/gmail.modify",
    },
    "send-as": {FULL, GMAIL_READONLY, GMAIL_SETTINGS_BASIC, "https://www.googleapis.com/auth/gmail.modify"},
}

CLIENT_ID = "1234-test.apps.googleusercontent.com"
CLIENT_SECRET = sentinels.CLIENT_SECRET
REFRESH_TOKEN = sentinels.REFRESH_TOKEN
#: Access tokens the server issues: the sentinel with a serial number, so the log guard sees any leak.
TOKEN_PREFIX = sentinels.TOKEN

_SEND_PATH = re.compile(r"^(/upload)?/gmail/v1/users/(?P<user>[^/]+)/messages/send$")
_PROFILE_PATH = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/profile$")
_SEND_AS_PATH = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/settings/sendAs$")


def google_error(
    status: int, reason: str, message: str, *, domain: str = "global", status_name: str | None = None
) -> dict[str, Any]:
    """An error body as the Gmail API writes it."""
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    if status_name:
        body["status"] = status_name
    return {"error": body}


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Sent:
    """A message the server accepted: the raw RFC 5322 bytes and their parse."""

    raw: bytes
    message: email.message.EmailMessage
    path: str
    upload_type: str | None
    id: str


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class GmailServer:
    """The server; start it with ``with GmailServer() as server:`` (or ``start()`` / ``stop()``)."""

    def __init__(self, address: str = "alice@example.com", *, tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.tls = tls
        #: The scopes the token endpoint grants (and reports in its ``scope`` field).
        self.granted_scopes: list[str] = [GMAIL_SEND]
        self.valid_refresh_tokens = {REFRESH_TOKEN}
        #: Service-account subjects the Workspace admin allowed (domain-wide delegation).
        self.delegated_subjects = {address}
        self.send_as: list[dict[str, Any]] = [
            {"sendAsEmail": address, "isPrimary": True, "isDefault": True, "displayName": "Alice"},
        ]
        self.requests: list[Recorded] = []
        self.sent: list[Sent] = []
        self.token_requests: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        #: When set, sends wait for this event before answering (to hold several in flight at once).
        self.hold_sends: threading.Event | None = None
        self._tokens: dict[str, list[str]] = {}
        self._script: collections.deque[_Answer | str] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(0x18C0_0000_0000)
        self._token_numbers = itertools.count(1)
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> GmailServer:
        server = self

        class Handler(_Handler):
            gmail = server

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="gmail-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.hold_sends is not None:
            self.hold_sends.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> GmailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The API root to give as api_endpoint."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    # -- scripting ----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: dict[str, Any] | bytes | str,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` API calls with this status and body (JSON when a dict)."""
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        else:
            data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._script.extend(_Answer(status, data, dict(headers or {})) for _ in range(times))

    def drop_next(self, times: int = 1) -> None:
        """Read the next ``times`` API requests whole, then close the connection without answering."""
        with self._lock:
            self._script.extend("drop" for _ in range(times))

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid (the API answers 401 to them)."""
        with self._lock:
            self._tokens.clear()

    def revoke(self, refresh_token: str = REFRESH_TOKEN) -> None:
        """Revoke a grant: refreshing it answers invalid_grant, and its access tokens stop working."""
        with self._lock:
            self.valid_refresh_tokens.discard(refresh_token)
            self._tokens.clear()

    def api_requests(self) -> list[Recorded]:
        """The requests that were not for the token endpoint."""
        return [r for r in self.requests if r.path != "/token"]

    def issued_tokens(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._tokens))

    # -- answers ------------------------------------------------------------------------------

    def _next_scripted(self) -> _Answer | str | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
            if form.get("refresh_token") not in self.valid_refresh_tokens:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            scopes = list(self.granted_scopes)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            if claims.get("sub") not in self.delegated_subjects:
                return 401, {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens using this "
                    "method, or client not authorized for any of the scopes requested.",
                }
            scopes = str(claims.get("scope", "")).split()
        else:
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Invalid grant_type: {grant}",
            }
        token = f"{TOKEN_PREFIX}-{next(self._token_numbers)}"
        with self._lock:
            self._tokens[token] = scopes
        return 200, {
            "access_token": token,
            "expires_in": 3599,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }

    def authorise(self, headers: dict[str, str], operation: str) -> _Answer | None:
        """None when the bearer token may do ``operation``, else Google's 401 or 403 answer."""
        value = headers.get("authorization", "")
        token = value[len("Bearer ") :] if value.startswith("Bearer ") else None
        with self._lock:
            scopes = self._tokens.get(token) if token else None
        if scopes is None:
            body = google_error(401, "authError", "Invalid Credentials", status_name="UNAUTHENTICATED")
            body["error"]["errors"][0].update(locationType="header", location="Authorization")
            return _Answer(
                401,
                json.dumps(body).encode(),
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if not SCOPES_FOR[operation].intersection(scopes):
            body = google_error(
                403,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
                status_name="PERMISSION_DENIED",
            )
            body["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "gmail.googleapis.com",
                        "method": "caribou.api.proto.MailboxService",
                    },
                }
            ]
            return _Answer(403, json.dumps(body).encode())
        return None

    def send(self, record: Recorded, upload: bool) -> tuple[int, dict[str, Any]]:
        upload_type = record.query.get("uploadType") if upload else None
        try:
            raw = _raw_of(record, upload_type)
        except ValueError as exc:
            return 400, google_error(400, "invalidArgument", str(exc), status_name="INVALID_ARGUMENT")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        if not any(parsed.get(name) for name in ("To", "Cc", "Bcc")):
            return 400, google_error(
                400, "invalidArgument", "Recipient address required", status_name="INVALID_ARGUMENT"
            )
        message_id = f"{next(self._ids):x}"
        with self._lock:
            self.sent.append(Sent(raw, parsed, record.path, upload_type, message_id))
        return 200, {"id": message_id, "threadId": message_id, "labelIds": ["SENT"]}


def _jwt_claims(assertion: str) -> dict[str, Any]:
    try:
        payload = assertion.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


def _raw_of(record: Recorded, upload_type: str | None) -> bytes:
    if upload_type is None:
        try:
            data = json.loads(record.body)
        except ValueError:
            raise ValueError("Invalid JSON payload received.") from None
        raw = data.get("raw") if isinstance(data, dict) else None
        if not raw:
            raise ValueError(
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
            )
        try:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except ValueError:
            raise ValueError("Invalid value for ByteString: raw") from None
    if upload_type == "media":
        return record.body
    if upload_type == "multipart":
        content_type = record.headers.get("content-type", "")
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if match is None:
            raise ValueError("multipart upload without a boundary")
        delimiter = b"--" + match[1].encode()
        parts = [p for p in record.body.split(delimiter)[1:] if not p.startswith(b"--")]
        if len(parts) != 2:
            raise ValueError(f"a multipart upload has 2 parts (metadata, media), got {len(parts)}")
        media = parts[1]
        # The line break after the delimiter tells the style (the client writes LF); the one before the
        # next delimiter belongs to that delimiter, not to the message.
        newline = b"\r\n" if media.startswith(b"\r\n") else b"\n"
        head, _, content = media[len(newline) :].partition(newline + newline)
        if b"message/rfc822" not in head.lower():
            raise ValueError("the media part is not message/rfc822")
        return content.removesuffix(newline)
    raise ValueError(f"unsupported uploadType {upload_type!r}")


class _Handler(http.server.BaseHTTPRequestHandler):
    gmail: GmailServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        record = Recorded(
            self.command,
            parts.path,
            dict(urllib.parse.parse_qsl(parts.query)),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        with self.gmail._lock:
            self.gmail.requests.append(record)
        return record

    def _answer(
        self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        sent_headers = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        for name, value in sent_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        # The request was read whole; the connection goes away before any answer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        record = self._record()
        gmail = self.gmail
        if record.path == "/token" and record.method == "POST":
            form = dict(urllib.parse.parse_qsl(record.body.decode()))
            status, body = gmail.token(form)
            self._answer(status, body, {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"})
            return
        send = _SEND_PATH.match(record.path)
        if send and record.method == "POST":
            operation = "send"
        elif _PROFILE_PATH.match(record.path) and record.method == "GET":
            operation = "profile"
        elif _SEND_AS_PATH.match(record.path) and record.method == "GET":
            operation = "send-as"
        else:
            self._answer(404, google_error(404, "notFound", "Not Found"))
            return
        refused = gmail.authorise(record.headers, operation)
        if refused is not None:
            self._answer(refused.status, refused.body, refused.headers)
            return
        scripted = gmail._next_scripted()
        if scripted == "drop":
            self._drop()
            return
        if isinstance(scripted, _Answer):
            self._answer(scripted.status, scripted.body, scripted.headers)
            return
        if operation == "send":
            with gmail._lock:
                gmail.in_flight += 1
                gmail.most_in_flight = max(gmail.most_in_flight, gmail.in_flight)
            try:
                if gmail.hold_sends is not None and not gmail.hold_sends.wait(10):
                    self._answer(500, google_error(500, "backendError", "held too long"))
                    return
                status, body = gmail.send(record, upload=record.path.startswith("/upload/"))
            finally:
                with gmail._lock:
                    gmail.in_flight -= 1
            self._answer(status, body)
        elif operation == "profile":
            self._answer(
                200,
                {
                    "emailAddress": gmail.address,
                    "messagesTotal": 42,
                    "threadsTotal": 17,
                    "historyId": "123456",
                },
            )
        else:
            self._answer(200, {"sendAs": gmail.send_as})
