"""The base the HTTP providers share (SparkPost, Microsoft Graph, and plugins that want it).

A provider package keeps only its payload and its answer table; this package gives it:

- :class:`HttpClient`: one aiohttp session per channel (made on first use, closed by ``aclose``, refusing
  requests afterwards), the timeouts, ``tls_context``, a User-Agent, and the one boundary where aiohttp's
  failures become SendErrors: failed before the request was written is ConnectionLostError, after it
  DeliveryUnknownError (for a request that ``delivers``), an untrusted certificate a PermanentError
  naming the remedy. ``await client.request(method, url, body=..., headers=..., delivers=True)`` returns
  an :class:`HttpAnswer`.
- :class:`HttpAnswer`: status, reason, headers and body, read safely (``json()`` gives None for a body
  that is not JSON, ``is_page``/``page_words()`` for a proxy's HTML page, ``retry_after(now)``).
- :func:`parse_retry_after`: Retry-After in seconds or as an HTTP date, read once for everyone.
- :class:`Redactor`: removes the channel's secrets from provider text, on one line, shortened.
- :func:`check_timeout`, :func:`check_tls_context`, :func:`check_base_url`: the constructor checks every
  channel shares.
- :func:`tls_failure`, :func:`tls_refused`: TLS failures read once (also for transports that are not
  aiohttp, such as Gmail's).

The answer tables are :class:`sendchannel._answers.Rule` rows, shared with SMTP.
"""

from __future__ import annotations

from sendchannel._http._answer import HttpAnswer, parse_retry_after
from sendchannel._http._client import HttpClient, check_base_url, check_timeout, check_tls_context
from sendchannel._http._redact import Redactor, one_line
from sendchannel._http._tls import TLS_CLOSED, tls_failure, tls_refused

__all__ = [
    "TLS_CLOSED",
    "HttpAnswer",
    "HttpClient",
    "Redactor",
    "check_base_url",
    "check_timeout",
    "check_tls_context",
    "one_line",
    "parse_retry_after",
    "tls_failure",
    "tls_refused",
]
