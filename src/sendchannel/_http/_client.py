"""HttpClient: one aiohttp session per channel, and the one place where its failures become SendErrors.

The boundary (as httpx's ``map_httpcore_exceptions``): every aiohttp and TLS exception is turned here into
the library's own error, by whether the request was written:

    failed before the request was complete (connect, DNS, TLS, proxy, writing the body)
                                            ConnectionLostError: the provider acted on nothing
    untrusted certificate, no TLS in common PermanentError with the remedy (tls_context=)
    failed after it was written (no answer within the timeout, connection dropped, unreadable answer)
                                            DeliveryUnknownError for a request that delivers a message,
                                            ConnectionLostError for one that changes nothing (a read)

Nothing above this module catches an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping

import aiohttp

from sendchannel._http._answer import HttpAnswer
from sendchannel._http._redact import Redactor
from sendchannel._http._tls import tls_failure, tls_refused
from sendchannel._urls import redact_url
from sendchannel.errors import ConfigurationError, ConnectionLostError, DeliveryUnknownError, SendError

__all__ = ["HttpClient", "check_base_url", "check_timeout", "check_tls_context"]

#: aiohttp's words for a request whose body could not be written (the server got no complete request).
_NOT_WRITTEN = ("Can not write request body", "Failed to send bytes into the underlying connection")


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds: a positive, finite number (as every channel takes it)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigurationError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError(
            f"timeout must be a positive, finite number of seconds, got {timeout!r}; every network wait "
            "needs a bound (a stalled server would otherwise hold the send forever)"
        )
    return float(timeout)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def check_base_url(base_url: object, *, example: str, exposes: str) -> str:
    """``base_url`` as an API root: http(s), a host and a path; plain http only for this machine (tests).

    Args:
        base_url: What the user passed.
        example: The provider's real root, shown in the messages (``https://graph.microsoft.com/v1.0``).
        exposes: What plain http would expose (``"the API key"``, ``"the access token"``).

    Returns:
        The URL without a trailing slash, a query or a fragment.
    """
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    parts = urllib.parse.urlsplit(base_url.strip())
    shown = redact_url(parts)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {shown!r} is not an http(s) URL; give the API root, like {example}"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"base_url {shown!r} uses plain http, which would send {exposes} unencrypted; use https (plain "
            "http is accepted only for a server on this machine, such as a test server)"
        )
    if parts.path.strip("/") == "":
        raise ConfigurationError(
            f"base_url {shown!r} has no path; give the API root with its path, like {example}"
        )
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/"), query="", fragment=""))


def check_tls_context(tls_context: object) -> ssl.SSLContext | None:
    """``tls_context`` if it is an ``ssl.SSLContext`` or None."""
    if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
        raise ConfigurationError(
            f"tls_context must be an ssl.SSLContext, such as ssl.create_default_context(cafile=...), got "
            f"{type(tls_context).__name__}"
        )
    return tls_context


class HttpClient:
    """The HTTP side of one channel: a session (a connection pool), its timeouts, TLS and redaction.

    The session is made on first use, inside the running event loop, and closed by :meth:`aclose`; a
    closed client refuses further requests.

    Args:
        provider: The provider's name for messages (``"SparkPost"``).
        owner: What the channel is called in the use-after-close message (``"SparkpostChannel"``).
        timeout: Seconds for each network wait: connecting (with TLS), then each wait for the answer.
        tls_context: The ``ssl.SSLContext`` to verify servers with (default: the system's trust store).
        redact: Removes the channel's secrets from texts that may hold them.
        max_connections: At most this many connections at once (None: aiohttp's default of 100).
        headers: Headers sent with every request (a User-Agent is added).
        remedy: How a user trusts a private certificate authority, for the untrusted-certificate error.
        channel: The channel's name, set as the ``channel`` of every error raised here.
    """

    def __init__(
        self,
        *,
        provider: str,
        owner: str,
        timeout: float,
        tls_context: ssl.SSLContext | None = None,
        redact: Redactor | None = None,
        max_connections: int | None = None,
        headers: Mapping[str, str] | None = None,
        remedy: str = "pass tls_context=ssl.create_default_context(cafile=...)",
        channel: str | None = None,
    ) -> None:
        from sendchannel import __version__

        self.provider = provider
        self._owner = owner
        self.timeout = check_timeout(timeout)
        self._tls_context = check_tls_context(tls_context)
        self.redact = redact if redact is not None else Redactor()
        self._max_connections = max_connections
        self._headers = {"User-Agent": f"sendchannel/{__version__}", **(headers or {})}
        self._remedy = remedy
        self.channel = channel
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self.closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self.closed:
            raise RuntimeError(f"this {self._owner} is closed; build a new one")
        if self._session is None:
            context = self._tls_context if self._tls_context is not None else ssl.create_default_context()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections or 100, ssl=context),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout),
                headers=self._headers,
                auto_decompress=True,
                # Not trust_env: aiohttp would then read ~/.netrc and the proxy variables on a worker thread
                # for every request (two thread hops a send); the proxy is looked up once a host instead.
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delivers: bool = False,
        reference: str = "",
        unknown_advice: str = "It is not retried, to avoid sending it twice: check the provider before "
        "sending it again.",
    ) -> HttpAnswer:
        """Send one request and read the whole answer; every failure becomes a SendError.

        Args:
            method: ``"GET"``, ``"POST"``...
            url: The full URL.
            body: The request body, already encoded.
            headers: Headers for this request (secrets such as Authorization go here).
            delivers: Whether the request delivers a message, so a failure after it was written leaves the
                outcome unknown (else it is a lost connection: a read changes nothing).
            reference: Words that identify the message in an unknown outcome (``" (Message-ID <...>)"``).
            unknown_advice: What the user should do about an unknown outcome.

        Raises:
            ConnectionLostError: Nothing was sent (or nothing was changed, for a read).
            DeliveryUnknownError: The request was written and the answer was lost, for a delivering one.
            PermanentError: The server's certificate is not trusted, or TLS failed.
            RuntimeError: The client is closed.
        """
        session = self._open()
        try:
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy_for(url)
            ) as response:
                content = await response.read()
                # aiohttp's headers are a read-only, case-insensitive mapping already.
                return HttpAnswer(
                    status=response.status, reason=response.reason or "", headers=response.headers,
                    body=content, url=url,
                )
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            failure = self._failure(exc, url, delivers=delivers, reference=reference, advice=unknown_advice)
            failure.channel = self.channel
            if isinstance(exc, aiohttp.ClientResponseError):
                # Its repr holds the request's headers, Authorization included: chain nothing that shows it.
                raise failure from None
            raise failure from exc

    def _failure(
        self, exc: BaseException, url: str, *, delivers: bool, reference: str, advice: str
    ) -> SendError:
        where = self.redact(redact_url(url), limit=None)
        detail = self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        refused = tls_failure(exc) if isinstance(exc, (aiohttp.ClientConnectorError, ssl.SSLError)) else None
        if refused is not None:
            # A certificate that cannot be verified, or no TLS version or cipher in common: trying again
            # fails the same way until the configuration changes.
            outcome = "nothing was sent" if delivers else "nothing was done"
            return tls_refused(
                refused, what=f"{self.provider} at {where}", outcome=outcome, remedy=self._remedy,
                scrub=self.redact,
            )
        before = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)) or (
            isinstance(exc, aiohttp.ClientConnectionError) and any(w in str(exc) for w in _NOT_WRITTEN)
        )
        if before or not delivers:
            what = "nothing was sent" if delivers else "nothing was changed"
            return ConnectionLostError(
                f"Could not complete the request to {self.provider} at {where} ({detail}); {what}. "
                "Check the network, proxy settings and the URL, then try again."
            )
        if isinstance(exc, asyncio.TimeoutError):
            happened = f"{self.provider} did not answer within {self.timeout:g} seconds"
        else:
            happened = f"the connection to {self.provider} was lost ({detail})"
        return DeliveryUnknownError(
            f"The request was sent to {where} but {happened}, so {self.provider} may or may not have "
            f"accepted it{reference}. {advice}"
        )

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for ``url`` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), looked up once
        for each scheme and host."""
        origin = url.partition("://")[2].partition("/")[0]
        key = (url.partition(":")[0], origin)
        if key in self._proxies:
            return self._proxies[key]
        parts = urllib.parse.urlsplit(url)
        proxies = urllib.request.getproxies_environment()
        found = proxies.get(parts.scheme)
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if found and bypass(parts.hostname or "", proxies):
            found = None
        self._proxies[key] = found
        return found

    async def aclose(self) -> None:
        """Close the session and its connections; the client refuses requests afterwards."""
        self.closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return f"<HttpClient {self.provider} timeout={self.timeout:g}>"
