"""The union of credential scopes, which a FailoverChannel presents as its own."""

from __future__ import annotations

import pytest

from sendchannel import CredentialScope, ScopeKind
from sendchannel._scope import union_of

MAILBOX = CredentialScope.per_address("alice@contoso.com", provider="Office 365")
DOMAIN = CredentialScope.per_domain("contoso.com", provider="SparkPost")


def test_scopes_of_one_kind_merge_into_a_plain_scope_of_that_kind() -> None:
    merged = union_of([MAILBOX, CredentialScope.per_address("bob@fabrikam.com")])
    assert CredentialScope.per_address("alice@contoso.com", "bob@fabrikam.com") == merged
    assert type(merged) is CredentialScope


def test_same_kind_with_one_provider_keeps_the_provider_for_explanations() -> None:
    merged = union_of([DOMAIN, CredentialScope.per_domain("fabrikam.com", provider="SparkPost")])
    assert "SparkPost" == merged.provider


def test_an_unrestricted_scope_swallows_the_rest() -> None:
    assert CredentialScope.unrestricted() == union_of([MAILBOX, CredentialScope.unrestricted()])


def test_a_mailbox_and_a_domain_allow_each_of_their_senders_and_nobody_else() -> None:
    scope = union_of([MAILBOX, CredentialScope.per_domain("fabrikam.com")])
    assert scope.allows("Alice <ALICE@contoso.com>")
    assert scope.allows("bob@fabrikam.com")
    assert not scope.allows("bob@contoso.com")
    assert not scope.allows("not an address")


def test_a_mixed_union_reports_the_most_restrictive_kind_and_is_not_shareable() -> None:
    scope = union_of([DOMAIN, MAILBOX])
    assert ScopeKind.PER_ADDRESS == scope.kind
    assert not scope.shareable
    assert ("contoso.com", "alice@contoso.com") == scope.identities
    assert "per-domain: contoso.com + per-address: alice@contoso.com" == str(scope)


def test_a_mixed_union_explains_through_the_part_that_covers_the_sender() -> None:
    scope = union_of([MAILBOX, CredentialScope.per_domain("fabrikam.com")])
    assert MAILBOX.explain("alice@contoso.com") == scope.explain("alice@contoso.com")
    assert (
        "None of the credentials may send as eve@example.org (per-address: alice@contoso.com + "
        "per-domain: fabrikam.com); send from an address one of them covers, or add a channel whose "
        "credential covers this sender."
    ) == scope.explain("eve@example.org")
    assert "is not an e-mail address" in scope.explain("nonsense")


def test_unions_nest_flat_and_compare_by_their_parts() -> None:
    inner = union_of([MAILBOX, DOMAIN])
    outer = union_of([inner, CredentialScope.per_domain("fabrikam.com")])
    assert outer.allows("x@fabrikam.com")
    assert union_of([MAILBOX, DOMAIN]) == inner
    assert hash(union_of([MAILBOX, DOMAIN])) == hash(inner)


def test_covers_works_both_ways_with_a_union() -> None:
    union = union_of([MAILBOX, CredentialScope.per_domain("fabrikam.com")])
    assert DOMAIN.covers(union) is False  # fabrikam.com is not in it
    assert CredentialScope.per_domain("contoso.com", "fabrikam.com").covers(union)
    assert union.covers(CredentialScope.per_address("x@fabrikam.com"))
    assert not union.covers(DOMAIN)
    assert union.covers(union_of([MAILBOX, CredentialScope.per_address("y@fabrikam.com")]))


def test_an_empty_union_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        union_of([])
