"""Classifying SMTP replies: one table-driven function for every stage of a session.

A reply is read by its code, its RFC 3463 enhanced code and its text, never by the exception class the
client library chose (aiosmtplib reports a 421 at MAIL FROM as a sender refusal). Each rule in a table
says which replies it covers and which error they become, with an explanation that names the cause and
the remedy. The first rule that matches wins; providers put their own table in front of
:data:`SMTP_RULES` (see ``_office365.py``).

Provider quirks that break the 4xx/5xx rule are mapped on purpose: Gmail's ``550 5.4.5`` daily quota and
Office 365's ``554 5.2.0 ...SubmissionQuotaExceededException`` are quotas, and Office 365's ``432 4.3.2`` is
a request to slow down.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import attrs

from sendchannel._answers import Rule, parse_codes
from sendchannel._refusals import split_reply, wait_named_in
from sendchannel.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    SendError,
    ThrottledError,
    TransientError,
)

__all__ = [
    "SMTP_RULES",
    "Credential",
    "Reply",
    "ReplyContext",
    "ReplyRule",
    "Stage",
    "classify_reply",
    "queue_id",
    "rule",
]

Credential = Literal["password", "token"]


class Stage(enum.Enum):
    """The step of an SMTP session a reply answers (the value names it in messages)."""

    HANDSHAKE = "the TLS handshake"
    GREETING = "the greeting"
    EHLO = "EHLO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"
    MESSAGE = "the end of DATA"
    QUIT = "QUIT"


def _one_line(text: str) -> str:
    # A reply's text ends up in error messages and log lines: a CR, LF or other line break in it could
    # forge a log line, and undecodable bytes (kept as lone surrogates) could not be written at all.
    return " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")


@attrs.frozen
class Reply:
    """One SMTP reply: its code and its text (lines joined by spaces, secrets already removed).

    The text is kept on one line, with blanks collapsed and undecodable characters replaced.
    """

    code: int
    text: str = attrs.field(converter=_one_line)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the text, when there is one."""
        return split_reply(str(self))[1]

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.text else str(self.code)


@attrs.frozen
class ReplyContext:
    """What an explanation may mention besides the reply.

    Args:
        server: ``host:port`` of the server.
        channel: The channel's name, for the error's ``channel``.
        username: The login (an address for Office 365), or None without authentication.
        sender: The envelope sender of the message being sent, if any.
        credential: ``"password"`` or ``"token"`` when the channel authenticates.
    """

    server: str
    channel: str | None = None
    username: str | None = None
    sender: str | None = None
    credential: Credential | None = None


_EnhancedPart = tuple[int, int] | None  # inclusive range; None matches anything


def _parse_enhanced(spec: str | None) -> tuple[_EnhancedPart, ...] | None:
    # "5.7.139", "4.7.*", "4.7.500-699", "5.*.*".
    if spec is None:
        return None
    parts = spec.split(".")
    if len(parts) != 3:
        raise ValueError(f"an enhanced code pattern has three parts, got {spec!r}")
    parsed: list[_EnhancedPart] = []
    for part in parts:
        if part == "*":
            parsed.append(None)
        elif "-" in part:
            low, high = part.split("-", 1)
            parsed.append((int(low), int(high)))
        else:
            parsed.append((int(part), int(part)))
    return tuple(parsed)


@attrs.frozen
class ReplyRule(Rule):
    """Which replies become which error: a row of the shared answer table (:class:`Rule`), with the
    SMTP criteria besides. Build rules with :func:`rule`.

    Args:
        enhanced: Enhanced-code pattern parts (None: any, or none at all).
        credential: Only when the channel authenticates with this kind of credential.
    """

    enhanced: tuple[_EnhancedPart, ...] | None = None
    credential: Credential | None = None

    def matches(
        self, reply: Reply, enhanced: tuple[int, int, int] | None, stage: Stage, context: ReplyContext
    ) -> bool:
        """Whether ``reply`` at ``stage`` falls under this rule."""
        if self.credential is not None and self.credential != context.credential:
            return False
        if self.enhanced is not None:
            if enhanced is None:
                return False
            for bounds, value in zip(self.enhanced, enhanced, strict=True):
                if bounds is not None and not bounds[0] <= value <= bounds[1]:
                    return False
        return self.fits(reply.code, reply.text, situation=stage)


def rule(
    error: type[SendError],
    explain: str,
    *,
    code: str | None = None,
    enhanced: str | None = None,
    text: str | None = None,
    stages: Collection[Stage] = (),
    credential: Credential | None = None,
) -> ReplyRule:
    """A :class:`ReplyRule` written compactly.

    Args:
        error: The error class.
        explain: The explanation template.
        code: ``"421"``, ``"4xx"``, ``"500-504"``, or several of them separated by commas.
        enhanced: ``"5.7.139"``, ``"4.7.*"`` or ``"4.7.500-699"``.
        text: A regular expression searched in the reply text, case-insensitively.
        stages: The stages it applies to (all when empty).
        credential: ``"password"`` or ``"token"``: only for channels that log in that way.
    """
    return ReplyRule(
        error=error,
        explain=explain,
        codes=parse_codes(code),
        enhanced=_parse_enhanced(enhanced),
        text=None if text is None else re.compile(text, re.IGNORECASE),
        situations=frozenset(stages),
        credential=credential,
    )


_S = Stage

_SENDER_AT_RCPT = (
    "{server} refused the sender {sender} in its reply to RCPT TO ({reply}); the server checks the "
    "sender once the recipients are given. Send from an address this server or login may use, or ask "
    "the server's owner to allow it."
)

#: The rules for any SMTP server (RFC 5321 and RFC 3463), with the Gmail and Office 365 replies that break
#: the 4xx/5xx rule. Order matters: the first match wins.
SMTP_RULES: tuple[ReplyRule, ...] = (
    # -- quirks: permanent-looking quotas and 4xx replies with a meaning of their own -----------------
    rule(
        QuotaExceededError,
        "{server} says the daily sending limit is spent ({reply}). Gmail counts it over a rolling 24 "
        "hours: send again later, or spread the mail over more accounts or a bulk provider.",
        code="5xx",
        enhanced="5.4.5",
        text=r"daily|quota|limit",
    ),
    rule(
        QuotaExceededError,
        "{server} says the mailbox has used its recipient quota ({reply}); Office 365 allows 10,000 "
        "recipients in any 24 hours. Send again once the window has moved on, or use a bulk provider.",
        code="5xx",
        enhanced="5.2.0",
        text=r"SubmissionQuotaExceeded",
    ),
    rule(
        ThrottledError,
        "{server} refused another concurrent connection for this mailbox ({reply}); Office 365 allows "
        "3 at a time. Another process may be sending as the same mailbox: lower pool_size or share a "
        "Throttler, and try again shortly.",
        code="432",
        enhanced="4.3.2",
    ),
    rule(
        PermanentError,
        "{server} refused the TLS version ({reply}); it needs TLS 1.2 or later. Use a tls_context "
        "whose minimum_version is ssl.TLSVersion.TLSv1_2.",
        code="421",
        text=r"TLS 1\.[01]|TLS version",
    ),
    # -- authentication --------------------------------------------------------------------------------
    rule(
        ThrottledError,
        "{server} could not check the credentials of {username} right now ({reply}); try again later.",
        code="4xx",
        enhanced="4.7.*",
        stages=(_S.AUTH,),
    ),
    rule(
        AuthenticationError,
        "{server} wants an app password or OAuth instead of the account password of {username} "
        "({reply}). For Gmail create an app password, or use token_provider with OAuth.",
        enhanced="5.7.9",
        text=r"application-specific password|app password",
    ),
    rule(
        AuthenticationError,
        "{server} refused the authentication mechanism as too weak ({reply}); connect with TLS "
        "(tls='starttls' or 'implicit') or use token_provider.",
        enhanced="5.7.9",
    ),
    rule(
        AuthenticationError,
        "{server} requires encryption before authentication ({reply}); use tls='starttls' or "
        "tls='implicit' instead of allow_insecure_auth.",
        code="538",
    ),
    rule(
        AuthenticationError,
        "{server} requires encryption before authentication ({reply}); use tls='starttls' or "
        "tls='implicit' instead of allow_insecure_auth.",
        enhanced="5.7.11",
    ),
    rule(
        AuthenticationError,
        "{server} rejected the access token for {username} ({reply}), also after a fresh token was "
        "asked for. Check that the token grants SMTP access to this mailbox and has not been revoked.",
        code="5xx",
        stages=(_S.AUTH,),
        credential="token",
    ),
    rule(
        AuthenticationError,
        "{server} rejected the username and password for {username} ({reply}). Check them; if the "
        "password changed recently, update it.",
        code="5xx",
        stages=(_S.AUTH,),
    ),
    rule(
        PermanentError,
        "{server} requires STARTTLS before {stage} ({reply}); use tls='starttls'.",
        code="530",
        text=r"STARTTLS",
    ),
    rule(
        AuthenticationError,
        "{server} requires authentication before {stage} ({reply}); give the channel a username and "
        "password, or a token_provider.",
        code="530",
    ),
    # -- the server is going away, or asks to slow down ------------------------------------------------
    rule(
        ThrottledError,
        "{server} closed the connection at {stage} ({reply}); it is busy or limiting this client. "
        "Try again later.",
        code="421",
    ),
    rule(
        ThrottledError,
        "{server} asked to slow down at {stage} ({reply}); try again later.",
        code="4xx",
        enhanced="4.7.*",
    ),
    rule(
        ThrottledError,
        "{server} refused more recipients for now ({reply}); send to fewer recipients at a time.",
        code="452",
        text=r"too many recipients",
    ),
    rule(
        ThrottledError,
        "{server} refused more recipients for now ({reply}); send to fewer recipients at a time.",
        code="4xx",
        enhanced="4.5.3",
    ),
    # -- replies that do not answer the command at all -------------------------------------------------
    rule(
        DeliveryUnknownError,
        "{server} answered the end of DATA with {reply}, which neither confirms nor refuses the "
        "message; it may have been delivered. Check before sending it again.",
        code="-1-399",
        stages=(_S.MESSAGE,),
    ),
    rule(
        ConnectionLostError,
        "{server} answered {stage} with {reply}, which does not fit the command; the connection was "
        "closed and nothing was sent. Try again; if it persists, the server is not speaking SMTP "
        "properly (check the host, the port and the tls setting).",
        code="-1-399",
    ),
    rule(
        TransientError,
        "{server} refused {stage} for now ({reply}); this is temporary, so try again later.",
        code="4xx",
    ),
    # -- permanent refusals, by stage ----------------------------------------------------------------------
    rule(
        PermanentError,
        "{server} refused the connection ({reply}); it does not accept mail from this client. Check "
        "the host and port, or ask the server's owner.",
        stages=(_S.GREETING,),
    ),
    rule(
        PermanentError,
        "{server} refused EHLO ({reply}); set local_hostname to this machine's fully qualified name.",
        stages=(_S.EHLO,),
    ),
    rule(
        PermanentError,
        "{server} refused STARTTLS ({reply}), so nothing was sent. If the port speaks TLS from the "
        "start (usually 465), use tls='implicit'.",
        stages=(_S.STARTTLS,),
    ),
    rule(
        MessageRejectedError,
        "{server} refused the message as too large ({reply}); send big files as links instead of "
        "attachments.",
        code="552",
        stages=(_S.MAIL, _S.DATA, _S.MESSAGE),
    ),
    rule(
        MessageRejectedError,
        "{server} refused the message as too large ({reply}); send big files as links instead of "
        "attachments.",
        enhanced="5.3.4",
    ),
    rule(
        MessageRejectedError,
        "{server} refused the message as too large ({reply}); send big files as links instead of "
        "attachments.",
        enhanced="5.2.3",
    ),
    rule(
        MessageRejectedError,
        "{server} did not understand MAIL FROM for {sender} ({reply}); the server may not support an "
        "extension the message needs.",
        code="500-504",
        stages=(_S.MAIL,),
    ),
    rule(
        MessageRejectedError,
        "{server} did not understand MAIL FROM for {sender} ({reply}); the server may not support an "
        "extension the message needs.",
        code="5xx",
        enhanced="5.5.*",
        stages=(_S.MAIL,),
    ),
    rule(
        SenderNotAllowedError,
        "{server} refused the sender {sender} ({reply}); the credential may not send as this address. "
        "Send from an address the account owns, or ask the server's owner to allow it.",
        code="5xx",
        stages=(_S.MAIL,),
    ),
    # A server that delays its rejections (Postfix's default, smtpd_delay_reject=yes) refuses the sender
    # in the reply to RCPT TO; the recipients are not at fault.
    rule(
        SenderNotAllowedError,
        _SENDER_AT_RCPT,
        code="5xx",
        enhanced="5.1.7-8",
        stages=(_S.RCPT,),
    ),
    rule(
        SenderNotAllowedError,
        _SENDER_AT_RCPT,
        code="5xx",
        text=r"Sender address rejected",
        stages=(_S.RCPT,),
    ),
    rule(
        MessageRejectedError,
        "{server} refused the message by policy ({reply}); it may look like spam or break a rule of "
        "the server. Change the message, or ask the server's owner.",
        code="5xx",
        enhanced="5.7.*",
        stages=(_S.DATA, _S.MESSAGE),
    ),
    rule(
        MessageRejectedError,
        "{server} refused the message at {stage} ({reply}); sending it again will fail the same way.",
        code="5xx",
        stages=(_S.DATA, _S.MESSAGE),
    ),
    rule(
        PermanentError,
        "{server} refused {stage} ({reply}); sending again will fail the same way.",
        code="5xx",
    ),
)

_FALLBACK = rule(
    TransientError,
    "{server} answered {stage} with {reply}, which was not expected; try again later.",
)

_ENHANCED_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
def classify_reply(
    reply: Reply,
    stage: Stage,
    context: ReplyContext,
    rules: Sequence[ReplyRule] = SMTP_RULES,
    *,
    rejected: Mapping[str, str] | None = None,
) -> SendError:
    """The error for an SMTP reply that did not accept what was asked, at ``stage``.

    Args:
        reply: The reply, with secrets already removed from its text.
        stage: What the reply answers.
        context: The server, the login and the sender, for the explanation.
        rules: The table to use; the first rule that matches decides.
        rejected: The recipients refused, with the reply for each, for the error's ``rejected``.

    Returns:
        The error to raise, carrying the code, the enhanced code, the reply and any wait the server
        asked for.
    """
    enhanced_text = reply.enhanced
    enhanced: tuple[int, int, int] | None = None
    if enhanced_text is not None:
        match = _ENHANCED_RE.fullmatch(enhanced_text)
        # RFC 3463: the class of the enhanced code repeats the first digit of the reply code; one that
        # does not is not trusted.
        if match is not None and str(reply.code).startswith(match[1]):
            enhanced = (int(match[1]), int(match[2]), int(match[3]))
    chosen = next(
        (candidate for candidate in rules if candidate.matches(reply, enhanced, stage, context)),
        _FALLBACK,
    )
    message = chosen.explain.format(
        server=context.server,
        reply=str(reply),
        username=context.username or "the user",
        sender=context.sender or "the sender",
        stage=stage.value,
    )
    return chosen.error(
        message,
        code=reply.code if reply.code > 0 else None,
        enhanced_code=enhanced_text,
        retry_after=wait_named_in(reply.text),
        channel=context.channel,
        rejected=rejected,
        reply=str(reply),
    )


_QUEUE_ID_PATTERNS = (
    re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE),  # Postfix, aiosmtpd sinks
    re.compile(r"\bid=([A-Za-z0-9._-]+)", re.IGNORECASE),  # Exim
    re.compile(r"\bOK\s+\d+\s+([A-Za-z0-9._-]+)\s+-\s+gsmtp"),  # Gmail
    re.compile(r"InternalId=(\d+)"),  # Exchange Online
    re.compile(r"\bqueued\s+([A-Za-z0-9]{6,})", re.IGNORECASE),
)


def queue_id(text: str) -> str | None:
    """The server's queue id in the reply to the end of DATA (``250 2.0.0 Ok: queued as 4Xy...``)."""
    for pattern in _QUEUE_ID_PATTERNS:
        match = pattern.search(text)
        if match is not None:
            return match[1]
    return None
