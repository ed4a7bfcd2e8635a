"""SparkPost's template language, kept out of the messages the channel sends.

SparkPost runs its template language over the top-level headers and the first text/plain and text/html
parts of RFC822 content, even without substitution data: "{{name}}" would become "". Runs of braces that
hold "{{" or "}}" are written with SparkPost's brace macros; a lone brace inside such a run comes from
substitution data, since a literal one next to a macro's own braces would read as "{{{".
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from sendchannel._address import ParsedAddress
from sendchannel._message import Message
from sendchannel.errors import InvalidMessageError

__all__ = ["BRACE_DATA", "escape_template_syntax", "literal_message"]

_BRACE_RUN_RE = re.compile(r"[{}]{2,}")
_OPEN_KEY = "sendchannel_open_brace"
_CLOSE_KEY = "sendchannel_close_brace"
BRACE_DATA = {_OPEN_KEY: "{", _CLOSE_KEY: "}"}


def _has_template_syntax(text: str | None) -> bool:
    return text is not None and ("{{" in text or "}}" in text)


def _escape_run(match: re.Match[str]) -> str:
    run = match.group()
    if "{{" not in run and "}}" not in run:
        return run
    out: list[str] = []
    for char, group in itertools.groupby(run):
        count = len(list(group))
        side = "opening" if char == "{" else "closing"
        if count == 1:
            out.append("{{" + (_OPEN_KEY if char == "{" else _CLOSE_KEY) + "}}")
            continue
        if count % 2:
            out.append("{{" + side + "_triple_curly()}}")
            count -= 3
        out.extend(["{{" + side + "_double_curly()}}"] * (count // 2))
    return "".join(out)


def escape_template_syntax(text: str) -> str:
    """``text`` written so that SparkPost's template engine renders it unchanged."""
    return _BRACE_RUN_RE.sub(_escape_run, text)


def _any_template_syntax(message: Message) -> bool:
    """Whether "{{" or "}}" appears anywhere SparkPost would read it (addresses, names, texts, headers)."""
    texts = [message.sender, *message.to, *message.cc, *message.bcc, *message.reply_to]
    texts += message.headers.values()
    texts += [message.subject or "", message.text or "", message.html or "", message.message_id]
    texts += [a.display_name or "" for f in ("sender", "to", "cc", "reply_to") for a in message.parsed(f)]
    joined = "\0".join(texts)  # one pass in C; NUL never occurs in these strings' own text
    return "{{" in joined or "}}" in joined


def literal_message(message: Message) -> Message | None:
    """A copy of ``message`` whose template syntax SparkPost renders as written, or None when it has none.

    Raises:
        InvalidMessageError: "{{" or "}}" in an address or the Message-ID, which cannot be escaped.
    """
    if not _any_template_syntax(message):
        return None  # the usual case, found with one pass over the message's own strings
    # A Bcc address travels only in the request's recipients, where SparkPost reads it as template text too.
    for field in ("sender", "to", "cc", "bcc", "reply_to"):
        for address in message.parsed(field):
            if _has_template_syntax(address.addr_spec):
                raise InvalidMessageError(
                    f"{field}: {address.addr_spec!r} contains '{{{{' or '}}}}', which SparkPost reads as "
                    "template syntax in the headers; SparkPost cannot send to or from such an address"
                )
    if _has_template_syntax(message.message_id):
        raise InvalidMessageError(
            f"message_id: {message.message_id!r} contains '{{{{' or '}}}}', which SparkPost reads as "
            "template syntax; leave message_id out to have one generated"
        )
    changes: dict[str, Any] = {}
    for field in ("subject", "text", "html"):
        value = getattr(message, field)
        if _has_template_syntax(value):
            changes[field] = escape_template_syntax(value)
    if any(_has_template_syntax(value) for value in message.headers.values()):
        changes["headers"] = {name: escape_template_syntax(v) for name, v in message.headers.items()}
    for field in ("sender", "to", "cc", "reply_to"):
        parsed = message.parsed(field)
        if any(_has_template_syntax(a.display_name) for a in parsed):
            rebuilt = [
                ParsedAddress(escape_template_syntax(a.display_name), a.local_part, a.domain).formatted()
                for a in parsed
            ]
            changes[field] = rebuilt[0] if field == "sender" else rebuilt
    if not changes:
        return None
    return message.evolve(**changes)

