"""Which recipients SparkPost refused: its refusals name addresses in free text, matched here."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["attribute", "mentioned"]

_DOMAIN_RUN = re.compile(r"[\w.-]*")
_BEFORE_ADDRESS = re.compile(r"[\w.+-]")
_NOT_IN_ADDRESS = frozenset(' \t\r\n<>()[],;:"@\\')


def mentioned(text: str, wanted: Mapping[str, str]) -> set[str]:
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


def attribute(recipients: Sequence[str], refusals: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Match refusal texts to the recipients they name; a single recipient takes any refusal.

    Returns the refused recipients with their reply, and the refusals that name nobody.
    """
    rejected: dict[str, str] = {}
    unattributed: list[str] = []
    wanted = {r.lower(): r for r in recipients}
    order = {r: index for index, r in enumerate(recipients)}
    for text in refusals:
        named = sorted((r for r in mentioned(text, wanted) if r not in rejected), key=order.__getitem__)
        for recipient in named:
            rejected[recipient] = text
        if not named:
            unattributed.append(text)
    remaining = [r for r in recipients if r not in rejected]
    if unattributed and len(remaining) == 1:
        rejected[remaining[0]] = unattributed[0]
        unattributed = []
    return rejected, unattributed
