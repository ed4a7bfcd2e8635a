"""Secrets the test suite uses for every credential, so that a leak of any of them can be detected.

The autouse fixture in ``tests/conftest.py`` fails a test if one of these strings appears in any log record
(every logger at DEBUG), in the test's captured output, or in the ``repr()``/``str()`` of any error,
channel, store or other sendchannel object it created (``tests/secret_sweep.py``).
"""

from __future__ import annotations

import base64

PASSWORD = "sentinel-Pa55w0rd-7f3c"
TOKEN = "sentinel-access-token-91ab"
REFRESH_TOKEN = "sentinel-refresh-token-c4d2"
CLIENT_SECRET = "sentinel-client-secret-5e60"
API_KEY = "sentinel-api-key-0d8e"

ALL = (PASSWORD, TOKEN, REFRESH_TOKEN, CLIENT_SECRET, API_KEY)


def _forms(secret: str) -> set[str]:
    """The secret as written, and the middle of its base64 at each of the three byte alignments.

    SASL PLAIN and XOAUTH2 encode the secret after a prefix (``\\0user\\0``, ``user=...\\x01auth=Bearer ``),
    so its base64 is not the base64 of the secret alone; the characters that depend on the secret only are.
    """
    forms = {secret}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret.encode()).decode()
        forms.add(encoded[4:-4])
    return forms


_FORMS = {secret: _forms(secret) for secret in ALL}


def leaked(text: str) -> list[str]:
    """The sentinels in ``text``, also base64-encoded at any alignment (as SASL and headers carry them)."""
    return [secret for secret, forms in _FORMS.items() if any(form in text for form in forms)]
