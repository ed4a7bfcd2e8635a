"""DirectoryEntry, the public view of one connected channel, and the record a store keeps for it."""

from __future__ import annotations

import datetime
from typing import Literal

import attrs

from sendchannel._scope import CredentialScope, ScopeKind

__all__ = ["OK", "NEEDS_RECONNECT", "PAUSED", "DirectoryEntry", "Record", "State"]

State = Literal["ok", "needs_reconnect", "paused"]
OK: State = "ok"
NEEDS_RECONNECT: State = "needs_reconnect"
PAUSED: State = "paused"


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


@attrs.frozen
class DirectoryEntry:
    """One channel connected in a :class:`~sendchannel.ChannelDirectory`, as the application sees it.

    Attributes:
        id: The entry's id (stable until it is disconnected or replaced by a reconnect).
        owner: The application's id for the person or team that connected it.
        url: The channel URL with every secret replaced by ``***``.
        scheme: The URL scheme (``"office365"``, ``"sparkpost"``...).
        scope: The senders its credential may send as.
        shared: Whether it serves every owner's messages (only for a shareable scope), or its owner's only.
        state: ``"ok"``, ``"needs_reconnect"`` (the provider refused the credentials: its owner must
            connect it again) or ``"paused"`` (the provider said its quota is spent, until ``paused_until``).
        reason: Why it is in that state, in plain words, or None when it is ok.
        since: When the state last changed (UTC).
        paused_until: When a paused entry may send again (UTC), else None.
    """

    id: str
    owner: str
    url: str
    scheme: str
    scope: CredentialScope
    shared: bool
    state: State
    reason: str | None
    since: datetime.datetime
    paused_until: datetime.datetime | None


@attrs.frozen
class Record:
    """What a store keeps for an entry. ``secret`` is ciphertext (Fernet); nothing else is secret."""

    id: str
    owner: str
    url: str
    scheme: str
    #: The credential's identity (no secret in it): entries of one identity share one throttle budget,
    #: and the same owner connecting the same identity again replaces the entry.
    identity: str
    scope_kind: str
    scope_identities: tuple[str, ...]
    scope_provider: str | None
    shared: bool
    state: State
    reason: str | None
    since: float
    paused_until: float | None
    #: Connection order (oldest first), from the directory's change counter.
    sequence: int
    secret: bytes = attrs.field(repr=False)
    #: Bumped each time the secret is rewritten (refreshed credentials, rotation).
    secret_version: int = 0

    @property
    def scope(self) -> CredentialScope:
        """The credential scope, rebuilt."""
        kind = ScopeKind(self.scope_kind)
        if kind is ScopeKind.UNRESTRICTED:
            return CredentialScope.unrestricted(provider=self.scope_provider)
        return CredentialScope(kind, self.scope_identities, provider=self.scope_provider)

    def entry(self) -> DirectoryEntry:
        """The public view."""
        return DirectoryEntry(
            id=self.id,
            owner=self.owner,
            url=self.url,
            scheme=self.scheme,
            scope=self.scope,
            shared=self.shared,
            state=self.state,
            reason=self.reason,
            since=_utc(self.since),
            paused_until=None if self.paused_until is None else _utc(self.paused_until),
        )
