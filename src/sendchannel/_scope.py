"""Credential scope: which senders a credential may send as, and whether a team may share it."""

from __future__ import annotations

import enum

import attrs

from sendchannel._address import idna_domain, try_parse_address

__all__ = ["CredentialScope", "ScopeKind", "union_of"]


class ScopeKind(enum.Enum):
    """What a credential covers."""

    #: One mailbox (and its declared send-as aliases): Office 365 SMTP AUTH, Gmail OAuth.
    PER_ADDRESS = "per-address"
    #: Every address at the given verified domains: SparkPost API keys.
    PER_DOMAIN = "per-domain"
    #: Any sender: a generic SMTP server whose owner decides.
    UNRESTRICTED = "unrestricted"


def _normalise_identities(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@attrs.frozen
class CredentialScope:
    """The senders a credential may send as.

    Build one with :meth:`per_address`, :meth:`per_domain` or :meth:`unrestricted`. Matching is
    case-insensitive and compares internationalised domains in their IDNA form. A per-domain scope covers
    exactly its domains, not their subdomains, unless a domain is written ``*.example.com`` (which covers
    every subdomain of example.com, but not example.com itself).

    Args:
        kind: What the credential covers.
        identities: The addresses (per-address) or domains (per-domain) covered; empty when unrestricted.
        provider: A provider name used in :meth:`explain`'s sentences (``"Office 365"``).
    """

    kind: ScopeKind
    identities: tuple[str, ...] = attrs.field(
        default=(), converter=_normalise_identities
    )
    provider: str | None = attrs.field(default=None, eq=False, kw_only=True)

    _keys: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    @_keys.default
    def _normalised_keys(self) -> frozenset[str]:
        # Validate once and keep the lower-cased, IDNA-encoded forms that allows() compares against.
        if self.kind is ScopeKind.UNRESTRICTED:
            if self.identities:
                raise ValueError("an unrestricted scope takes no identities")
            return frozenset()
        if not self.identities:
            raise ValueError(f"a {self.kind.value} scope needs at least one identity")
        keys = set()
        for identity in self.identities:
            if not isinstance(identity, str):
                raise TypeError(f"scope identities are strings, got {type(identity).__name__}")
            if self.kind is ScopeKind.PER_ADDRESS:
                parsed = try_parse_address(identity)
                if parsed is None:
                    raise ValueError(f"{identity!r} is not an e-mail address")
                keys.add(parsed.addr_spec.lower())
                continue
            wildcard = identity.startswith("*.")
            try:
                domain = idna_domain(identity.removeprefix("*.")).lower()
            except ValueError as exc:
                raise ValueError(f"{identity!r} is not a domain: {exc}") from None
            keys.add(("*." if wildcard else "") + domain)
        return frozenset(keys)

    @classmethod
    def per_address(cls, *addresses: str, provider: str | None = None) -> CredentialScope:
        """A credential that belongs to these mailboxes only (one mailbox and its send-as aliases)."""
        return cls(ScopeKind.PER_ADDRESS, addresses, provider=provider)

    @classmethod
    def per_domain(cls, *domains: str, provider: str | None = None) -> CredentialScope:
        """A credential that covers every address at these domains (``*.example.com`` for subdomains)."""
        return cls(ScopeKind.PER_DOMAIN, domains, provider=provider)

    @classmethod
    def unrestricted(cls, provider: str | None = None) -> CredentialScope:
        """A credential that may send as anyone (the server's owner decides)."""
        return cls(ScopeKind.UNRESTRICTED, provider=provider)

    @property
    def shareable(self) -> bool:
        """Whether a team may share this credential: True unless it belongs to one mailbox."""
        return self.kind is not ScopeKind.PER_ADDRESS

    def allows(self, sender: str) -> bool:
        """Whether this credential may send as ``sender`` (a bare address or ``"Name <address>"``).

        A malformed sender is never allowed.
        """
        # A local mailbox (no domain, which only Django's backend lets through) is a sender only an
        # unrestricted credential covers.
        parsed = try_parse_address(sender, local_mailboxes=True)
        if parsed is None:
            return False
        if self.kind is ScopeKind.UNRESTRICTED:
            return True
        keys = self._keys
        if self.kind is ScopeKind.PER_ADDRESS:
            return parsed.addr_spec.lower() in keys
        domain = parsed.domain.lower()
        if domain in keys:
            return True
        parts = domain.split(".")
        return any("*." + ".".join(parts[i:]) in keys for i in range(1, len(parts)))

    def covers(self, other: CredentialScope) -> bool:
        """Whether every sender that ``other`` allows is allowed here too."""
        if self.kind is ScopeKind.UNRESTRICTED:
            return True
        if isinstance(other, _ScopeUnion):
            return all(self.covers(part) for part in other.parts)
        if other.kind is ScopeKind.UNRESTRICTED:
            return False
        if other.kind is ScopeKind.PER_ADDRESS:
            return all(self.allows(identity) for identity in other.identities)
        if self.kind is ScopeKind.PER_ADDRESS:
            return False
        for key in other._keys:
            if key.startswith("*."):
                parts = key[2:].split(".")
                if not any("*." + ".".join(parts[i:]) in self._keys for i in range(len(parts))):
                    return False
            elif not self.allows("postmaster@" + key):
                return False
        return True

    def explain(self, sender: str) -> str:
        """One sentence saying why ``sender`` is or is not covered, with the remedy when it is not."""
        provider = self.provider or "This"
        parsed = try_parse_address(sender)
        if parsed is None:
            return f"{sender!r} is not an e-mail address; write 'bob@example.com' or 'Bob <bob@example.com>'."
        address = parsed.addr_spec
        listed = ", ".join(self.identities)
        if self.kind is ScopeKind.UNRESTRICTED:
            return (
                f"{provider} credential is not restricted to any sender, so {address} is allowed; "
                "the server's owner decides who may send."
            )
        if self.kind is ScopeKind.PER_ADDRESS:
            if self.allows(sender):
                return (
                    f"{address} is the mailbox (or a declared send-as address) this credential belongs to, "
                    "so it may send; do not share the credential with anyone else."
                )
            who = f"{self.provider} credentials" if self.provider else "These credentials"
            return (
                f"{who} belong to one mailbox ({listed}), so they cannot send as {address}; "
                f"give {address} its own channel, declare it as a send-as address the mailbox may use, "
                "or use a per-domain provider."
            )
        if self.allows(sender):
            return (
                f"{address} is at a domain this credential covers ({listed}), so it may send, "
                "and the credential may be shared by everyone at that domain."
            )
        return (
            f"This credential covers the domains {listed} only, so it cannot send as {address}; "
            f"verify {parsed.domain} as a sending domain with the provider and add it to the channel's "
            "domains, or send from an address at a covered domain."
        )

    def __str__(self) -> str:
        if self.kind is ScopeKind.UNRESTRICTED:
            return "unrestricted"
        return f"{self.kind.value}: {', '.join(self.identities)}"


@attrs.frozen
class _ScopeUnion(CredentialScope):
    """The senders any of several scopes allows, when they are of different kinds.

    Built by :func:`union_of` for a :class:`~sendchannel.FailoverChannel` over, say, an Office 365
    mailbox (per-address) and SparkPost (per-domain). It reports the most restrictive kind among its
    parts (so ``shareable`` is False when any part belongs to one mailbox), and ``identities`` lists every
    part's identities.
    """

    parts: tuple[CredentialScope, ...] = attrs.field(kw_only=True)
    # The parts do the matching; nothing to normalise here (and the identities mix addresses and domains).
    _keys: frozenset[str] = attrs.field(init=False, eq=False, repr=False, factory=frozenset)

    @property
    def shareable(self) -> bool:
        """Whether every part may be shared by a team."""
        return all(part.shareable for part in self.parts)

    def allows(self, sender: str) -> bool:
        """Whether any part allows ``sender``."""
        return any(part.allows(sender) for part in self.parts)

    def covers(self, other: CredentialScope) -> bool:
        """Whether every sender ``other`` allows is allowed by some part."""
        others = other.parts if isinstance(other, _ScopeUnion) else (other,)
        # Each identity on its own: two of them may be covered by different parts.
        atoms = [
            piece if piece.kind is ScopeKind.UNRESTRICTED else CredentialScope(piece.kind, (identity,))
            for piece in others
            for identity in (piece.identities or ("",))
        ]
        return all(any(part.covers(atom) for part in self.parts) for atom in atoms)

    def explain(self, sender: str) -> str:
        """Why ``sender`` is covered (by the first part that covers it), or why no part covers it."""
        for part in self.parts:
            if part.allows(sender):
                return part.explain(sender)
        parsed = try_parse_address(sender)
        if parsed is None:
            return self.parts[0].explain(sender)
        return (
            f"None of the credentials may send as {parsed.addr_spec} ({self}); send from an address one "
            "of them covers, or add a channel whose credential covers this sender."
        )

    def __str__(self) -> str:
        return " + ".join(str(part) for part in self.parts)


_RESTRICTIVENESS = (ScopeKind.PER_ADDRESS, ScopeKind.PER_DOMAIN, ScopeKind.UNRESTRICTED)


def union_of(scopes: tuple[CredentialScope, ...] | list[CredentialScope]) -> CredentialScope:
    """The scope that allows every sender any of ``scopes`` allows.

    Scopes of one kind merge into one plain scope of that kind; an unrestricted scope swallows the rest;
    scopes of different kinds become a union that asks each part in turn.

    Raises:
        ValueError: When ``scopes`` is empty.
    """
    flat: list[CredentialScope] = []
    for scope in scopes:
        flat.extend(scope.parts if isinstance(scope, _ScopeUnion) else (scope,))
    if not flat:
        raise ValueError("a union of scopes needs at least one scope")
    providers = {scope.provider for scope in flat}
    provider = providers.pop() if len(providers) == 1 else None
    if any(scope.kind is ScopeKind.UNRESTRICTED for scope in flat):
        return CredentialScope.unrestricted(provider=provider)
    kinds = {scope.kind for scope in flat}
    identities = tuple(identity for scope in flat for identity in scope.identities)
    if len(kinds) == 1:
        return CredentialScope(kinds.pop(), identities, provider=provider)
    kind = min(kinds, key=_RESTRICTIVENESS.index)
    return _ScopeUnion(kind, identities, provider=provider, parts=tuple(flat))
