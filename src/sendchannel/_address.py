"""Parsing and normalising e-mail addresses: ``"bob@example.com"`` or ``"Bob Smith <bob@example.com>"``.

Addresses are normalised once, when a Message is built: an internationalised domain is written in its
IDNA A-label form (``bücher.example`` becomes ``xn--bcher-kva.example``), so that only a non-ASCII local part
needs SMTPUTF8 from the server, and the display name is kept as text (encoded with RFC 2047 on the wire).
"""

from __future__ import annotations

import re

from sendchannel.errors import InvalidMessageError

__all__ = ["ParsedAddress", "configured_address", "configured_domains", "parse_address"]

# RFC 5322 atext, plus any non-ASCII character (RFC 6531 allows UTF-8 local parts) except the C1 controls,
# the Unicode line and paragraph separators and lone surrogates: text-based mail parsers split lines at
# U+0085, U+2028 and U+2029, and a surrogate cannot be encoded at all.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\u2027\u202a-\ud7ff\ue000-\U0010ffff]"
_LOCAL_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_FORBIDDEN = frozenset("\r\n\x00")
# An RFC 2047 encoded word: it must not appear in an address (RFC 2047 section 5), and readers such as the
# stdlib's decode it anyway, so "=?utf-8?b?DQpCY2M6...?=@x" would turn into a line break and a new header.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")
# RFC 5322 specials: a display name holding one of them is written as a quoted string.
_SPECIALS = frozenset(r'()<>@,:;.\"[]')


class ParsedAddress:
    """An address split into its display name and address, with the domain as an IDNA A-label."""

    __slots__ = ("addr_spec", "display_name", "domain", "local_part")

    def __init__(self, display_name: str, local_part: str, domain: str) -> None:
        self.display_name = display_name
        self.local_part = local_part
        self.domain = domain
        # A local mailbox (``"webmaster"``, no domain) is only built for Django's rules, see parse_address.
        self.addr_spec = f"{local_part}@{domain}" if domain else local_part

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the address itself (not its display name) has a non-ASCII character."""
        return not self.addr_spec.isascii()

    def formatted(self) -> str:
        """The address as a header would carry it: ``Name <a@b>``, quoting the name where needed.

        The same text as ``str(email.headerregistry.Address(...))`` (a test checks it), without re-parsing an
        address that parse_address has already checked: this runs for every address of every Message.
        """
        name = self.display_name
        if not name:
            return self.addr_spec
        if not _SPECIALS.isdisjoint(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.addr_spec}>"


def idna_domain(domain: str) -> str:
    """The ASCII (A-label) form of ``domain``; raises ValueError when it is not a valid host name."""
    if not domain or len(domain) > 253:
        raise ValueError("the domain is empty or longer than 253 characters")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"the domain cannot be encoded with IDNA ({exc})") from None
    labels = domain.split(".")
    if len(labels) < 2 and domain.lower() != "localhost":
        raise ValueError("the domain has no dot (write the full domain, such as example.com)")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise ValueError(f"the domain label {label!r} is not a valid host name label")
    return domain


def parse_address(value: object, field: str, *, local_mailboxes: bool = False) -> ParsedAddress:
    """Parse ``value`` as one address; raise InvalidMessageError naming ``field`` when it is not one.

    With ``local_mailboxes``, an address without a domain (``"webmaster"``) is taken as a mailbox of the
    server itself, as Django accepts it (Django ticket #15042); the domain is then empty.
    """
    if not isinstance(value, str):
        raise InvalidMessageError(
            f"{field}: expected an address string such as 'bob@example.com', got {type(value).__name__}"
        )
    if _FORBIDDEN.intersection(value):
        raise InvalidMessageError(
            f"{field}: {value!r} contains a line break or NUL, which could inject headers; "
            "remove it"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessageError(
            f"{field}: {value!r} contains a lone surrogate, which is not text (it usually comes from "
            "bytes decoded with errors='surrogateescape'); decode the source properly"
        ) from None
    text = value.strip()
    display_name = ""
    if text.endswith(">") and "<" in text:
        start = text.rindex("<")
        display_name = _unquote(text[:start].strip(), field, value)
        text = text[start + 1 : -1].strip()
    elif "<" in text or ">" in text:
        raise InvalidMessageError(
            f"{field}: {value!r} is not an address; write 'bob@example.com' or 'Bob <bob@example.com>'"
        )
    local, at, domain = text.rpartition("@")
    if local_mailboxes and not at and _LOCAL_RE.fullmatch(domain) and len(domain) <= 64:
        return ParsedAddress(display_name, domain, "")
    if not at or not local or not _LOCAL_RE.fullmatch(local) or len(local) > 64:
        raise InvalidMessageError(
            f"{field}: {value!r} is not a valid address; write 'bob@example.com' or 'Bob <bob@example.com>'"
        )
    if _ENCODED_WORD.search(local):
        raise InvalidMessageError(
            f"{field}: {value!r} has an RFC 2047 encoded word ('=?...?=') in its local part, which mail "
            "readers decode into other text; encoded words belong in display names, not in addresses"
        )
    try:
        domain = idna_domain(domain)
    except ValueError as exc:
        raise InvalidMessageError(f"{field}: {value!r} has an invalid domain: {exc}") from None
    return ParsedAddress(display_name, local, domain)


def _unquote(name: str, field: str, original: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in name):
        raise InvalidMessageError(
            f"{field}: the display name in {original!r} contains a control character; remove it"
        )
    # A display name is a phrase: runs of blanks in it carry no meaning, and mail readers fold them.
    return " ".join(name.split())


def try_parse_address(value: object, *, local_mailboxes: bool = False) -> ParsedAddress | None:
    """Like parse_address, but None instead of an error (for checks that only answer yes or no)."""
    try:
        return parse_address(value, "address", local_mailboxes=local_mailboxes)
    except InvalidMessageError:
        return None


# -- addresses and domains in a channel's configuration ---------------------------------------------------


def configured_address(value: object, field: str) -> str:
    """The bare address of a channel option (``address=``, ``send_as=``); ConfigurationError if it is none."""
    from sendchannel.errors import ConfigurationError

    parsed = try_parse_address(value)
    if parsed is None:
        raise ConfigurationError(
            f"{field} must be an e-mail address such as 'alice@contoso.com', got {value!r}"
        )
    return parsed.addr_spec


def configured_domains(value: object, *, covers: str) -> tuple[str, ...]:
    """The lower-case domains of a ``domains=`` option (a sequence, or one string of comma-separated names).

    ``*.example.com`` is kept as written (it covers subdomains). Blank items are dropped and repeats kept
    once; the result may be empty (the caller says what it needs).

    Args:
        value: What the user passed.
        covers: Why an address is the wrong thing, ending the message for one (``"a SparkPost key covers
            every address at a verified sending domain"``).

    Raises:
        ConfigurationError: Not a sequence of strings, an address instead of a domain, or not a domain.
    """
    from collections.abc import Iterable

    from sendchannel.errors import ConfigurationError

    items: Iterable[object]
    if isinstance(value, str):
        items = value.split(",")
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
                f"{item!r} in domains is an address; give its domain "
                f"({domain.rpartition('@')[2]!r}): {covers}"
            )
        try:
            idna_domain(domain.removeprefix("*."))
        except ValueError as exc:
            raise ConfigurationError(f"{item!r} in domains is not a domain name: {exc}") from None
        domains.append(domain)
    return tuple(dict.fromkeys(domains))
