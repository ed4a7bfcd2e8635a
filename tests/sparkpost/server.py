"""A local HTTP server on 127.0.0.1 that answers as SparkPost's API reference documents.

It serves ``POST /api/v1/transmissions`` and ``GET /api/v1/sending-domains``, checks the ``Authorization``
header against its keys and their permissions, refuses senders outside its verified sending domains
(7001), refuses recipients it is told are invalid (``rcpt_to_errors``) or suppressed (1902), and records
every request it receives. Like SparkPost, it runs the template language over the top-level headers and
the first text/plain and text/html parts of RFC822 content (expressions, the brace macros and triple
braces, as the Substitutions Reference describes), so a test sees what a recipient would.

Tests can script the next answers: any documented error body, a dropped connection after the request
was read (``drop``: nothing done; ``deliver-then-drop``: the transmission handled, its answer lost), or
no answer at all (for timeouts). A long run can instead give ``faults``, which chooses such an answer (or
None) for each new transmission the script does not answer.

Like SparkPost, it honours the ``Idempotency-Key`` of transmissions for 24 hours (on ``clock``, which a
test may move): a repeat with the same body gets the first answer again with ``X-Idempotent-Replayed:
true`` and sends nothing; the same key with another body is a 409 with code 1600; a repeat while the first
request is still being handled is a 409 with code 1601.
"""

from __future__ import annotations

import collections
import email
import email.message
import email.policy
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import sentinels

API_KEY = sentinels.API_KEY
#: How long SparkPost keeps an Idempotency-Key: 24 hours.
IDEMPOTENCY_WINDOW = 24 * 3600.0

# -- documented answers ----------------------------------------------------------------------------------


@dataclass
class Answer:
    """A scripted answer: a status and JSON body, or ``action`` "drop" (close unanswered), "hang", or
    "deliver-then-drop" (handle the transmission as usual, then close without answering)."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    action: str = "answer"
    raw: bytes | None = None


def error_body(message: str, code: str | None = None, description: str | None = None) -> dict[str, Any]:
    """``{"errors": [{"message", "description", "code"}]}`` as SparkPost writes it."""
    error: dict[str, str] = {"message": message}
    if description is not None:
        error["description"] = description
    if code is not None:
        error["code"] = code
    return {"errors": [error]}


UNAUTHORIZED = Answer(401, {"errors": [{"message": "Unauthorized."}]})
FORBIDDEN = Answer(403, {"errors": [{"message": "Forbidden."}]})
PERMISSION_DENIED = Answer(403, error_body("permission denied", "1100"))
INVALID_DOMAIN = Answer(
    400, error_body("Invalid domain", "7001", "Unconfigured or unverified sending domain.")
)
RESTRICTED_DOMAIN = Answer(
    400,
    error_body(
        "Restricted domain", "7000", "Please contact SparkPost support to get this domain authorized."
    ),
)
HOURLY_LIMIT = Answer(420, error_body("Exceed Sending Limit (hourly)", "2101"))
DAILY_LIMIT = Answer(420, error_body("Exceed Sending Limit (daily)", "2102"))
SANDBOX_LIMIT = Answer(420, error_body("Exceed Sending Limit (sandbox)", "2103"))
MONTHLY_LIMIT = Answer(420, error_body("Exceed Sending Limit (monthly)", "2105"))
TOO_MANY_REQUESTS = Answer(429, error_body("Too many requests"))
GENERATION_UNAVAILABLE = Answer(503, error_body("Message generation module not available", "1900"))
INVALID_DATA = Answer(
    422, error_body("invalid data format/type", "1300", "Error while parsing the email_rfc822 content")
)
MISSING_FIELD = Answer(
    422, error_body("required field is missing", "1400", "content object or template_id required")
)
GENERATION_FAILED = Answer(400, error_body("Message failed to generate", "1901", "Invalid MIME structure"))
TOO_LARGE = Answer(413, error_body("Request Entity Too Large"))
INTERNAL_ERROR = Answer(500, error_body("Failed to update database", "1500"))
NOT_FOUND = Answer(404, error_body("invalid URI", "1101"))


def suppressed_answer(transmission_id: str = "102593777022651116") -> Answer:
    """The 1902 answer for a suppressed recipient: errors and results together, status 400."""
    return Answer(
        400,
        {
            "errors": [
                {
                    "code": "1902",
                    "message": "Message generation rejected",
                    "description": "recipient address was suppressed due to system policy",
                }
            ],
            "results": {
                "total_rejected_recipients": 0,
                "id": transmission_id,
                "total_accepted_recipients": 1,
            },
        },
    )


def domain_object(domain: str, *, verified: bool = True, blocked: bool = False) -> dict[str, Any]:
    """A sending domain object as ``GET /sending-domains`` lists it."""
    status = "valid" if verified else "unverified"
    return {
        "domain": domain,
        "status": {
            "ownership_verified": verified,
            "spf_status": "unverified",
            "abuse_at_status": "unverified",
            "dkim_status": status,
            "cname_status": status,
            "mx_status": "unverified",
            "compliance_status": "blocked" if blocked else "valid",
            "postmaster_at_status": "unverified",
            "verification_mailbox_status": "unverified",
        },
        "shared_with_subaccounts": False,
        "is_default_bounce_domain": False,
    }


# -- SparkPost's template language (the parts the Substitutions Reference documents) -------------------

_MACROS = {
    "opening_double_curly()": "{{",
    "closing_double_curly()": "}}",
    "opening_triple_curly()": "{{{",
    "closing_triple_curly()": "}}}",
}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class TemplateError(ValueError):
    """Syntax SparkPost would refuse with 3000."""


def render_template(text: str, data: Mapping[str, Any]) -> str:
    """Render ``{{ expr }}`` and ``{{{ expr }}}``: names from ``data`` (missing ones give ""), macros."""
    out: list[str] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            out.append(text[position:])
            return "".join(out)
        out.append(text[position:start])
        triple = text.startswith("{{{", start)
        closing = "}}}" if triple else "}}"
        inner_start = start + len(closing)
        end = text.find(closing, inner_start)
        if end < 0:
            raise TemplateError(f"unterminated expression at {start}: {text[start : start + 30]!r}")
        expression = text[inner_start:end].strip()
        if expression in _MACROS:
            out.append(_MACROS[expression])
        elif _NAME_RE.fullmatch(expression):
            value: Any = data
            for part in expression.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            out.append("" if value is None else str(value))
        else:
            raise TemplateError(f"cannot parse expression {expression!r}")
        position = end + len(closing)


# -- what the server received --------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server read it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def rfc822(self) -> email.message.EmailMessage:
        """The message in ``content.email_rfc822``, parsed as SparkPost would (before substitution)."""
        parsed = email.message_from_string(self.json["content"]["email_rfc822"], policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class Delivered:
    """A transmission SparkPost accepted, as its recipients see it (after the template language ran)."""

    request: Received
    recipients: list[str]
    headers: dict[str, list[str]]
    text: str | None
    html: str | None
    mime: email.message.EmailMessage

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def _first_body(message: email.message.EmailMessage, subtype: str) -> email.message.EmailMessage | None:
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == f"text/{subtype}":
            return part  # type: ignore[return-value]
    return None


# -- the server ------------------------------------------------------------------------------------------


class SparkpostServer:
    """A SparkPost API on 127.0.0.1 for tests; ``url`` is its API root (``.../api/v1``).

    Args:
        keys: API key -> permissions (``"transmissions"``, ``"sending_domains"``).
        sending_domains: The account's sending domain objects (see :func:`domain_object`).
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, set[str]] | None = None,
        sending_domains: list[dict[str, Any]] | None = None,
    ) -> None:
        self.keys = dict(keys) if keys is not None else {API_KEY: {"transmissions", "sending_domains"}}
        self.sending_domains = (
            sending_domains if sending_domains is not None else [domain_object("example.com")]
        )
        self.received: list[Received] = []
        self.delivered: list[Delivered] = []
        self.invalid_recipients: set[str] = set()
        self.suppressed: set[str] = set()
        self._script: collections.deque[Answer] = collections.deque()
        #: Called (under the server's lock) for each transmission that is not a repeat of a remembered
        #: Idempotency-Key and that the script does not answer: an Answer to give instead, or None.
        self.faults: Callable[[Received], Answer | None] | None = None
        #: Where the idempotency window's time comes from (seconds); a test may replace it.
        self.clock = time.time
        # Idempotency-Key -> (time first seen, body, the first answer or None while it is being handled)
        self._keys: dict[str, tuple[float, bytes, Answer | None]] = {}
        self._ids = itertools.count(11668787484950529)
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/api/v1"

    def start(self) -> SparkpostServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def script(self, answer: Answer, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``answer`` instead of the normal behaviour."""
        with self._lock:
            self._script.extend([answer] * times)

    # -- handling ------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(handler.path)
        received = Received(
            method=method,
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            client=handler.client_address[:2],
        )
        key = received.headers.get("idempotency-key") if received.path.endswith("/transmissions") else None
        with self._lock:
            self.received.append(received)
            scripted = self._script.popleft() if self._script else None
            earlier = self._keys.get(key) if key else None
            if earlier is not None and self.clock() - earlier[0] >= IDEMPOTENCY_WINDOW:
                earlier = None
            if scripted is None and earlier is None and self.faults is not None and key:
                scripted = self.faults(received)
            if key and earlier is None:
                self._keys[key] = (self.clock(), body, None)
        if earlier is not None:
            answer = self._repeat(earlier, body)
        else:
            if scripted is not None and scripted.action == "deliver-then-drop":
                handled = self._respond(received)
                answer = replace(handled, action="drop")
            else:
                handled = answer = scripted or self._respond(received)
            if key:
                self._remember(key, body, handled)
        if answer.action == "drop":
            handler.close_connection = True
            return
        if answer.action == "hang":
            self._release.wait(10)
            handler.close_connection = True
            return
        payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _repeat(self, earlier: tuple[float, bytes, Answer | None], body: bytes) -> Answer:
        if earlier[1] != body:
            return Answer(409, error_body("idempotency key reused with a different request body", "1600"))
        if earlier[2] is None:
            return Answer(409, error_body("a request with this idempotency key is in progress", "1601"))
        first = earlier[2]
        return replace(first, action="answer", headers={**first.headers, "X-Idempotent-Replayed": "true"})

    def _remember(self, key: str, body: bytes, answer: Answer) -> None:
        with self._lock:
            if answer.action == "answer" and answer.status == 200 and answer.raw is None:
                # SparkPost keeps the answer of a created transmission (also when it never reached the
                # client), and replays it for the same key and body.
                self._keys[key] = (self._keys[key][0], body, answer)
            else:
                del self._keys[key]

    def _respond(self, received: Received) -> Answer:
        path = received.path.rstrip("/")
        if path == "/api/v1/transmissions" and received.method == "POST":
            permission = "transmissions"
        elif path == "/api/v1/sending-domains" and received.method == "GET":
            permission = "sending_domains"
        else:
            return NOT_FOUND
        permissions = self.keys.get(received.headers.get("authorization", ""))
        if permissions is None:
            return UNAUTHORIZED
        if permission not in permissions:
            return FORBIDDEN
        if permission == "sending_domains":
            return Answer(200, {"results": self.sending_domains})
        return self._transmit(received)

    def _verified(self, domain: str) -> bool:
        return any(
            d["domain"] == domain
            and d["status"]["ownership_verified"]
            and d["status"]["compliance_status"] != "blocked"
            for d in self.sending_domains
        )

    def _transmit(self, received: Received) -> Answer:
        try:
            payload = received.json
        except ValueError:
            return Answer(400, error_body("invalid params", "1200", "Invalid JSON"))
        recipients = payload.get("recipients")
        content = payload.get("content")
        if not isinstance(recipients, list) or not isinstance(content, dict):
            return MISSING_FIELD
        rfc822 = content.get("email_rfc822")
        if not isinstance(rfc822, str):
            return MISSING_FIELD
        mime = received.rfc822
        sender = mime["From"].addresses[0] if mime["From"] and mime["From"].addresses else None
        if sender is None or not self._verified(sender.domain.lower()):
            return INVALID_DOMAIN
        data = payload.get("substitution_data") or {}
        try:
            headers: dict[str, list[str]] = {}
            for name, value in mime.items():
                headers.setdefault(name.lower(), []).append(render_template(str(value), data))
            bodies = {}
            for subtype in ("plain", "html"):
                part = _first_body(mime, subtype)
                # A mail client shows CRLF line breaks as newlines.
                text = None if part is None else part.get_content().replace("\r\n", "\n")
                bodies[subtype] = None if text is None else render_template(text, data)
        except TemplateError as exc:
            return Answer(422, error_body("substitution language syntax error", "3000", str(exc)))
        emails = [r.get("address", {}).get("email") for r in recipients]
        errors = [
            {
                "message": "invalid data format/type",
                "description": f"invalid recipient address.email: {e}",
                "code": "1300",
            }
            for e in emails
            if e in self.invalid_recipients or not isinstance(e, str) or "@" not in e
        ]
        valid = [e for e in emails if isinstance(e, str) and "@" in e and e not in self.invalid_recipients]
        if not valid:
            return Answer(400, error_body("At least one valid recipient is required", "5002"))
        transmission_id = str(next(self._ids))
        if len(valid) == 1 and valid[0] in self.suppressed:
            return suppressed_answer(transmission_id)
        with self._lock:
            self.delivered.append(Delivered(received, valid, headers, bodies["plain"], bodies["html"], mime))
        results: dict[str, Any] = {
            "total_rejected_recipients": len(errors),
            "total_accepted_recipients": len(valid),
            "id": transmission_id,
        }
        body: dict[str, Any] = {"results": results}
        if errors:
            results["rcpt_to_errors"] = errors
            body["errors"] = [{"message": "transmission created, but with validation errors", "code": "2000"}]
        return Answer(200, body)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true (for requests handled on the server's threads)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the server")
        time.sleep(0.01)
