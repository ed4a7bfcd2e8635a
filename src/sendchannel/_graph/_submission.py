"""One send through Microsoft Graph: its requests, and how Graph's answers become errors.

A message whose request fits in 4 MB goes to ``sendMail``; a larger one through a draft: the MIME with
the attachments that fit, each attachment over 3 MB through an upload session (chunks of at most 4 MB in
multiples of 320 KiB, with ``Content-Range``, to a pre-authenticated URL that gets no bearer token), the
others as ``fileAttachment`` objects, then ``/send``. A draft left by a failure before ``/send`` is deleted.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sendchannel._answers import first
from sendchannel._graph._answers import DRAFT, GRAPH_RULES, SEND
from sendchannel._http import HttpAnswer
from sendchannel._message import Attachment, Message
from sendchannel._mime import render
from sendchannel.errors import MessageRejectedError, PermanentError, SendError

if TYPE_CHECKING:
    from sendchannel._graph._channel import Office365GraphChannel

__all__ = ["CHUNK", "MAX_REQUEST", "UPLOAD_ABOVE", "Submission", "submitted_mime"]

#: Graph refuses a request larger than this (413).
MAX_REQUEST = 4 * 1024 * 1024
#: Attachments larger than this go through an upload session (Graph refuses sessions for smaller ones).
UPLOAD_ABOVE = 3 * 1024 * 1024
#: Upload chunks: the largest multiple of 320 KiB within 4 MB (3.75 MiB).
CHUNK = (MAX_REQUEST // (320 * 1024)) * 320 * 1024


def _bcc_lines(message: Message) -> bytes:
    """The Bcc header of ``message`` as it renders (folded, RFC 2047), or nothing without Bcc."""
    if not message.bcc:
        return b""
    probe = render(Message(message.sender, bcc=message.bcc, text=""), bcc_header=True)
    lines = probe.split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line[:4].lower() == b"bcc:")
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\r\n".join(lines[start:end]) + b"\r\n"


def submitted_mime(message: Message) -> bytes:
    """What Graph gets: the message's own MIME with a Bcc header in front (Exchange removes it)."""
    return _bcc_lines(message) + message.as_bytes()


class Submission:
    """One send: its mailbox, the requests it makes, and how their answers become errors."""

    def __init__(self, channel: Office365GraphChannel, message: Message, mailbox: str) -> None:
        self.channel = channel
        self.message = message
        self.mailbox = mailbox
        self.root = channel._mailbox_root(mailbox)
        self.reference = f" (Message-ID {message.message_id})"
        #: Secrets of this send only (upload URLs), removed from its errors besides the channel's.
        self.secrets: list[str] = []

    def scrub(self, text: str, **options: Any) -> str:
        """``text`` without the channel's secrets nor this send's."""
        for secret in sorted((s for s in self.secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return self.channel._redact(text, **options)

    async def call(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str | None,
        *,
        situation: str,
        delivers: bool = False,
    ) -> HttpAnswer:
        """One Graph request (with the token, within the mailbox's 4 in flight); 2xx answers only."""
        channel = self.channel
        url = f"{self.root}/{path}"
        headers = {} if content_type is None else {"Content-Type": content_type}
        async with channel._gate(self.mailbox):
            answer = await self._request(method, url, body, headers, delivers)
            if answer.status == 401:
                invalidate = getattr(channel._token_provider, "invalidate", None)
                if callable(invalidate):
                    invalidate()
                answer = await self._request(method, url, body, headers, delivers)
        if 200 <= answer.status < 300:
            return answer
        raise self.error(answer, situation)

    async def _request(
        self, method: str, url: str, body: bytes, headers: dict[str, str], delivers: bool
    ) -> HttpAnswer:
        token = await self.channel._token()
        return await self.channel._client.request(
            method,
            url,
            body=body,
            headers={**headers, "Authorization": f"Bearer {token}"},
            delivers=delivers,
            reference=self.reference,
            unknown_advice="It is not retried, to avoid sending it twice: look in the mailbox's Sent Items "
            "before sending it again.",
        )

    def error(self, answer: HttpAnswer, situation: str) -> SendError:
        """The SendError for a Graph answer that is not a success, from the answer table."""
        channel = self.channel
        data = answer.json()
        detail = data.get("error") if isinstance(data, dict) else None
        code = ""
        text = ""
        if isinstance(detail, dict):
            code = str(detail.get("code") or "")
            text = str(detail.get("message") or "")
        elif answer.is_page:
            text = answer.page_words()
        else:
            text = answer.text
        reasons = {code} if code else set()
        if "retry-after" in answer.headers:
            reasons.add("Retry-After")
        said = (str(answer.status), code + (":" if code and text else ""), text)
        reply = self.scrub(" ".join(part for part in said if part))
        rule = first(GRAPH_RULES, answer.status, f"{code} {text}", reasons=reasons, situation=situation)
        error_class: type[SendError] = rule.error if rule is not None else PermanentError
        explain = rule.explain if rule is not None else "Microsoft Graph answered {reply} for {mailbox}."
        retry_after = answer.retry_after(time.time())
        return error_class(
            explain.format(mailbox=self.mailbox, sender=self.message.sender_address, reply=reply),
            code=answer.status,
            enhanced_code=code or None,
            retry_after=retry_after,
            channel=channel.name,
            reply=reply,
        )

    # -- messages over 4 MB ----------------------------------------------------------------------------

    async def through_draft(self) -> str:
        """Send the message through a draft and upload sessions; its internetMessageId."""
        message = self.message
        large = [a for a in message.attachments if len(a.content) > UPLOAD_ABOVE]
        kept = [a for a in message.attachments if len(a.content) <= UPLOAD_ABOVE]
        extra: list[Attachment] = []
        body = base64.b64encode(submitted_mime(message.evolve(attachments=kept)))
        while len(body) > MAX_REQUEST and kept:
            biggest = max(kept, key=lambda a: len(a.content))
            kept.remove(biggest)
            extra.append(biggest)
            body = base64.b64encode(submitted_mime(message.evolve(attachments=kept)))
        if len(body) > MAX_REQUEST:
            raise MessageRejectedError(
                f"The message without its attachments is {len(body):,} bytes as base64, more than the 4 MB "
                "Microsoft Graph takes in one request; shorten the text, or send the content as an "
                "attachment or a link.",
                channel=self.channel.name,
            )
        answer = await self.call("POST", "messages", body, "text/plain", situation=DRAFT)
        data = answer.json()
        draft_id = data.get("id") if isinstance(data, dict) else None
        internet_id = data.get("internetMessageId") if isinstance(data, dict) else None
        if not isinstance(draft_id, str) or not draft_id:
            raise PermanentError(
                f"Microsoft Graph made a draft for {self.mailbox} but its answer has no id "
                f"({answer.status}); nothing was sent.",
                channel=self.channel.name,
            )
        path = f"messages/{urllib.parse.quote(draft_id, safe='')}"
        try:
            for attachment in extra:
                await self._attach(path, attachment)
            for attachment in large:
                await self._upload(path, attachment)
        except Exception:  # not on cancellation: that must not wait for another request
            await self._discard(path)
            raise
        await self.call("POST", f"{path}/send", b"", None, situation=SEND, delivers=True)
        return str(internet_id) if isinstance(internet_id, str) and internet_id else self.message.message_id

    async def _attach(self, path: str, attachment: Attachment) -> None:
        item: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": attachment.filename,
            "contentType": attachment.content_type,
            "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
        }
        if attachment.inline:
            item["isInline"] = True
            item["contentId"] = attachment.content_id
        body = json.dumps(item).encode()
        if len(body) > MAX_REQUEST:
            await self._upload(path, attachment)
            return
        await self.call("POST", f"{path}/attachments", body, "application/json", situation=DRAFT)

    async def _upload(self, path: str, attachment: Attachment) -> None:
        content = attachment.content
        item: dict[str, Any] = {
            "attachmentType": "file",
            "name": attachment.filename,
            "size": len(content),
            "contentType": attachment.content_type,
        }
        if attachment.inline:
            item["isInline"] = True
            item["contentId"] = attachment.content_id
        body = json.dumps({"AttachmentItem": item}).encode()
        answer = await self.call(
            "POST", f"{path}/attachments/createUploadSession", body, "application/json", situation=DRAFT
        )
        data = answer.json()
        upload_url = data.get("uploadUrl") if isinstance(data, dict) else None
        if not isinstance(upload_url, str) or not upload_url.startswith(("https://", "http://")):
            raise PermanentError(
                f"Microsoft Graph opened an upload session for {attachment.filename!r} without an upload "
                "URL; nothing was sent.",
                channel=self.channel.name,
            )
        # The upload URL carries its own credential: keep it out of every message.
        self.secrets.append(upload_url)
        self.secrets.append(urllib.parse.urlsplit(upload_url).query)
        for start in range(0, len(content), CHUNK):
            chunk = content[start : start + CHUNK]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(content)}",
            }
            async with self.channel._gate(self.mailbox):
                try:
                    answer = await self.channel._client.request(
                        "PUT", upload_url, body=chunk, headers=headers
                    )
                except SendError as exc:
                    raise _scrubbed(exc, upload_url, self.scrub) from None
            if not 200 <= answer.status < 300:
                raise self.error(answer, DRAFT)

    async def _discard(self, path: str) -> None:
        """Delete the draft of a send that failed before ``/send`` (best effort: it is only a draft)."""
        try:
            async with self.channel._gate(self.mailbox):
                token = await self.channel._token()
                await self.channel._client.request(
                    "DELETE", f"{self.root}/{path}", headers={"Authorization": f"Bearer {token}"}
                )
        except (SendError, RuntimeError):
            pass


def _scrubbed(error: SendError, upload_url: str, redact: Callable[..., str]) -> SendError:
    """``error`` again with the upload URL (a credential) removed from its text."""
    # The URL may already be partly redacted (a token inside its query): replace it from its path on.
    without_query = upload_url.split("?", 1)[0]
    text = re.sub(re.escape(without_query) + r"(\?[^\s)]*)?", "the upload URL", str(error))
    text = redact(text, limit=None)
    return type(error)(
        text,
        code=error.code,
        enhanced_code=error.enhanced_code,
        retry_after=error.retry_after,
        channel=error.channel,
        reply=error.reply,
    )
