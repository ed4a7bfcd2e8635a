"""Answer tables: what a provider's answers mean, as data.

Every provider reads its answers (an SMTP reply, an HTTP status with a JSON error body) the same way: a
table of :class:`Rule` rows, most specific first, each naming the answers it covers (status or reply
codes, the provider's reason codes, words of its text, the situation it answers) and the error they
become, with an explanation that names the cause and the remedy. The first rule that fits decides.
:func:`table` writes a table as text, for a module's docstring, so the documentation never drifts from
the rules.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import TypeVar

import attrs

from sendchannel.errors import SendError

__all__ = ["CodeRange", "Rule", "first", "parse_codes", "table", "when"]

CodeRange = tuple[int, int]
R = TypeVar("R", bound="Rule")


def parse_codes(spec: str | None) -> tuple[CodeRange, ...]:
    """Code ranges from ``"421"``, ``"4xx"``, ``"500-504"``, ``"-1-399"``, or several joined by commas."""
    if spec is None:
        return ()
    ranges = []
    for item in spec.split(","):
        item = item.strip()
        if item.endswith("xx"):
            low = int(item[0]) * 100
            ranges.append((low, low + 99))
        elif "-" in item[1:]:
            low_text, high_text = item[0] + item[1:].split("-", 1)[0], item[1:].split("-", 1)[1]
            ranges.append((int(low_text), int(high_text)))
        else:
            ranges.append((int(item), int(item)))
    return tuple(ranges)


@attrs.frozen
class Rule:
    """One row of an answer table. Build rules with :func:`when`.

    Args:
        error: The error class the answers become.
        explain: The error's text, a ``str.format`` template the provider fills in.
        codes: Code ranges that fit (empty: any code).
        reasons: Provider reason codes, any of which fits (None: any, or none at all).
        text: A regular expression searched in the answer's text, case-insensitively (None: any text).
        situations: What the answer may be answering (an SMTP stage, ``"send"``, ``"verify"``...; empty:
            anything).
    """

    error: type[SendError]
    explain: str
    codes: tuple[CodeRange, ...] = ()
    reasons: frozenset[str] | None = None
    text: re.Pattern[str] | None = None
    situations: frozenset[Hashable] = frozenset()

    def fits(
        self, code: int, text: str, *, reasons: Collection[str] = (), situation: Hashable = None
    ) -> bool:
        """Whether an answer with this code, text and reasons, in this situation, falls under the rule."""
        if self.codes and not any(low <= code <= high for low, high in self.codes):
            return False
        if self.situations and situation not in self.situations:
            return False
        if self.reasons is not None and not self.reasons.intersection(reasons):
            return False
        return self.text is None or self.text.search(text) is not None

    def describe(self) -> str:
        """The rule's criteria in a few words, for a table."""
        parts = [",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.codes) or "any"]
        if self.reasons:
            parts.append("/".join(sorted(self.reasons)))
        if self.text is not None:
            parts.append(f"'{self.text.pattern}'")
        if self.situations:
            parts.append("in " + "/".join(sorted(str(getattr(s, "name", s)) for s in self.situations)))
        return " ".join(parts)


def when(
    error: type[SendError],
    explain: str,
    *,
    code: str | None = None,
    reasons: Iterable[str] | None = None,
    text: str | None = None,
    situations: Collection[Hashable] = (),
) -> Rule:
    """A :class:`Rule` written compactly (``code`` as for :func:`parse_codes`, ``text`` a regex)."""
    return Rule(
        error=error,
        explain=explain,
        codes=parse_codes(code),
        reasons=None if reasons is None else frozenset(reasons),
        text=None if text is None else re.compile(text, re.IGNORECASE),
        situations=frozenset(situations),
    )


def first(
    rules: Sequence[R],
    code: int,
    text: str,
    *,
    reasons: Collection[str] = (),
    situation: Hashable = None,
) -> R | None:
    """The first rule of ``rules`` that fits the answer, or None."""
    return next((r for r in rules if r.fits(code, text, reasons=reasons, situation=situation)), None)


def table(rules: Iterable[Rule]) -> str:
    """The rules as an indented text table (criteria, then the error), for a module docstring."""
    rows = [(r.describe(), r.error.__name__) for r in rules]
    width = max((len(criteria) for criteria, _ in rows), default=0)
    return "\n".join(f"    {criteria.ljust(width)}  {error}" for criteria, error in rows)
