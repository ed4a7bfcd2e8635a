"""Rendering a Message to MIME bytes, and reading a stdlib message back into Message fields.

Rendering is written by hand rather than through :class:`email.message.EmailMessage`: building and
serialising an EmailMessage costs most of the time of a send (about 0.7 ms a message), while the
structure sendchannel produces is small and fixed. The output is conventional MIME:

* header values that are plain ASCII go as they are (folded below 78 columns where possible); anything
  else uses RFC 2047 encoded words (RFC 2231 for attachment file names), so 7-bit servers accept it;
* bodies that are ASCII with short lines go as 7bit, others as base64 over UTF-8, which keeps every
  character and line break exactly;
* the structure is ``multipart/mixed`` ( ``multipart/alternative`` (text, ``multipart/related`` (html,
  inline parts...)), attachments...), each level present only when needed.

Only an address with a non-ASCII local part is written as raw UTF-8; such a message needs SMTPUTF8.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import email.utils
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from email.header import Header, decode_header, make_header
from typing import TYPE_CHECKING, Any

from sendchannel._address import ParsedAddress
from sendchannel.errors import InvalidMessageError

if TYPE_CHECKING:
    from sendchannel._message import Attachment, Message

__all__ = ["parse", "render"]

CRLF = "\r\n"
_PLAIN_WORDS = re.compile(r"[!-~]{1,70}(?: [!-~]{1,70})*")
# A display name made of RFC 5322 atoms separated by single spaces can go unquoted.
# Quoted, with "From: " before it and the address after it, such a name stays within 998 characters.
_LONGEST_PLAIN_NAME = 300
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


# -- headers -------------------------------------------------------------------------------------


def _plain(value: str) -> bool:
    """Whether ``value`` can be written as it is and read back unchanged."""
    return not value or (_PLAIN_WORDS.fullmatch(value) is not None and "=?" not in value)


def _fold_words(name: str, value: str) -> str:
    # Fold at spaces; unfolding (removing CRLF) gives the value back exactly.
    line = f"{name}: "
    out: list[str] = []
    for index, word in enumerate(value.split(" ")):
        piece = word if index == 0 else " " + word
        if index and len(line) + len(piece) > 78:
            out.append(line)
            line = piece
        else:
            line += piece
    out.append(line)
    return CRLF.join(out)


def _text_header(name: str, value: str) -> str:
    if _plain(value):
        return _fold_words(name, value)
    # With a long name the stdlib would fold right after "Name:", and readers keep the blank of that fold
    # as a leading space of the value: leave room for a first encoded word on the name's line.
    width = max(76, len(name) + 2 + 30)
    encoded = Header(value, "utf-8", header_name=name, maxlinelen=width).encode(linesep=CRLF)
    return f"{name}: {encoded}"


def _format_address(address: ParsedAddress) -> str:
    name = address.display_name
    if not name:
        return address.addr_spec
    # An ASCII name goes as it is unless a reader would decode it ("=?...?=" looks like an encoded word)
    # or it would not fit on a line; those are encoded like non-ASCII names, which folds them.
    if name.isascii() and "=?" not in name and len(name) <= _LONGEST_PLAIN_NAME:
        if _ATOMS.fullmatch(name):
            return f"{name} <{address.addr_spec}>"
        return f'"{email.utils.quote(name)}" <{address.addr_spec}>'

    encoded = Header(name, "utf-8").encode(linesep=CRLF + " ")
    return f"{encoded} <{address.addr_spec}>"


def _address_header(name: str, addresses: Iterable[ParsedAddress]) -> str:
    items = [_format_address(a) for a in addresses]
    single = f"{name}: {', '.join(items)}"
    if len(single) <= 78:
        return single
    return f"{name}: " + ("," + CRLF + " ").join(items)


# -- bodies --------------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _seven_bit(text: str) -> bool:
    # ASCII without control characters and with lines short enough for SMTP (998 octets).
    return (
        text.isascii()
        and _CONTROL.search(text) is None
        and (len(text) <= 900 or max(map(len, text.split("\n"))) <= 900)
    )


def _base64_lines(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF).removesuffix(CRLF)


def _text_part(text: str, subtype: str, *, alone: bool = False) -> list[str]:
    # A part that ends the message gets a final CRLF from SMTP, so a 7bit body there could not be told
    # from one with a trailing newline: base64 keeps such a body exact.
    if _seven_bit(text) and not (alone and not text.endswith("\n")):
        body = text.replace("\n", CRLF)
        cte = "7bit"
        charset = "us-ascii"
    else:
        body = _base64_lines(text.encode("utf-8"))
        cte = "base64"
        charset = "utf-8"
    return [
        f'Content-Type: text/{subtype}; charset="{charset}"',
        f"Content-Transfer-Encoding: {cte}",
        "",
        body,
    ]


_PARAM_CHUNK = 60


def _param(name: str, value: str) -> str:
    # "=?" goes percent-encoded: readers decode RFC 2047 look-alikes even inside quoted parameters; and
    # they take "<...>" around a quoted value off, as if it were an address.
    angled = value.startswith("<") and value.endswith(">")
    if value.isascii() and all(32 <= ord(ch) < 127 for ch in value) and "=?" not in value and not angled:
        simple = f'{name}="{email.utils.quote(value)}"'
        if len(simple) <= _PARAM_CHUNK + 10:
            return simple
    encoded = email.utils.encode_rfc2231(value, "utf-8")
    if len(encoded) <= _PARAM_CHUNK:
        return f"{name}*={encoded}"
    # Too long for one line: RFC 2231 continuations (name*0*=utf-8''..., name*1*=...), one a line, split
    # between characters because readers decode each section on its own.
    chunks = [""]
    for character in value:
        piece = urllib.parse.quote(character, safe="", encoding="utf-8")
        if len(chunks[-1]) + len(piece) > _PARAM_CHUNK:
            chunks.append("")
        chunks[-1] += piece
    sections = [f"{name}*{index}*={chunk}" for index, chunk in enumerate(chunks)]
    sections[0] = f"{name}*0*=utf-8''{chunks[0]}"
    return (";" + CRLF + " ").join(sections)


def _attachment_part(attachment: Attachment, inline: bool) -> list[str]:
    disposition = "inline" if inline else "attachment"
    lines = [
        f"Content-Type: {attachment.content_type}; {_param('name', attachment.filename)}",
        f"Content-Disposition: {disposition}; {_param('filename', attachment.filename)}",
        "Content-Transfer-Encoding: base64",
    ]
    if attachment.content_id is not None:
        lines.append(f"Content-ID: <{attachment.content_id}>")
    lines.append("")
    lines.append(_base64_lines(attachment.content))
    return lines


def _multipart(subtype: str, parts: list[list[str]]) -> list[str]:
    boundary = f"=_sc_{uuid.uuid4().hex}"
    lines = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"', ""]
    for part in parts:
        lines.append(f"--{boundary}")
        lines.extend(part)
    lines.append(f"--{boundary}--")
    lines.append("")
    return lines


def _content(message: Message) -> list[str]:
    attachments = message.attachments
    related = [a for a in attachments if a.inline] if message.html is not None else []
    mixed = [a for a in attachments if a not in related] if related else list(attachments)
    if not mixed and not related and (message.text is None or message.html is None):
        only = message.html if message.html is not None else (message.text or "")
        subtype = "html" if message.html is not None else "plain"
        return _text_part(only, subtype, alone=True)
    alternatives: list[list[str]] = []
    if message.text is not None or message.html is None:
        alternatives.append(_text_part(message.text or "", "plain"))
    if message.html is not None:
        html = _text_part(message.html, "html")
        if related:
            html = _multipart("related", [html, *(_attachment_part(a, True) for a in related)])
        alternatives.append(html)
    body = alternatives[0] if len(alternatives) == 1 else _multipart("alternative", alternatives)
    if mixed:
        body = _multipart("mixed", [body, *(_attachment_part(a, a.inline) for a in mixed)])
    return body


_date_cache: tuple[int, str] = (0, "")


def _date_header() -> str:
    # Formatting the date is a quarter of the cost of rendering a small message; it changes once a second.
    global _date_cache
    second = int(time.time())
    cached = _date_cache
    if cached[0] != second:
        cached = _date_cache = (second, f"Date: {email.utils.formatdate(second, usegmt=True)}")
    return cached[1]


def render(message: Message, *, bcc_header: bool = False) -> bytes:
    """The message as RFC 5322 bytes with CRLF line breaks.

    Args:
        message: What to render.
        bcc_header: Add a Bcc header (for APIs that take the recipients from the headers, like Gmail's,
            which removes it before delivery). SMTP never gets one.
    """
    lines = [
        _address_header("From", message.parsed("sender")),
    ]
    if message.to:
        lines.append(_address_header("To", message.parsed("to")))
    if message.cc:
        lines.append(_address_header("Cc", message.parsed("cc")))
    if bcc_header and message.bcc:
        lines.append(_address_header("Bcc", message.parsed("bcc")))
    if message.reply_to:
        lines.append(_address_header("Reply-To", message.parsed("reply_to")))
    lines.append(_text_header("Subject", message.subject))
    lines.append(f"Message-ID: {message.message_id}")
    lines.append(_date_header())
    for name, value in message.headers.items():
        lines.append(_text_header(name, value))
    lines.append("MIME-Version: 1.0")
    lines.extend(_content(message))
    text = CRLF.join(lines)
    if not text.endswith(CRLF):
        text += CRLF
    # Only an address with a non-ASCII local part puts raw UTF-8 into the headers (SMTPUTF8).
    return text.encode("utf-8")


# -- parsing -------------------------------------------------------------------------------------


def _raw_text(value: str) -> str:
    # Headers parsed from bytes keep undecodable bytes as surrogates: raw UTF-8 (SMTPUTF8) headers.
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def _addresses(message: email.message.Message, name: str) -> list[str]:
    # Read the raw header rather than the stdlib's parsed one: its phrase parser puts a space between
    # adjacent encoded words, which RFC 2047 says to drop, so long non-ASCII names would change.
    wanted = name.lower()
    raws = [_raw_text(str(v)) for k, v in message.raw_items() if k.lower() == wanted]
    out: list[str] = []
    for display_name, addr_spec in email.utils.getaddresses(raws):
        if not addr_spec:
            continue
        if "=?" in display_name:
            display_name = str(make_header(decode_header(display_name)))
        if display_name:
            out.append(f'"{email.utils.quote(display_name)}" <{addr_spec}>')
        else:
            out.append(addr_spec)
    return out


def _filename(part: email.message.EmailMessage) -> str | None:
    # get_filename() strips blanks and takes "<...>" off a name as if it were an address; the parsed
    # header's parameters keep the name exactly.
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        params = getattr(part.get(header), "params", None)
        if params and params.get(param):
            return str(params[param])
    return part.get_filename()


def _decoded_text(part: email.message.EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def parse(source: email.message.Message, *, owned: frozenset[str]) -> dict[str, Any]:
    """The keyword arguments of Message for a stdlib message; ``attachments`` are Attachment's keyword
    arguments, and headers named in ``owned`` (lower-case) are left out of ``headers``.

    It builds no Message or Attachment itself, so this module never imports ``_message`` (which imports
    this one).
    """

    if not isinstance(source, email.message.EmailMessage) or source.policy is not email.policy.default:
        source = email.message_from_bytes(source.as_bytes(), policy=email.policy.default)
    assert isinstance(source, email.message.EmailMessage)
    senders = _addresses(source, "From")
    if len(senders) != 1:
        raise InvalidMessageError(
            f"from_email_message: the message has {len(senders)} From addresses; exactly one is needed"
        )
    text = html = None
    attachments = []
    for part in source.walk():
        assert isinstance(part, email.message.EmailMessage)
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        content_type = part.get_content_type()
        filename = _filename(part)
        if disposition != "attachment" and filename is None:
            if content_type == "text/plain" and text is None:
                text = _decoded_text(part)
                continue
            if content_type == "text/html" and html is None:
                html = _decoded_text(part)
                continue
        payload = part.get_payload(decode=True)
        content_id = part.get("Content-ID")
        attachments.append(
            {
                "filename": filename or "attachment",
                "content": payload if isinstance(payload, bytes) else b"",
                "content_type": content_type,
                "inline": disposition == "inline" or (content_id is not None and disposition is None),
                "content_id": str(content_id) if content_id else None,
            }
        )
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in source.items():
        lowered = name.lower()
        if lowered in owned or lowered.startswith("content-") or lowered in seen:
            continue
        seen.add(lowered)
        headers[name] = str(value)
    subject = source.get("Subject")
    message_id = source.get("Message-ID")
    return {
        "sender": senders[0],
        "to": _addresses(source, "To"),
        "cc": _addresses(source, "Cc"),
        "bcc": _addresses(source, "Bcc"),
        "reply_to": _addresses(source, "Reply-To"),
        "subject": "" if subject is None else str(subject),
        "text": text,
        "html": html,
        "headers": headers,
        "attachments": attachments,
        "message_id": str(message_id).strip() if message_id else None,
    }
