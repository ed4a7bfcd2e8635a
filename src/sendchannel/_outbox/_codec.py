"""How a message and its outcome are kept in the outbox's database.

A message is stored twice over, in two columns: ``rendered``, the bytes it was rendered to at ``put``
(exactly what an SMTP server will get, Date and Message-ID included), and ``envelope``, JSON of the
message's fields (sender and every recipient, Bcc included, which the bytes do not carry, and the rest,
attachments in base64). A worker rebuilds the ``Message`` from the fields (no MIME parsing, which would
cost more than the send) and gives it the stored bytes, so what goes out is what was stored, and a
provider that renders its own form (Gmail and Graph add a Bcc header) has every field to do it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import attrs

from sendchannel._message import Attachment, Message
from sendchannel._result import SendResult

__all__ = ["decode_message", "decode_result", "describe_error", "encode_message", "encode_result"]

# An error text longer than this is cut (a provider may answer with a whole HTML page).
_MAX_ERROR = 2000

# The Message fields the constructor takes (envelope_sender and any later one included).
_FIELDS = tuple(
    field.name for field in attrs.fields(Message) if field.init and not field.name.startswith("_")
)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _attachment(attachment: Attachment) -> dict[str, Any]:
    return {
        "filename": attachment.filename,
        "content": base64.b64encode(attachment.content).decode("ascii"),
        "content_type": attachment.content_type,
        "inline": attachment.inline,
        "content_id": attachment.content_id,
    }


def encode_message(message: Message) -> tuple[bytes, str]:
    """The rendered bytes and the fields (JSON text) to store for ``message``."""
    fields: dict[str, Any] = {"v": 1}
    for name in _FIELDS:
        value = getattr(message, name)
        if name == "attachments":
            fields[name] = [_attachment(attachment) for attachment in value]
        elif value not in (None, (), {}) or name == "sender":
            fields[name] = _plain(value)
    return message.as_bytes(), json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def decode_message(rendered: bytes, envelope: str) -> Message:
    """The Message stored as ``rendered`` and ``envelope``; it renders to ``rendered`` exactly."""
    fields = json.loads(envelope)
    fields.pop("v", None)
    attachments = fields.pop("attachments", None)
    if attachments:
        fields["attachments"] = [
            Attachment(
                item["filename"],
                base64.b64decode(item["content"]),
                item["content_type"],
                inline=item["inline"],
                content_id=item["content_id"],
            )
            for item in attachments
        ]
    message = Message(**fields)
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
