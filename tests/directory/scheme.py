"""A ``dirtest://`` channel scheme for the directory tests: a FakeChannel whose scope the URL says.

``dirtest://NAME?address=alice@contoso.com`` (per-address, Office 365's words in explanations),
``dirtest://NAME?domains=contoso.com`` (per-domain) or ``dirtest://NAME`` (unrestricted); ``&rate=1/60``
gives it the limit of one message a minute. The channel is a new FakeChannel named ``dirtest:NAME``
each time one is built (``channel(NAME)`` gives the last one), so a test scripts its faults and reads
what it sent. A ``password=`` override is accepted and ignored (the directory stores it).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from sendchannel import CredentialScope, Limits, Rate, register_channel
from sendchannel._registry import _factories
from sendchannel.testing import FakeChannel

__all__ = ["channel", "register", "reset"]


_channels: dict[str, FakeChannel] = {}


def channel(name: str) -> FakeChannel:
    """The dirtest channel called ``name`` that this process built last (the directory's for that URL)."""
    return _channels[name]


def reset() -> None:
    """Forget every dirtest channel (between tests)."""
    _channels.clear()


def _factory(url: urllib.parse.SplitResult, **overrides: Any) -> FakeChannel:
    query = dict(urllib.parse.parse_qsl(url.query))
    name = url.hostname or "default"
    fake = _channels[name] = FakeChannel(name=f"dirtest:{name}")
    if "address" in query:
        fake.scope = CredentialScope.per_address(query["address"], provider="Office 365")
    elif "domains" in query:
        fake.scope = CredentialScope.per_domain(*query["domains"].split(","), provider="SparkPost")
    else:
        fake.scope = CredentialScope.unrestricted()
    if "rate" in query:  # ?rate=COUNT/SECONDS
        count, per = query["rate"].split("/")
        fake.limits = Limits(rates=(Rate(int(count), float(per)),))
    overrides.pop("password", None)  # stored (encrypted) by the directory; a fake has no use for it
    for key, value in overrides.items():
        setattr(fake, key, value)
    return fake


def register() -> None:
    """Register ``dirtest://`` in this process (idempotent)."""
    if "dirtest" not in _factories:
        register_channel("dirtest", _factory)
