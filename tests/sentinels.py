"""Secrets the test suite uses for every credential, so that a leak of any of them can be detected.

The autouse fixture in ``tests/conftest.py`` captures every log record of every test at DEBUG level and
fails the test if one of these strings appears in a record's message or exception text. Tests of reprs,
error texts and CLI output check them explicitly.
"""

from __future__ import annotations

PASSWORD = "sentinel-Pa55w0rd-7f3c"
TOKEN = "sentinel-access-token-91ab"
REFRESH_TOKEN = "sentinel-refresh-token-c4d2"
CLIENT_SECRET = "sentinel-client-secret-5e60"
API_KEY = "sentinel-api-key-0d8e"

ALL = (PASSWORD, TOKEN, REFRESH_TOKEN, CLIENT_SECRET, API_KEY)


def leaked(text: str) -> list[str]:
    """The sentinels found in ``text`` (also in the base64 forms SASL and headers use)."""
    import base64

    found = []
    for secret in ALL:
        forms = {secret, base64.b64encode(secret.encode()).decode()}
        if any(form in text for form in forms):
            found.append(secret)
    return found
