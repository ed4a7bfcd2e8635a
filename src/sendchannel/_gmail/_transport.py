"""Gmail's transport: what Google's client needs of an ``httplib2.Http``, without its silent re-sends.

The client's usual transport, httplib2, sends a request again, POST included, when the connection drops
before the answer: for ``users.messages.send`` that can deliver a message twice. This transport opens one
fresh connection per request, with no keep-alive reuse and no silent retry. A connection that fails before
the whole request is written means nothing was sent (``NotSent``); a connection lost after it was written
means the outcome is unknown (``AnswerLost``). The only request it repeats is one answered 401, after
refreshing the token: Gmail acted on nothing it answered 401. TLS failures are read as the shared HTTP
base reads them (``sendchannel._http``): a connection closed mid-handshake is a lost connection, anything
else a refused handshake.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import httplib2

from sendchannel._http import TLS_CLOSED, parse_retry_after

__all__ = ["AnswerLost", "NotSent", "TlsRefused", "TokenEndpointFailed", "Transport", "describe"]


class NotSent(Exception):
    """The connection failed before the whole request was written: the server acted on nothing."""


class TlsRefused(NotSent):
    """The TLS handshake failed: the certificate could not be verified, or no common protocol."""

    def __init__(self, where: str, error: ssl.SSLError) -> None:
        super().__init__(f"{where}: {describe(error)}")
        self.where = where
        self.error = error


class AnswerLost(Exception):
    """The request was written, then the connection failed before a whole answer came back."""


def describe(exc: BaseException) -> str:
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


class Transport:
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
            NotSent: The connection failed before the whole request was written.
            AnswerLost: The request was written; the answer did not come back whole.
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
            raise NotSent(f"unsupported URL scheme {parts.scheme!r} in {uri}")
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
                if isinstance(exc, TLS_CLOSED):
                    raise NotSent(f"{where}: {describe(exc)}") from exc
                raise TlsRefused(where, exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise NotSent(f"{where}: {describe(exc)}") from exc
            try:
                connection.request(method, target, body=body, headers=dict(headers))
            except (OSError, http.client.HTTPException) as exc:
                raise NotSent(f"{where}: {describe(exc)}") from exc
            try:
                answer = connection.getresponse()
                content = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                raise AnswerLost(f"{where}: {describe(exc)}") from exc
        finally:
            connection.close()
        response = httplib2.Response(answer)
        try:
            content = _decoded(content, response.get("content-encoding"))
        except zlib.error as exc:
            raise AnswerLost(f"{where}: the answer could not be decompressed ({exc})") from exc
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

    def __init__(self, transport: Transport) -> None:
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
        except (NotSent, AnswerLost) as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        status = int(response.status)
        # google-auth reads every answer of a token endpoint (a POST) as an OAuth JSON object: anything
        # else (a proxy's HTML page) makes it fail with a TypeError, a 5xx without an OAuth error reads as
        # a refused grant, and it retries 5xx and 429 itself, sleeping. Such answers are reported here
        # instead, and the retry layer decides about retrying. (GETs, such as a metadata server's, may
        # answer plain text.)
        unreadable = method.upper() == "POST" and not _is_json_object(content)
        if status in (408, 429) or status >= 500 or unreadable:
            retry_after = parse_retry_after(response.get("retry-after"), time.time())
            raise TokenEndpointFailed(status, retry_after, content)
        return _TokenResponse(status, dict(response), content)


def _is_json_object(content: bytes) -> bool:
    try:
        return isinstance(json.loads(content.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


class TokenEndpointFailed(google.auth.exceptions.TransportError):
    """The token endpoint answered 408, 429 or 5xx, or with something that is not OAuth JSON."""

    def __init__(self, status: int, retry_after: float | None, content: bytes) -> None:
        text = " ".join(re.sub(r"<[^>]*>", " ", content.decode("utf-8", "replace")).split())[:200]
        super().__init__(f"{status}: {text}" if text else str(status))  # type: ignore[no-untyped-call]
        self.status = status
        self.retry_after = retry_after
