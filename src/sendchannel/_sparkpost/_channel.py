"""SparkpostChannel: SparkPost's Transmissions API over httpx.

A SparkPost API key may send from any address at the account's verified sending domains, so the channel's
scope is per-domain and a whole team can share one key. Each message goes out as its own MIME
(``content.email_rfc822``), so every header, attachment and inline image arrives exactly as rendered;
the recipients (Bcc included) travel beside it in ``recipients``, never in the headers.

Replies are mapped from the table :data:`_CODES` and the status rules in :meth:`SparkpostChannel._error`::

    200                         sent; rcpt_to_errors become SendResult.rejected
    400 1902 / 5002             recipients refused (all refused: RecipientsRefusedError)
    420 2101 hourly             ThrottledError, retry_after to the next hour
    420 2102 daily / 2105 monthly   QuotaExceededError with resets_at
    420 2103 sandbox            QuotaExceededError, no resets_at (the sandbox allowance never comes back)
    429                         ThrottledError (Retry-After, in seconds or as an HTTP date)
    503, 1900, 1502             TransientError
    other 5xx                   DeliveryUnknownError (the POST arrived; its fate is not known)
    401, 403, 1100              AuthenticationError
    7000, 7001                  SenderNotAllowedError
    400, 413, 422, 1300, 1400, 1901, 3xxx   MessageRejectedError

A failure before the request was written (refused connection, DNS, TLS, connect timeout) is a
ConnectionLostError: nothing was sent. A failure after it was written (read timeout, dropped connection)
is a DeliveryUnknownError, since SparkPost may have accepted the transmission.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import itertools
import json
import logging
import math
import re
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

import httpx

from sendchannel._address import ParsedAddress, idna_domain
from sendchannel._channel import BaseChannel
from sendchannel._clock import Clock, SystemClock
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._refusals import all_refused_error
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

__all__ = ["EU_API", "US_API", "SparkpostChannel"]

logger = logging.getLogger("sendchannel")

#: The API root of SparkPost (US).
US_API = "https://api.sparkpost.com/api/v1"
#: The API root of SparkPost EU (a separate service: its accounts and keys do not work in the US).
EU_API = "https://api.eu.sparkpost.com/api/v1"
_REGIONS = {"us": US_API, "eu": EU_API}

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
#: SparkPost's API reference: "wait 1 to 5 seconds after receiving a 429 response".
_DEFAULT_429_WAIT = 5.0
_REPLY_LIMIT = 300


# -- what SparkPost's error codes mean ----------------------------------------------------------------

#: SparkPost error code -> (error class, what it means and what to do). Codes that need more than a
#: sentence (limits, recipient refusals, 401/403) are handled in SparkpostChannel._error.
_CODES: dict[str, tuple[type[SendError], str]] = {
    "1100": (
        AuthenticationError,
        "the API key lacks the permission this request needs; edit the key under Account > API Keys "
        "in the SparkPost app",
    ),
    "1300": (
        MessageRejectedError,
        "SparkPost found data it does not accept in the transmission; the reply names the field",
    ),
    "1305": (MessageRejectedError, "SparkPost could not read the transmission as UTF-8"),
    "1400": (MessageRejectedError, "SparkPost says a required field of the transmission is missing"),
    "1502": (TransientError, "SparkPost's servers are short of resources; nothing was sent, try again later"),
    "1900": (
        TransientError,
        "SparkPost's message generation is not available at the moment; nothing was sent, try again later",
    ),
    "1901": (
        MessageRejectedError,
        "SparkPost could not generate the message from its MIME; check the content and attachments",
    ),
    "1910": (MessageRejectedError, "message generation is not configured for this SparkPost account"),
    "3000": (MessageRejectedError, "SparkPost found template syntax it cannot parse in the message"),
    "3001": (MessageRejectedError, "SparkPost could not render the template syntax in the message"),
    "3002": (MessageRejectedError, "SparkPost does not accept one of the message's headers"),
    "3010": (MessageRejectedError, "SparkPost could not build the message's MIME"),
    "3020": (MessageRejectedError, "SparkPost could not parse the message's MIME"),
    "7000": (
        SenderNotAllowedError,
        "the sending domain is restricted by SparkPost; contact SparkPost support to have it authorised",
    ),
}

#: 420 codes: SparkPost sending limits, by the word its message uses.
_LIMIT_CODES = {"2101": "hourly", "2102": "daily", "2103": "sandbox", "2105": "monthly"}
_LIMIT_WORD_RE = re.compile(r"\((hourly|daily|sandbox|monthly)\)", re.IGNORECASE)

#: Codes that refuse the recipients rather than the message.
_RECIPIENT_CODES = frozenset({"1902", "5002"})


# -- template syntax ------------------------------------------------------------------------------------

# SparkPost runs its template language over the top-level headers and the first text/plain and text/html
# parts of RFC822 content, even without substitution data: "{{name}}" would become "". Runs of braces
# that hold "{{" or "}}" are written with SparkPost's brace macros; a lone brace inside such a run comes
# from substitution data, since a literal one next to a macro's own braces would read as "{{{".
_BRACE_RUN_RE = re.compile(r"[{}]{2,}")
_OPEN_KEY = "sendchannel_open_brace"
_CLOSE_KEY = "sendchannel_close_brace"
_BRACE_DATA = {_OPEN_KEY: "{", _CLOSE_KEY: "}"}


def _has_template_syntax(text: str | None) -> bool:
    return text is not None and ("{{" in text or "}}" in text)


def _escape_run(match: re.Match[str]) -> str:
    run = match.group()
    if "{{" not in run and "}}" not in run:
        return run
    out: list[str] = []
    for char, group in itertools.groupby(run):
        count = len(list(group))
        side = "opening" if char == "{" else "closing"
        if count == 1:
            out.append("{{" + (_OPEN_KEY if char == "{" else _CLOSE_KEY) + "}}")
            continue
        if count % 2:
            out.append("{{" + side + "_triple_curly()}}")
            count -= 3
        out.extend(["{{" + side + "_double_curly()}}"] * (count // 2))
    return "".join(out)


def _escape_template_syntax(text: str) -> str:
    """``text`` written so that SparkPost's template engine renders it unchanged."""
    return _BRACE_RUN_RE.sub(_escape_run, text)


def _literal_message(message: Message) -> Message | None:
    """A copy of ``message`` whose template syntax SparkPost renders as written, or None when it has none.

    Raises:
        InvalidMessageError: "{{" or "}}" in an address or the Message-ID, which cannot be escaped.
    """
    for field in ("sender", "to", "cc", "reply_to"):
        for address in message.parsed(field):
            if _has_template_syntax(address.addr_spec):
                raise InvalidMessageError(
                    f"{field}: {address.addr_spec!r} contains '{{{{' or '}}}}', which SparkPost reads as "
                    "template syntax in the headers; SparkPost cannot send to or from such an address"
                )
    if _has_template_syntax(message.message_id):
        raise InvalidMessageError(
            f"message_id: {message.message_id!r} contains '{{{{' or '}}}}', which SparkPost reads as "
            "template syntax; leave message_id out to have one generated"
        )
    changes: dict[str, Any] = {}
    for field in ("subject", "text", "html"):
        value = getattr(message, field)
        if _has_template_syntax(value):
            changes[field] = _escape_template_syntax(value)
    if any(_has_template_syntax(value) for value in message.headers.values()):
        changes["headers"] = {name: _escape_template_syntax(v) for name, v in message.headers.items()}
    for field in ("sender", "to", "cc", "reply_to"):
        parsed = message.parsed(field)
        if any(_has_template_syntax(a.display_name) for a in parsed):
            rebuilt = [
                ParsedAddress(_escape_template_syntax(a.display_name), a.local_part, a.domain).formatted()
                for a in parsed
            ]
            changes[field] = rebuilt[0] if field == "sender" else rebuilt
    if not changes:
        return None
    return message.evolve(**changes)


# -- small helpers --------------------------------------------------------------------------------------


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, given in seconds or as an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _next_boundary(now: float, period: str) -> float:
    """The start of the next UTC hour, day or month after ``now`` (seconds since the epoch)."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    if period == "hourly":
        start = moment.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    elif period == "daily":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(days=1)
    else:
        days = calendar.monthrange(moment.year, moment.month)[1]
        first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = first + datetime.timedelta(days=days)
    return start.timestamp()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


_DOMAIN_RUN = re.compile(r"[\w.-]*")
_BEFORE_ADDRESS = re.compile(r"[\w.+-]")
_NOT_IN_ADDRESS = frozenset(' \t\r\n<>()[],;:"@\\')


def _mentioned(text: str, wanted: Mapping[str, str]) -> set[str]:
    """The addresses of ``wanted`` (lower-cased address -> address) that ``text`` names as whole addresses.

    An address is named when it appears (case-insensitively) neither preceded by a word character, ``.``,
    ``+`` or ``-`` nor followed by a word character or ``-``. Only the spans around each ``@`` are looked
    up, so a reply listing thousands of refusals for thousands of recipients takes linear time (a regular
    expression per recipient and refusal took minutes).
    """
    found: set[str] = set()
    at = text.find("@")
    while at >= 0:
        run = _DOMAIN_RUN.match(text, at + 1)
        assert run is not None
        # The address may end before any "." of the host run, or at its end (not before a word character);
        # a domain has at most 253 characters.
        limit = min(run.end(), at + 254)
        ends = [i for i in range(at + 1, limit) if text[i] == "."]
        if run.end() <= at + 254:
            ends.append(run.end())
        start = at
        while start > 0 and at - start < 64 and text[start - 1] not in _NOT_IN_ADDRESS:
            start -= 1
        for begin in range(start, at):
            if begin > 0 and _BEFORE_ADDRESS.fullmatch(text[begin - 1]):
                continue
            for end in ends:
                address = wanted.get(text[begin:end].lower())
                if address is not None:
                    found.add(address)
        at = text.find("@", at + 1)
    return found


def _domains(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items: Iterable[object] = value.split(",")
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ConfigurationError(
            f"domains must be a sequence of domain names such as ['example.com'], got {type(value).__name__}"
        )
    domains: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"domains must be strings, got {type(item).__name__}")
        domain = item.strip().lower()
        if not domain:
            continue
        if "@" in domain:
            raise ConfigurationError(
                f"{item!r} in domains is an address; give its domain ({domain.rpartition('@')[2]!r}): "
                "a SparkPost key covers every address at a verified sending domain"
            )
        try:
            idna_domain(domain.removeprefix("*."))
        except ValueError as exc:
            raise ConfigurationError(f"{item!r} in domains is not a domain name: {exc}") from None
        domains.append(domain)
    if not domains:
        raise ConfigurationError(
            "SparkpostChannel needs domains=: the verified sending domains the key may send from, "
            "e.g. domains=['example.com']"
        )
    return tuple(dict.fromkeys(domains))


def _api_root(region: str, base_url: str | None) -> str:
    if base_url is None:
        if not isinstance(region, str) or region.lower() not in _REGIONS:
            raise ConfigurationError(
                f"Unknown SparkPost region {region!r}; use region='us' (app.sparkpost.com) or region='eu' "
                "(app.eu.sparkpost.com), or give base_url= for an Enterprise endpoint"
            )
        return _REGIONS[region.lower()]
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    parts = urllib.parse.urlsplit(base_url.strip())
    shown = redact_url(parts)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {shown!r} is not an http(s) URL; give the API root, like {US_API}"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigurationError(
            f"base_url {shown!r} uses plain http, which would send the API key unencrypted; use https "
            "(plain http is accepted only for servers on this machine, such as a test server)"
        )
    if parts.path.strip("/") == "":
        raise ConfigurationError(
            f"base_url {shown!r} has no path; it is the API root including /api/v1, like {US_API}"
        )
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/"), query="", fragment=""))


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind an httpx error, unless it is a connection closed during the handshake."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> ssl: a short chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            closed = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
            return None if isinstance(seen, closed) else seen
        seen = seen.__cause__ or seen.__context__
    return None


def _check_key(api_key: object) -> str:
    if not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a string, got {type(api_key).__name__}")
    key = api_key.strip()
    if not key:
        raise ConfigurationError(
            "api_key is empty; create an API key under Account > API Keys in the SparkPost app"
        )
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigurationError(
            "api_key contains spaces, line breaks or non-ASCII characters that an API key never has; "
            "check how it is read (a stray newline from a file, or two values pasted together)"
        )
    return key


# -- the channel ----------------------------------------------------------------------------------------


class SparkpostChannel(BaseChannel):
    """Send through SparkPost's Transmissions API (httpx, async).

    The API key may send from every address at the account's verified sending domains, so the scope is
    per-domain over ``domains`` and the key may be shared by everyone at those domains (unlike an Office
    365 password, which belongs to one mailbox). The sender is checked against ``domains`` before anything
    is sent. Each message goes as its own MIME (``content.email_rfc822``), with SparkPost's template syntax
    escaped and open and click tracking off, so recipients get exactly the Message; all recipients,
    Bcc included, go in ``recipients``.

    One ``httpx.AsyncClient`` (one connection pool) is created on first use and closed by :meth:`aclose`.

    Args:
        api_key: A SparkPost API key with the "Transmissions: Read/Write" permission (and "Sending Domains:
            Read-only" for :meth:`verify`). Sent as the ``Authorization`` header; never shown.
        domains: The verified sending domains the key may send from (``*.example.com`` covers subdomains).
        region: ``"us"`` (api.sparkpost.com) or ``"eu"`` (api.eu.sparkpost.com); accounts are separate.
        base_url: The API root including ``/api/v1``, for Enterprise endpoints and tests; overrides
            ``region``. Plain ``http`` is accepted only for a server on this machine.
        limits: The account plan's limits. None are declared by default, since SparkPost's hourly, daily
            and monthly limits depend on the plan; give them so a Throttler keeps you inside them.
        timeout: Seconds for each network wait (connecting, writing, waiting for the answer).
        options: Transmission options sent with every message (``{"transactional": True}``,
            ``{"ip_pool": "my_pool"}``); open and click tracking are off unless turned on here.
        http_client: An ``httpx.AsyncClient`` to use instead of the channel's own (for a proxy or a shared
            pool); the channel does not close it.
        transport: An httpx transport for the channel's own client (``httpx.AsyncHTTPTransport(retries=1)``,
            ``httpx.MockTransport``...).
        clock: The wall clock used for Retry-After dates and limit resets (a ``VirtualClock`` in tests).

    Raises:
        ConfigurationError: An empty or malformed key, no domains, an unknown region, a base_url that is not
            an https API root, or both ``http_client`` and ``transport``.

    Example::

        channel = SparkpostChannel(key, domains=["example.com"], region="eu")
        async with channel:
            result = await channel.send(Message("app@example.com", ["bob@example.net"], subject="Hi"))
    """

    name = "sparkpost"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.PER_DOMAIN
    provider_name: ClassVar[str | None] = "SparkPost"
    default_limits: ClassVar[Limits] = Limits()

    def __init__(
        self,
        api_key: str,
        *,
        domains: Sequence[str],
        region: str = "us",
        base_url: str | None = None,
        limits: Limits | None = None,
        timeout: float = 30.0,
        options: Mapping[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._api_key = _check_key(api_key)
        self.domains = _domains(domains)
        self.base_url = _api_root(region, base_url)
        self.region = region.lower() if base_url is None else None
        self.scope = CredentialScope.per_domain(*self.domains, provider=self.provider_name)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a Limits object, got {type(limits).__name__}")
        self.limits = limits if limits is not None else self.default_limits
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(f"options must be a mapping, got {type(options).__name__}")
        try:
            json.dumps(dict(options or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"options must be JSON data (SparkPost's transmission options): {exc}"
            ) from None
        self.options: dict[str, Any] = {"open_tracking": False, "click_tracking": False, **(options or {})}
        if http_client is not None and transport is not None:
            raise ConfigurationError(
                "give http_client or transport, not both: a transport is for the channel's own client"
            )
        self._given_client = http_client
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self.clock: Clock = clock if clock is not None else SystemClock()

    # -- HTTP ---------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("this SparkpostChannel is closed; build a new one")
        if self._given_client is not None:
            return self._given_client
        if self._client is None:
            from sendchannel import __version__

            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self.limits.max_connections),
                headers={"User-Agent": f"sendchannel/{__version__}"},
                follow_redirects=False,
            )
        return self._client

    async def _request(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        message: Message | None = None,
    ) -> httpx.Response:
        url = self.base_url + path
        headers = {"Authorization": self._api_key, "Accept": "application/json"}
        content = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(payload).encode("ascii")
        client = self._http()
        try:
            return await client.request(
                method, url, content=content, headers=headers, timeout=httpx.Timeout(self.timeout)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, method, url, message) from exc

    def _transport_error(
        self, exc: httpx.HTTPError, method: str, url: str, message: Message | None
    ) -> SendError:
        """The error for a failed exchange: before the request was written, nothing was sent."""
        detail = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        where = redact_url(url)
        tls = _tls_error(exc) if isinstance(exc, httpx.ConnectError) else None
        if tls is not None:
            # A certificate that cannot be verified, or no TLS version or cipher in common: trying again
            # fails the same way until the configuration changes.
            reason = self._scrub(str(getattr(tls, "verify_message", None) or tls.reason or tls))
            if isinstance(tls, ssl.SSLCertVerificationError):
                return PermanentError(
                    f"The TLS certificate of SparkPost at {where} could not be verified ({reason}), so "
                    "nothing was sent. If the endpoint uses a private certificate authority, pass "
                    "transport=httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=...)) "
                    "(or set SSL_CERT_FILE); check that base_url names the right host.",
                    channel=self.name,
                )
            return PermanentError(
                f"The TLS handshake with SparkPost at {where} failed ({reason}), so nothing was sent; "
                "check base_url (https:// for a TLS endpoint).",
                channel=self.name,
            )
        # Connecting, TLS, waiting for a pooled connection, or failing to write the request: SparkPost
        # never received a complete request. Anything later (waiting for or reading the answer, the
        # connection dropped) may come after SparkPost accepted it.
        before = isinstance(
            exc,
            (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.WriteError,
                httpx.WriteTimeout,
                httpx.ProxyError,
                httpx.UnsupportedProtocol,
                httpx.LocalProtocolError,
            ),
        )
        if before or method != "POST":
            what = "nothing was sent" if method == "POST" else "nothing was changed"
            return ConnectionLostError(
                f"Could not complete the request to SparkPost at {where} ({detail}); {what}. "
                "Check the network, proxy settings and base_url, then try again.",
                channel=self.name,
            )
        if isinstance(exc, httpx.TimeoutException):
            happened = f"SparkPost did not answer within {self.timeout:g} seconds"
        else:
            happened = f"the connection to SparkPost was lost ({detail})"
        reference = f" (Message-ID {message.message_id})" if message is not None else ""
        return DeliveryUnknownError(
            f"The transmission was sent to {where} but {happened}, so SparkPost may or may not have "
            f"accepted it{reference}. It is not retried, to avoid sending it twice: check SparkPost's "
            "events for it before sending again.",
            channel=self.name,
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the API key, shortened: provider replies are kept in errors and logs.

        It is also put on one line (a line break from the reply could forge a log line) and made encodable
        (JSON can carry a lone surrogate such as ``"\ud800"``).
        """
        text = text.replace(self._api_key, "***")
        text = " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")
        return text if len(text) <= _REPLY_LIMIT else text[: _REPLY_LIMIT - 3] + "..."

    # -- sending ------------------------------------------------------------------------------------

    def _transmission(self, message: Message) -> dict[str, Any]:
        """The JSON body of ``POST /transmissions`` for ``message``."""
        literal = _literal_message(message)
        mime = (literal or message).as_bytes().decode("utf-8")
        header_to = ",".join(a.addr_spec for a in message.parsed("to"))
        recipients = []
        for address in message.recipients:
            entry: dict[str, str] = {"email": address}
            # SparkPost builds a To header from header_to (or from the recipient's own address) when it
            # generates one: point every copy, Bcc included, at the real To list.
            if header_to:
                entry["header_to"] = header_to
            recipients.append({"address": entry})
        body: dict[str, Any] = {
            "options": dict(self.options),
            "recipients": recipients,
            "content": {"email_rfc822": mime},
        }
        if literal is not None:
            body["substitution_data"] = dict(_BRACE_DATA)
        return body

    async def _send(self, message: Message) -> SendResult:
        response = await self._request("POST", "/transmissions", self._transmission(message), message=message)
        body = self._json(response)
        results = body.get("results") if isinstance(body, dict) else None
        errors = self._errors(body)
        codes = {code for code, _ in errors}
        if codes & _RECIPIENT_CODES:
            return self._refused(message, response.status_code, errors, results)
        if response.status_code == 200 and isinstance(results, dict) and results.get("id") is not None:
            return self._accepted(message, results)
        if response.status_code == 200:
            raise DeliveryUnknownError(
                "SparkPost answered 200 but not with a transmission id "
                f"({self._scrub(response.text) or 'empty body'}), so it is not known whether the message "
                f"was accepted (Message-ID {message.message_id}); check SparkPost's events before sending "
                "again.",
                code=200,
                channel=self.name,
            )
        return self._error(response, errors, message=message)

    def _accepted(self, message: Message, results: Mapping[str, Any]) -> SendResult:
        """The result of a 200 answer: rcpt_to_errors become ``rejected``; all refused raises."""
        recipients = message.recipients
        refusals = [self._describe(e) for e in results.get("rcpt_to_errors") or () if isinstance(e, dict)]
        accepted_count = results.get("total_accepted_recipients")
        rejected, unattributed = self._attribute(recipients, refusals)
        if accepted_count == 0:
            reason = (unattributed or refusals or ["SparkPost accepted none of the recipients"])[0]
            rejected = {r: rejected.get(r, reason) for r in recipients}
            unattributed = []
        if len(rejected) == len(recipients):
            raise self._all_refused(rejected, 200)
        if unattributed:
            logger.warning(
                "SparkPost refused %d recipient(s) of message_id=%s without naming them; the result lists "
                "them as accepted: %s",
                len(unattributed),
                message.message_id,
                "; ".join(unattributed),
            )
        return SendResult(
            message_id=message.message_id,
            provider_id=str(results["id"]),
            accepted=tuple(r for r in recipients if r not in rejected),
            rejected=rejected,
            channel=self.name,
        )

    def _refused(
        self,
        message: Message,
        status: int,
        errors: list[tuple[str | None, str]],
        results: object,
    ) -> NoReturn:
        """Raise for a 1902 or 5002 answer: SparkPost refused recipients, possibly not saying which."""
        recipients = message.recipients
        refusals = [text for code, text in errors if code in _RECIPIENT_CODES]
        if isinstance(results, dict):
            listed = results.get("rcpt_to_errors") or ()
            refusals += [self._describe(e) for e in listed if isinstance(e, dict)]
        rejected, unattributed = self._attribute(recipients, refusals)
        none_valid = next((text for code, text in errors if code == "5002"), None)
        if none_valid is not None:
            # "No valid recipients": every recipient was refused, whether or not the reply names it.
            rejected = {r: rejected.get(r, none_valid) for r in recipients}
        if len(rejected) == len(recipients):
            raise self._all_refused(rejected, status)
        provider_id = results.get("id") if isinstance(results, dict) else None
        unknown = [r for r in recipients if r not in rejected]
        raise DeliveryUnknownError(
            f"SparkPost refused the message for some recipients ({'; '.join(unattributed or refusals)}) "
            f"without saying which of {', '.join(unknown)}, so they may or may not have been sent "
            f"(Message-ID {message.message_id}"
            + (f", transmission {provider_id}" if provider_id else "")
            + "). Check SparkPost's events before sending to them again.",
            code=status,
            enhanced_code=next(c for c, _ in errors if c in _RECIPIENT_CODES),
            channel=self.name,
            rejected=rejected,
            reply="; ".join(refusals),
        )

    @staticmethod
    def _attribute(recipients: Sequence[str], refusals: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Match refusal texts to the recipients they name; a single recipient takes any refusal.

        Returns the refused recipients with their reply, and the refusals that name nobody.
        """
        rejected: dict[str, str] = {}
        unattributed: list[str] = []
        wanted = {r.lower(): r for r in recipients}
        order = {r: index for index, r in enumerate(recipients)}
        for text in refusals:
            named = sorted((r for r in _mentioned(text, wanted) if r not in rejected), key=order.__getitem__)
            for recipient in named:
                rejected[recipient] = text
            if not named:
                unattributed.append(text)
        remaining = [r for r in recipients if r not in rejected]
        if unattributed and len(remaining) == 1:
            rejected[remaining[0]] = unattributed[0]
            unattributed = []
        return rejected, unattributed

    def _all_refused(self, rejected: Mapping[str, str], status: int) -> SendError:
        error = all_refused_error(rejected, channel=self.name, server="SparkPost")
        if error.code is None:
            error.code = status
            match = re.search(r"\((\d{4})\)", next(iter(rejected.values())))
            error.enhanced_code = match.group(1) if match else None
        return error

    # -- answers ------------------------------------------------------------------------------------

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deep to read
            return None

    def _describe(self, error: Mapping[str, Any]) -> str:
        """One SparkPost error object as text: ``message: description (code)``, without secrets."""
        message = str(error.get("message") or "").strip()
        description = str(error.get("description") or "").strip()
        code = error.get("code")
        text = ": ".join(part for part in (message, description) if part) or "no message"
        if code is not None:
            text += f" ({code})"
        return self._scrub(text)

    def _errors(self, body: object) -> list[tuple[str | None, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
            return []
        out = []
        for error in body["errors"]:
            if isinstance(error, dict):
                code = error.get("code")
                out.append((None if code is None else str(code), self._describe(error)))
        return out

    def _error(
        self,
        response: httpx.Response,
        errors: list[tuple[str | None, str]],
        *,
        message: Message | None = None,
        reading: str | None = None,
    ) -> NoReturn:
        """Raise the error for a SparkPost answer that is not a success.

        Args:
            response: The answer.
            errors: Its ``errors`` as (code, text) pairs.
            message: The message being sent, or None for a read such as verify().
            reading: What a read was for (worded into 403 errors), when it was not a send.
        """
        status = response.status_code
        reply = "; ".join(text for _, text in errors) or self._scrub(response.reason_phrase or "")
        if not errors and response.text and not response.text.lstrip().startswith("{"):
            reply = f"{reply}: {self._scrub(response.text.strip())}".strip(": ")
        known = next(((c, t) for c, t in errors if c in _CODES or c in _LIMIT_CODES), None)
        code = known[0] if known else next((c for c, _ in errors if c is not None), None)
        fields: dict[str, Any] = {"code": status, "enhanced_code": code, "channel": self.name, "reply": reply}
        shown = f"{status} {reply}".strip()
        if not errors and "<" in response.text:
            # An HTML page (a proxy's or a load balancer's): its words, in parentheses, not its markup.
            page = " ".join(re.sub(r"<[^>]*>", " ", self._scrub(response.text)).split())
            shown = f"{status} {self._scrub(response.reason_phrase or '')} ({page})"

        if status == 420 or code in _LIMIT_CODES:
            raise self._limit_error(code, reply, shown, fields)
        if status == 429:
            wait = _retry_after(response.headers.get("Retry-After"), self.clock.now())
            wait = _DEFAULT_429_WAIT if wait is None else wait
            raise ThrottledError(
                f"SparkPost asked to slow down ({shown}); nothing was sent. Wait {wait:g} seconds before "
                "the next request, and declare the account's limits with limits= so a Throttler spaces "
                "the sends.",
                retry_after=wait,
                **fields,
            )
        if status in (401, 403) or code == "1100":
            raise AuthenticationError(self._auth_text(status, shown, reading), **fields)
        if code in ("7001", "7000"):
            raise SenderNotAllowedError(self._sender_text(code, shown, message), **fields)
        if code in _CODES:
            kind, meaning = _CODES[code]
            if issubclass(kind, TransientError):
                fields["retry_after"] = _retry_after(response.headers.get("Retry-After"), self.clock.now())
            raise kind(f"SparkPost refused the request ({shown}): {meaning}.", **fields)
        if status == 503:
            raise TransientError(
                f"SparkPost is not accepting requests at the moment ({shown}); nothing was sent. "
                "Try again shortly.",
                retry_after=_retry_after(response.headers.get("Retry-After"), self.clock.now()),
                **fields,
            )
        if status >= 500:
            if message is None:
                raise TransientError(
                    f"SparkPost failed to answer the request ({shown}); try again later.", **fields
                )
            raise DeliveryUnknownError(
                f"SparkPost answered {shown} after receiving the transmission, so it may or may not have "
                f"been sent (Message-ID {message.message_id}). It is not retried, to avoid sending it "
                "twice: check SparkPost's events or status page before sending again.",
                **fields,
            )
        if status == 404:
            raise PermanentError(
                f"SparkPost answered {shown} for {redact_url(str(response.request.url))}: base_url must be "
                f"the API root including /api/v1, like {US_API}.",
                **fields,
            )
        if status == 413:
            raise MessageRejectedError(
                f"The transmission is larger than SparkPost accepts ({shown}; content is limited to 20 MB); "
                "send large files as links instead of attachments.",
                **fields,
            )
        if status in (400, 422) and message is not None:
            raise MessageRejectedError(
                f"SparkPost refused the transmission ({shown}); the reply says what it did not accept.",
                **fields,
            )
        raise PermanentError(
            f"SparkPost refused the request ({shown}); check the channel's base_url and options.", **fields
        )

    def _limit_error(self, code: str | None, reply: str, shown: str, fields: dict[str, Any]) -> SendError:
        word = _LIMIT_CODES.get(code or "")
        if word is None:
            found = _LIMIT_WORD_RE.search(reply)
            word = found.group(1).lower() if found else None
        now = self.clock.now()
        if word == "hourly":
            resumes = _next_boundary(now, "hourly")
            return ThrottledError(
                f"SparkPost's hourly sending limit for this account is spent ({shown}); nothing in the "
                f"transmission was sent. Try again after {_iso(resumes)}, declare the plan's hourly rate "
                "with limits= so a Throttler keeps under it, or ask SparkPost for a higher limit.",
                retry_after=resumes - now,
                **fields,
            )
        if word in ("daily", "monthly"):
            resets = _next_boundary(now, word)
            period = "day" if word == "daily" else "month"
            return QuotaExceededError(
                f"SparkPost's {word} sending limit for this account is spent ({shown}); nothing in the "
                f"transmission was sent. It comes back with the next {period} (not before {_iso(resets)}; "
                "a monthly limit follows the billing cycle and may come back later). Upgrade the plan or "
                "send through another channel until then.",
                retry_after=resets - now,
                resets_at=resets,
                **fields,
            )
        if word == "sandbox":
            return QuotaExceededError(
                f"SparkPost's sandbox allowance is spent ({shown}): the sandbox domain sends 5 messages for "
                "the lifetime of an account, and never more. Send from your own verified sending domain, "
                "without options={'sandbox': True}.",
                **fields,
            )
        return QuotaExceededError(
            f"SparkPost says a sending limit of this account is spent ({shown}); nothing in the "
            "transmission was sent. Check the limits on the SparkPost dashboard.",
            **fields,
        )

    def _auth_text(self, status: int, shown: str, reading: str | None) -> str:
        if status == 401:
            return (
                f"SparkPost did not accept the API key ({shown}). It may be mistyped, deleted or made for "
                "the other region: US and EU accounts are separate (region='us' for app.sparkpost.com, "
                "region='eu' for app.eu.sparkpost.com)."
            )
        if reading is not None:
            return (
                f"SparkPost accepted the API key but not for {reading} ({shown}): the key lacks the "
                "'Sending Domains: Read-only' permission. Add it under Account > API Keys in the "
                "SparkPost app; sending may still work without it."
            )
        return (
            f"SparkPost accepted the API key but not for sending ({shown}): the key lacks the "
            "'Transmissions: Read/Write' permission. Add it under Account > API Keys in the SparkPost app, "
            "or use a key that has it."
        )

    def _sender_text(self, code: str, shown: str, message: Message | None) -> str:
        if message is None:
            return f"SparkPost refused the sending domain ({shown})."
        domain = message.parsed("sender")[0].domain
        if code == "7000":
            return (
                f"SparkPost refused to send from {domain} ({shown}): the domain is restricted. Contact "
                "SparkPost support to have it authorised, or send from another verified domain."
            )
        return (
            f"SparkPost refused to send as {message.sender_address} ({shown}): {domain} is not a configured "
            f"and verified sending domain of this account. Add and verify {domain} under Sending Domains in "
            "the SparkPost app (a DKIM or CNAME record), or send from a domain that is verified."
        )

    # -- verify -------------------------------------------------------------------------------------

    async def _sending_domains(self) -> dict[str, str]:
        """The account's sending domains and their state: ``"verified"``, ``"unverified"``, ``"blocked"``."""
        response = await self._request("GET", "/sending-domains")
        body = self._json(response)
        if response.status_code != 200:
            self._error(response, self._errors(body), reading="listing sending domains")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise PermanentError(
                f"SparkPost's sending-domains answer has no list of results "
                f"({self._scrub(response.text) or 'empty body'}); check base_url.",
                code=response.status_code,
                channel=self.name,
            )
        states: dict[str, str] = {}
        for entry in results:
            if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
                continue
            status: dict[str, Any] = entry["status"] if isinstance(entry.get("status"), dict) else {}
            if status.get("compliance_status") == "blocked":
                state = "blocked"
            elif status.get("ownership_verified") is True:
                state = "verified"
            else:
                state = "unverified"
            states[entry["domain"].strip().lower()] = state
        return states

    async def verified_domains(self) -> frozenset[str]:
        """The account's sending domains that are verified and not blocked, lower-cased.

        Raises:
            AuthenticationError: The key was refused, or lacks the "Sending Domains" permission.
            SendError: SparkPost could not be reached or answered with another error.
        """
        states = await self._sending_domains()
        return frozenset(domain for domain, state in states.items() if state == "verified")

    async def verify(self) -> None:
        """Prove the key works and that every declared domain is a verified sending domain; sends nothing.

        Lists the account's sending domains (``GET {base_url}/sending-domains``).

        Raises:
            AuthenticationError: The key was refused, or lacks the "Sending Domains: Read-only" permission.
            SenderNotAllowedError: A domain in ``domains`` is not on the account, not verified yet or
                blocked; sends from it would be refused (7001). The message names each one.
            SendError: SparkPost could not be reached or answered with another error.
        """
        states = await self._sending_domains()
        verified = {domain for domain, state in states.items() if state == "verified"}
        problems: list[str] = []
        for declared in self.domains:
            ascii_domain = idna_domain(declared.removeprefix("*.")).lower()
            if declared.startswith("*."):
                if not any(d.endswith("." + ascii_domain) for d in verified):
                    problems.append(f"{declared} (no verified subdomain of {ascii_domain} on the account)")
                continue
            state = states.get(ascii_domain)
            if state == "verified":
                continue
            reason = {
                None: "not a sending domain of this account",
                "unverified": "not verified yet: publish its DKIM or CNAME record and verify it",
                "blocked": "blocked by SparkPost compliance: contact SparkPost support",
            }[state]
            problems.append(f"{declared} ({reason})")
        if problems:
            logger.warning("sparkpost verify: declared domains that cannot send: %s", "; ".join(problems))
            raise SenderNotAllowedError(
                f"The SparkPost key works, but SparkPost would refuse mail from: {'; '.join(problems)}. "
                "Fix the domains under Sending Domains in the SparkPost app, or remove them from domains=.",
                enhanced_code="7001",
                channel=self.name,
            )
        logger.info("sparkpost verify: key accepted; verified domains: %s", ", ".join(self.domains))

    # -- lifecycle ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the channel's own connection pool (not a given ``http_client``); no sends afterwards."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def __repr__(self) -> str:
        where = self.region if self.region is not None else redact_url(self.base_url)
        return f"<SparkpostChannel {where} scope={self.scope}>"


# -- sparkpost:// ---------------------------------------------------------------------------------------

_URL_OPTIONS = frozenset({"domains", "region", "base_url", "timeout"})


def _from_url(url: urllib.parse.SplitResult, **overrides: Any) -> SparkpostChannel:
    """``sparkpost://KEY@eu?domains=a.com,b.com`` (host us or eu; ``base_url=`` in the query for others)."""
    shown = redact_url(url)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(query) - _URL_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{shown}: unknown option(s) {', '.join(unknown)}; sparkpost:// takes "
            f"{', '.join(sorted(_URL_OPTIONS))}"
        )
    kwargs: dict[str, Any] = {}
    key = url.username or url.password
    if key:
        kwargs["api_key"] = urllib.parse.unquote(key)
    if "domains" in query:
        kwargs["domains"] = [d for value in query["domains"] for d in value.split(",") if d.strip()]
    host = (url.hostname or "").lower()
    if "base_url" in query:
        kwargs["base_url"] = query["base_url"][-1]
    if "region" in query:
        kwargs["region"] = query["region"][-1]
    elif host:
        if host not in _REGIONS:
            raise ConfigurationError(
                f"{shown}: the host of a sparkpost:// URL is the region, us or eu, not {host!r}; "
                "for an Enterprise endpoint write sparkpost://KEY@?base_url=https://.../api/v1"
            )
        kwargs["region"] = host
    if "timeout" in query:
        try:
            kwargs["timeout"] = float(query["timeout"][-1])
        except ValueError:
            raise ConfigurationError(f"{shown}: timeout must be a number of seconds") from None
    kwargs.update(overrides)
    if "api_key" not in kwargs:
        raise ConfigurationError(
            f"{shown} has no API key; write it in the user part (sparkpost://KEY@us?domains=example.com) "
            "or pass api_key="
        )
    if "domains" not in kwargs:
        raise ConfigurationError(
            f"{shown} declares no domains; add ?domains=example.com (the verified sending domains, "
            "comma-separated) or pass domains="
        )
    try:
        return SparkpostChannel(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None

