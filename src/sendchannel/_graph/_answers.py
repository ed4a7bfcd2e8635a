"""What Microsoft Graph's answers to a send mean: the answer table, as data.

Each answer is read as its HTTP status, Graph's error code (``{"error": {"code", "message"}}``; plus the
pseudo-code ``Retry-After`` when that header came) and its message, in a situation: ``"send"`` (``sendMail``
or a draft's ``/send``) or ``"draft"`` (creating a draft, adding attachments, uploading). The first rule that
fits decides. The explanations are filled with ``{mailbox}`` (the mailbox the request acts for), ``{sender}``
and ``{reply}`` (status, code and Graph's message, secrets removed).
"""

from __future__ import annotations

from sendchannel._answers import Rule, table, when
from sendchannel.errors import (
    AuthenticationError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    ThrottledError,
    TransientError,
)

__all__ = ["DRAFT", "GRAPH_RULES", "SEND"]

SEND = "send"
DRAFT = "draft"

_ACCESS_DENIED = ("ErrorAccessDenied", "AccessDenied", "Authorization_RequestDenied")

#: Graph's answers, most specific first.
GRAPH_RULES: tuple[Rule, ...] = (
    when(
        ThrottledError,
        "Microsoft Graph allows an app 4 requests at once a mailbox, and {mailbox} had more ({reply}); "
        "another process or app is sending as this mailbox. Try again shortly, and share one Throttler "
        "between the senders.",
        text=r"MailboxConcurrency",
    ),
    when(
        QuotaExceededError,
        "{mailbox} has reached Exchange Online's sending limit ({reply}): 10,000 recipients in any 24 "
        "hours, 30 messages a minute. Sending resumes as the rolling window moves on; use a bulk provider "
        "for mail to many recipients.",
        reasons=("ErrorExceededMessageLimit", "SubmissionQuotaExceeded", "ErrorSubmissionQuotaExceeded"),
    ),
    when(
        QuotaExceededError,
        "{mailbox} has reached Exchange Online's sending limit ({reply}): 10,000 recipients in any 24 "
        "hours, 30 messages a minute. Sending resumes as the rolling window moves on; use a bulk provider "
        "for mail to many recipients.",
        text=r"SubmissionQuotaExceeded",
    ),
    when(
        ThrottledError,
        "Microsoft Graph asked to slow down the requests for {mailbox} ({reply}); it allows an app 10,000 "
        "requests in 10 minutes a mailbox. Wait as it asks, and share one Throttler between the senders.",
        code="429",
    ),
    when(
        ThrottledError,
        "Microsoft Graph is busy and asked to wait before sending as {mailbox} again ({reply}); nothing "
        "was sent.",
        code="503",
        reasons=("Retry-After",),
    ),
    when(
        SenderNotAllowedError,
        "Exchange Online does not let {mailbox} send as {sender} ({reply}); grant the mailbox the Send As "
        "permission for that address in the Exchange admin center, or send from {mailbox}.",
        reasons=("ErrorSendAsDenied", "SendAsDenied"),
    ),
    when(
        AuthenticationError,
        "Microsoft Graph refused the access token for {mailbox} ({reply}), also after a fresh token was "
        "fetched. The client secret may have expired or the user's sign-in been revoked: create a new "
        "secret, or have the user sign in again.",
        code="401",
    ),
    when(
        AuthenticationError,
        "Microsoft Graph refused to make a draft for {mailbox} ({reply}). Messages over 4 MB go through "
        "a draft and upload sessions, which need the Mail.ReadWrite permission besides Mail.Send: grant "
        "it to the app (an admin consents for an application; a delegated token needs "
        "https://graph.microsoft.com/Mail.ReadWrite in the provider's scopes and a new sign-in), or send "
        "smaller messages.",
        code="403",
        reasons=_ACCESS_DENIED,
        situations=(DRAFT,),
    ),
    when(
        AuthenticationError,
        "Microsoft Graph denied sending as {mailbox} ({reply}): the app has no consent for Mail.Send, or "
        "the mailbox is outside the app's RBAC for Applications scope. An admin grants Mail.Send "
        "(application or delegated) and consents in Entra ID, and adds the mailbox to the app's "
        "management scope in Exchange Online.",
        code="403",
        reasons=_ACCESS_DENIED,
    ),
    when(
        PermanentError,
        "The mailbox {mailbox} cannot be used through Microsoft Graph ({reply}): it is unlicensed, "
        "inactive, soft-deleted or hosted on-premises. Give it an Exchange Online licence, or send "
        "through SMTP (Office365Channel).",
        reasons=("MailboxNotEnabledForRESTAPI", "MailboxNotSupportedForRESTAPI"),
    ),
    when(
        PermanentError,
        "The mailbox {mailbox} is full ({reply}); Exchange keeps sent mail in Sent Items, so a full "
        "mailbox cannot send. Empty Sent Items (a retention policy keeps it small) or raise the quota.",
        reasons=("ErrorQuotaExceeded",),
    ),
    when(
        SenderNotAllowedError,
        "The tenant has no mailbox {mailbox} that Microsoft Graph can send from ({reply}); send from an "
        "existing mailbox of the tenant, or create this one.",
        code="404",
        reasons=("ErrorInvalidUser", "ResourceNotFound", "Request_ResourceNotFound"),
    ),
    when(
        MessageRejectedError,
        "Exchange Online refused the message as too large ({reply}); its default limit is 35 MB a "
        "message (an admin can raise it to 150 MB). Send large files as links.",
        reasons=("ErrorMessageSizeExceeded",),
    ),
    when(
        MessageRejectedError,
        "Microsoft Graph refused the request as larger than it accepts ({reply}); requests are capped at "
        "4 MB. Send large files as links.",
        code="413",
    ),
    when(
        MessageRejectedError,
        "Microsoft Graph refused the message ({reply}); check the recipients and the content.",
        code="400",
    ),
    when(
        TransientError,
        "Microsoft Graph failed for now ({reply}) while sending as {mailbox}; try again later.",
        code="5xx",
    ),
    when(
        PermanentError,
        "Microsoft Graph refused the request for {mailbox} ({reply}).",
        code="4xx",
    ),
)

__doc__ += "\n\nThe table, in order::\n\n" + table(GRAPH_RULES) + "\n"
