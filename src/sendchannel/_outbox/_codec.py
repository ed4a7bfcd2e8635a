"""How a message and its outcome are kept in the outbox's database.

A message is stored as the bytes it was rendered to (exactly what the provider will get, Date and
Message-ID included) and its envelope (sender, recipients, Bcc, which the bytes do not carry), so nothing a
worker needs depends on the application's code being importable. A worker rebuilds the ``Message`` from the
bytes and hands the stored bytes out again, not a new rendering.
"""

from __future__ import annotations

import email
import email.policy
import json
from typing import Any

from sendchannel._message import Message
from sendchannel._result import SendResult

__all__ = ["decode_message", "decode_result", "describe_error", "encode_message", "encode_result"]

# An error text longer than this is cut (a provider may answer with a whole HTML page).
_MAX_ERROR = 2000


def encode_message(message: Message) -> tuple[bytes, str]:
    """The rendered bytes and the envelope (JSON text) to store for ``message``."""
    envelope: dict[str, Any] = {
        "sender": message.sender,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
    }
    envelope_sender = getattr(message, "envelope_sender", None)
    if envelope_sender is not None:
        envelope["envelope_sender"] = envelope_sender
    return message.as_bytes(), json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def decode_message(rendered: bytes, envelope: str) -> Message:
    """The Message stored as ``rendered`` and ``envelope``; it renders to ``rendered`` exactly."""
    fields = json.loads(envelope)
    source = email.message_from_bytes(rendered.replace(b"\r\n", b"\n"), policy=email.policy.default)
    parsed = Message.from_email_message(source)
    changes: dict[str, Any] = {
        "sender": fields["sender"],
        "to": fields["to"],
        "cc": fields["cc"],
        "bcc": fields["bcc"],
        "message_id": parsed.message_id,
    }
    if "envelope_sender" in fields:
        changes["envelope_sender"] = fields["envelope_sender"]
    message = parsed.evolve(**changes)
    # What goes out is what was stored: the same bytes, not a new rendering (a new Date, say).
    object.__setattr__(message, "_rendered", bytes(rendered))
    return message


def encode_result(result: SendResult) -> str:
    """A SendResult as JSON text."""
    return json.dumps(
        {
            "message_id": result.message_id,
            "provider_id": result.provider_id,
            "accepted": list(result.accepted),
            "rejected": dict(result.rejected),
            "channel": result.channel,
            "attempts": result.attempts,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_result(text: str | None) -> SendResult | None:
    """The SendResult stored as ``text`` (None stays None)."""
    if text is None:
        return None
    fields = json.loads(text)
    return SendResult(**fields)


def describe_error(error: BaseException) -> str:
    """``"ClassName: message"`` for the item's ``error`` (the error texts never carry a secret)."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."
