"""CredentialScope: who a credential may send as, whether it may be shared, and why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendchannel import CredentialScope, ScopeKind
from tests import strategies


def test_per_address_allows_its_mailbox_in_any_case_and_form() -> None:
    scope = CredentialScope.per_address("alice@contoso.com")
    assert scope.allows("alice@contoso.com")
    assert scope.allows("ALICE@Contoso.COM")
    assert scope.allows("Alice Smith <alice@contoso.com>")
    assert not scope.allows("bob@contoso.com")


def test_per_domain_covers_exactly_its_domains_not_subdomains() -> None:
    scope = CredentialScope.per_domain("contoso.com")
    assert scope.allows("anyone@contoso.com")
    assert scope.allows("Anyone <ANYONE@CONTOSO.COM>")
    assert not scope.allows("a@mail.contoso.com")
    assert not scope.allows("a@notcontoso.com")
    assert not scope.allows("a@contoso.com.evil.example")


def test_wildcard_domain_covers_subdomains_at_any_depth_but_not_itself() -> None:
    scope = CredentialScope.per_domain("*.contoso.com")
    assert scope.allows("a@mail.contoso.com")
    assert scope.allows("a@x.y.contoso.com")
    assert not scope.allows("a@contoso.com")
    assert not scope.allows("a@evilcontoso.com")


def test_internationalised_domains_match_in_either_form() -> None:
    scope = CredentialScope.per_domain("bücher.example")
    assert scope.allows("a@xn--bcher-kva.example")
    assert scope.allows("a@BÜCHER.example")
    assert CredentialScope.per_domain("xn--bcher-kva.example").allows("a@bücher.example")


@pytest.mark.parametrize(
    "sender",
    ["", "not an address", "a@", "@contoso.com", "a@contoso..com", "a\r\n@contoso.com", "<a@contoso.com", 42],
)
def test_malformed_senders_are_never_allowed(sender: str) -> None:
    assert not CredentialScope.unrestricted().allows(sender)
    assert not CredentialScope.per_domain("contoso.com").allows(sender)


def test_shareable_unless_per_address() -> None:
    assert not CredentialScope.per_address("a@b.com").shareable
    assert CredentialScope.per_domain("b.com").shareable
    assert CredentialScope.unrestricted().shareable


def test_explain_names_the_remedy_for_a_mailbox_credential() -> None:
    scope = CredentialScope.per_address("alice@contoso.com", provider="Office 365")
    sentence = scope.explain("Bob <bob@contoso.com>")
    assert sentence.startswith("Office 365 credentials belong to one mailbox (alice@contoso.com)")
    assert "give bob@contoso.com its own channel" in sentence
    assert "per-domain provider" in sentence
    assert "do not share" in scope.explain("alice@contoso.com")


def test_explain_for_domains_and_unrestricted_and_garbage() -> None:
    domain = CredentialScope.per_domain("contoso.com")
    assert "may be shared" in domain.explain("a@contoso.com")
    assert "verify fabrikam.com as a sending domain" in domain.explain("a@fabrikam.com")
    assert "not restricted" in CredentialScope.unrestricted().explain("a@b.com")
    assert "not an e-mail address" in domain.explain("nonsense")


def test_invalid_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one identity"):
        CredentialScope.per_address()
    with pytest.raises(ValueError, match="not an e-mail address"):
        CredentialScope.per_address("nobody")
    with pytest.raises(ValueError, match="not a domain"):
        CredentialScope.per_domain("exa mple.com")
    with pytest.raises(ValueError, match="takes no identities"):
        CredentialScope(ScopeKind.UNRESTRICTED, ("a@b.com",))


def test_covers_compares_scopes() -> None:
    office = CredentialScope.per_address("alice@contoso.com")
    domain = CredentialScope.per_domain("contoso.com")
    assert domain.covers(office)
    assert not office.covers(domain)
    assert CredentialScope.unrestricted().covers(domain)
    assert not domain.covers(CredentialScope.unrestricted())
    assert CredentialScope.per_domain("*.contoso.com").covers(
        CredentialScope.per_domain("*.mail.contoso.com")
    )
    assert not CredentialScope.per_domain("contoso.com").covers(CredentialScope.per_domain("*.contoso.com"))


def test_scopes_compare_by_kind_and_identities() -> None:
    assert CredentialScope.per_domain("a.com", provider="X") == CredentialScope.per_domain("a.com")
    assert "per-domain: a.com" == str(CredentialScope.per_domain("a.com"))


@given(strategies.bare_addresses, st.sampled_from([str.upper, str.lower, str.title, str]))
def test_per_address_allows_is_case_insensitive(address: str, case: object) -> None:
    scope = CredentialScope.per_address(address)
    assert scope.allows(case(address))  # type: ignore[operator]


@given(strategies.local_parts, strategies.domains, strategies.ascii_labels)
def test_per_domain_never_covers_a_subdomain_without_a_wildcard(local: str, domain: str, label: str) -> None:
    scope = CredentialScope.per_domain(domain)
    assert scope.allows(f"{local}@{domain}")
    assert not scope.allows(f"{local}@{label}.{domain}")
    assert CredentialScope.per_domain(f"*.{domain}").allows(f"{local}@{label}.{domain}")
    assert not CredentialScope.per_domain(f"*.{domain}").allows(f"{local}@{domain}")


@given(st.text(max_size=40))
def test_allows_never_raises_on_any_text(sender: str) -> None:
    scope = CredentialScope.per_domain("example.com")
    assert scope.allows(sender) in (True, False)
    assert isinstance(scope.explain(sender), str)
