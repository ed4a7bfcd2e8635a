"""Message and Attachment: validated at construction, rendered to MIME bytes by :mod:`._mime`."""

from __future__ import annotations

import email.message
import email.policy
import mimetypes
import re
import types
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, cast

import attrs

from sendchannel._address import ParsedAddress, parse_address
from sendchannel.errors import InvalidMessageError

__all__ = ["OWNED_HEADERS", "Attachment", "Message"]

#: Headers the library writes itself; set them through Message's fields, never through ``headers``.
OWNED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "message-id", "date", "mime-version"}
)
# A header line may be 998 characters long (RFC 5322): a name must leave room for its value on the first
# line, and an id, which cannot be folded, must fit on one line with its header name.
_HEADER_NAME_RE = re.compile(r"[!-9;-~]{1,76}")
_MAX_ID = 900
# RFC 6838: type and subtype names are at most 127 characters long.
_CONTENT_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}")
# Every character str.splitlines() breaks at (VT, FF, FS, GS, RS, NEL, U+2028, U+2029 as well as CR and LF),
# and NUL: text-based mail code splits header lines at them, or silently drops them when folding.
_BREAKS = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _check_text(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessageError(
            f"{field}: {value[:60]!r} contains a lone surrogate, which is not text (it usually comes from "
            "bytes decoded with errors='surrogateescape'); decode the source properly"
        ) from None


def _check_line(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidMessageError(f"{field}: expected a string, got {type(value).__name__}")
    if _BREAKS.intersection(value):
        raise InvalidMessageError(
            f"{field}: {value[:60]!r} contains a line break or NUL, which could inject headers; "
            "put it on one line"
        )
    _check_text(value, field)
    return value


def _check_id(value: str, field: str, example: str) -> str:
    """The core of a Message-ID or Content-ID (``<>`` removed): printable ASCII without blanks or quotes."""
    core = value.strip().removeprefix("<").removesuffix(">")
    if (
        not core
        or len(core) > _MAX_ID
        or any(ch in core for ch in '<>"\\')
        or "=?" in core  # an RFC 2047 look-alike: readers that decode Content-ID would change it
        or not all("!" <= ch <= "~" for ch in core)
    ):
        raise InvalidMessageError(
            f"{field}: {value[:60]!r} is not a valid id; use at most {_MAX_ID} printable ASCII characters "
            f"without blanks, quotes, angle brackets or '=?', such as {example!r}"
        )
    return core


def _owned(name: str) -> bool:
    lowered = name.lower()
    return lowered in OWNED_HEADERS or lowered.startswith("content-")


def _to_bytes(value: object) -> bytes:
    if isinstance(value, str):
        raise InvalidMessageError(
            "Attachment.content: expected bytes, got str; encode it first, e.g. text.encode('utf-8')"
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidMessageError(f"Attachment.content: expected bytes, got {type(value).__name__}")


@attrs.frozen(repr=False)
class Attachment:
    """A file attached to a message, or an inline image the HTML refers to as ``cid:<content_id>``.

    Args:
        filename: The name the recipient sees; no line breaks.
        content: The file's bytes.
        content_type: The MIME type; guessed from the file name when not given.
        inline: Show it inside the HTML body rather than as an attachment.
        content_id: The id the HTML refers to (``<img src="cid:logo">``); generated for inline parts.

    Raises:
        InvalidMessageError: When a field is malformed; the message names the field.
    """

    filename: str = attrs.field()
    content: bytes = attrs.field(converter=_to_bytes)
    content_type: str = attrs.field(default=None)
    inline: bool = attrs.field(default=False, kw_only=True)
    content_id: str | None = attrs.field(default=None, kw_only=True)

    @filename.validator
    def _check_filename(self, attribute: object, value: object) -> None:
        name = _check_line(value, "Attachment.filename")
        if not name.strip():  # readers strip blanks, so a blank name arrives as no name at all
            raise InvalidMessageError("Attachment.filename: give the file a name")

    @content_type.validator
    def _check_content_type(self, attribute: object, value: object) -> None:
        if value is None:
            guessed = mimetypes.guess_type(self.filename, strict=False)[0]
            object.__setattr__(self, "content_type", guessed or "application/octet-stream")
            return
        _check_line(value, "Attachment.content_type")
        if not isinstance(value, str) or not _CONTENT_TYPE_RE.fullmatch(value):
            raise InvalidMessageError(
                f"Attachment.content_type: {value!r} is not a MIME type such as 'image/png'"
            )
        object.__setattr__(self, "content_type", value.lower())

    @content_id.validator
    def _check_content_id(self, attribute: object, value: object) -> None:
        if value is None:
            if self.inline:
                object.__setattr__(self, "content_id", f"{uuid.uuid4().hex}@sendchannel")
            return
        _check_line(value, "Attachment.content_id")
        assert isinstance(value, str)
        stripped = _check_id(value, "Attachment.content_id", "logo@example.com")
        object.__setattr__(self, "content_id", stripped)

    def __repr__(self) -> str:
        extra = f", inline=True, content_id={self.content_id!r}" if self.inline else ""
        return (
            f"Attachment({self.filename!r}, <{len(self.content)} bytes>, "
            f"{self.content_type!r}{extra})"
        )


def _address_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    raise InvalidMessageError(f"expected a sequence of address strings, got {type(value).__name__}")


def _headers(value: object) -> Mapping[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InvalidMessageError(
            f"headers: expected a mapping of header name to value, got {type(value).__name__}"
        )
    return types.MappingProxyType(dict(value))


def _attachments(value: object) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, Iterable):
        raise InvalidMessageError(f"attachments: expected a sequence, got {type(value).__name__}")
    items: tuple[object, ...] = tuple(value)
    for index, item in enumerate(items):
        if not isinstance(item, Attachment):
            raise InvalidMessageError(
                f"attachments[{index}]: expected an Attachment, got {type(item).__name__}"
            )
    return items  # type: ignore[return-value]


def _body(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessageError(f"expected the body as a string, got {type(value).__name__}")
    # SMTP carries CRLF line breaks and no bare CR: store the text as it will arrive.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _normalise_message_id(value: str) -> str:
    _check_line(value, "message_id")
    core = _check_id(value, "message_id", "<unique@example.com>")
    left, at, right = core.partition("@")
    if not (left and at and right):
        raise InvalidMessageError(
            f"message_id: {value!r} is not a Message-ID; use the form '<unique@example.com>' "
            "or leave it out to have one generated"
        )
    return f"<{core}>"


@attrs.frozen(repr=False)
class Message:
    """An e-mail message, validated when it is built.

    Addresses are strings, ``"bob@example.com"`` or ``"Bob Smith <bob@example.com>"``; they are stored
    normalised (internationalised domains in their IDNA form). Text and HTML bodies are stored with ``\\n``
    line breaks, as they arrive. Recipients in ``bcc`` go into the envelope only, never into the headers
    the other recipients see.

    Args:
        sender: The From address.
        to: Recipients (a sequence of addresses; a single string is taken as one address).
        cc: Carbon-copy recipients.
        bcc: Blind-copy recipients.
        reply_to: Reply-To addresses.
        subject: The subject line; may be non-ASCII.
        text: The plain-text body.
        html: The HTML body.
        headers: Extra headers by name. The library owns From, To, Cc, Bcc, Reply-To, Subject,
            Message-ID, Date, MIME-Version and ``Content-*``; set those through the fields instead.
        attachments: Files and inline images.
        message_id: The Message-ID; one is generated at the sender's domain when not given.

    Raises:
        InvalidMessageError: A malformed address, no recipient, a line break of any kind (CR, LF, VT, FF,
            NEL, U+2028...) or NUL in a header value, the subject or a file name, a lone surrogate in any
            text, a header name or id too long for a line, or a header the library owns set through
            ``headers``. The text names the field.
    """

    sender: str = attrs.field()
    to: tuple[str, ...] = attrs.field(default=(), converter=_address_tuple)
    cc: tuple[str, ...] = attrs.field(default=(), converter=_address_tuple, kw_only=True)
    bcc: tuple[str, ...] = attrs.field(default=(), converter=_address_tuple, kw_only=True)
    reply_to: tuple[str, ...] = attrs.field(default=(), converter=_address_tuple, kw_only=True)
    subject: str = attrs.field(default="", kw_only=True)
    text: str | None = attrs.field(default=None, converter=_body, kw_only=True)
    html: str | None = attrs.field(default=None, converter=_body, kw_only=True)
    headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_headers, kw_only=True, hash=False
    )
    attachments: tuple[Attachment, ...] = attrs.field(
        default=(), converter=_attachments, kw_only=True
    )
    message_id: str = attrs.field(default=None, kw_only=True)
    _parsed: dict[str, tuple[ParsedAddress, ...]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )
    _rendered: bytes | None = attrs.field(init=False, default=None, eq=False, hash=False)

    @_parsed.default
    def _validate(self) -> dict[str, tuple[ParsedAddress, ...]]:
        parsed: dict[str, tuple[ParsedAddress, ...]] = {}
        sender = parse_address(self.sender, "sender")
        parsed["sender"] = (sender,)
        object.__setattr__(self, "sender", sender.formatted())
        for field in ("to", "cc", "bcc", "reply_to"):
            addresses = tuple(
                parse_address(value, f"{field}[{index}]")
                for index, value in enumerate(getattr(self, field))
            )
            parsed[field] = addresses
            object.__setattr__(self, field, tuple(a.formatted() for a in addresses))
        if not (parsed["to"] or parsed["cc"] or parsed["bcc"]):
            raise InvalidMessageError(
                "Message has no recipient: give at least one address in to, cc or bcc"
            )
        _check_line(self.subject, "subject")
        for body in ("text", "html"):
            if getattr(self, body) is not None:
                _check_text(getattr(self, body), body)
        if self.text is None and self.html is None:
            # A message without a body carries an empty text part; say so rather than hold None.
            object.__setattr__(self, "text", "")
        for name, value in self.headers.items():
            if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
                raise InvalidMessageError(
                    f"headers: {name[:80]!r} is not a valid header name (1 to 76 printable ASCII "
                    "characters, no colon or space)"
                )
            if _owned(name):
                raise InvalidMessageError(
                    f"headers: {name!r} is set by sendchannel itself; use the Message field for it "
                    "(sender, to, cc, bcc, reply_to, subject, message_id, attachments) instead"
                )
            _check_line(value, f"headers[{name!r}]")
        if self.html is not None and any(a.inline for a in self.attachments):
            # Inline parts travel next to the HTML (multipart/related): keep them first, as they arrive.
            ordered = sorted(self.attachments, key=lambda a: not a.inline)
            object.__setattr__(self, "attachments", tuple(ordered))
        given = cast("str | None", self.message_id)
        if given is None:
            object.__setattr__(self, "message_id", f"<{uuid.uuid4().hex}@{sender.domain}>")
        else:
            object.__setattr__(self, "message_id", _normalise_message_id(given))
        return parsed

    # -- derived views ---------------------------------------------------------------------------

    @property
    def sender_address(self) -> str:
        """The sender's bare address, without a display name."""
        return self._parsed["sender"][0].addr_spec

    @property
    def recipients(self) -> tuple[str, ...]:
        """The bare addresses of to, cc and bcc, de-duplicated (case-insensitively), in order."""
        seen: dict[str, str] = {}
        for field in ("to", "cc", "bcc"):
            for address in self._parsed[field]:
                seen.setdefault(address.addr_spec.lower(), address.addr_spec)
        return tuple(seen.values())

    @property
    def needs_smtputf8(self) -> bool:
        """Whether an address has a non-ASCII local part, which only an SMTPUTF8 server accepts."""
        return any(a.needs_smtputf8 for group in self._parsed.values() for a in group)

    def parsed(self, field: str) -> tuple[ParsedAddress, ...]:
        """The parsed addresses of ``field`` (``"sender"``, ``"to"``, ``"cc"``, ``"bcc"``, ``"reply_to"``)."""
        return self._parsed[field]

    # -- MIME ------------------------------------------------------------------------------------

    def as_bytes(self) -> bytes:
        """The message as RFC 5322 bytes with CRLF line breaks, ready for SMTP DATA (no Bcc header).

        Rendered once; later calls return the same bytes, so size checks and sends agree.
        """
        rendered = self._rendered
        if rendered is None:
            from sendchannel._mime import render

            rendered = render(self)
            object.__setattr__(self, "_rendered", rendered)
        return rendered

    @property
    def size(self) -> int:
        """The size in bytes of :meth:`as_bytes`."""
        return len(self.as_bytes())

    def to_email_message(self) -> email.message.EmailMessage:
        """The message as a stdlib :class:`email.message.EmailMessage` (without a Bcc header)."""
        # Python's own messages use \n line breaks (policy.SMTP turns them into CRLF when serialised).
        source = self.as_bytes().replace(b"\r\n", b"\n")
        message = email.message_from_bytes(source, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        return message

    @classmethod
    def from_email_message(cls, message: email.message.Message) -> Message:
        """Build a Message from a stdlib message (its From, recipients, subject, bodies and parts).

        Headers the library owns are read into their fields; other headers are kept in ``headers``.

        Raises:
            InvalidMessageError: When the message has no From address, more than one, or no recipient.
        """
        from sendchannel._mime import parse

        fields = parse(message, owned=OWNED_HEADERS)
        fields["attachments"] = [Attachment(**attachment) for attachment in fields["attachments"]]
        return cls(**fields)

    def evolve(self, **changes: Any) -> Message:
        """A copy with some fields changed (the Message-ID is kept unless given)."""
        return attrs.evolve(self, **changes)

    def __repr__(self) -> str:
        return (
            f"Message(sender={self.sender!r}, recipients={len(self.recipients)}, "
            f"subject={self.subject!r}, message_id={self.message_id!r})"
        )
