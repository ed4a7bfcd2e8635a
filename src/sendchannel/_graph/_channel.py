"""Office365GraphChannel: send as Office 365 mailboxes through Microsoft Graph ``sendMail``.

For tenants where SMTP AUTH is off (Microsoft turns Basic auth for SMTP off by default from the end of
December 2026). Each message goes as its own MIME, base64 with ``Content-Type: text/plain``, so every header
and attachment arrives as rendered; Exchange takes the recipients from the To, Cc and Bcc headers, so the
submitted copy carries a Bcc header (Exchange removes it from what recipients get).

A request is capped at 4 MB. A larger message goes through a draft: ``POST .../messages`` with the MIME
(large attachments left out), each attachment over 3 MB through an upload session (chunks of at most 4 MB,
multiples of 320 KiB, with ``Content-Range``; the pre-authenticated upload URL gets no bearer token), any
other attachment that did not fit as a ``fileAttachment``, then ``POST .../messages/{id}/send``. That path
needs ``Mail.ReadWrite``, and reports the draft's ``internetMessageId`` as ``provider_id``.

Graph lets an app have 4 requests in flight a mailbox (``MailboxConcurrency``); the channel keeps to that.
A 401 gets one fresh token (``invalidate()`` on the token provider, if it has one) and one more try.
The answers are mapped by the table in :mod:`sendchannel._graph._answers`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar

from sendchannel._address import configured_address, configured_domains
from sendchannel._channel import BaseChannel
from sendchannel._entra import ClientCredentialsTokenProvider, DeviceCodeTokenProvider
from sendchannel._graph import _tokens
from sendchannel._graph._answers import SEND
from sendchannel._graph._submission import MAX_REQUEST, Submission, submitted_mime
from sendchannel._http import HttpClient, Redactor, check_base_url
from sendchannel._limits import Limits, Rate
from sendchannel._message import Message
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    SendError,
)

__all__ = ["DEFAULT_BASE_URL", "IN_FLIGHT", "Office365GraphChannel"]

#: Microsoft Graph v1.0, worldwide.
DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
#: Requests an app may have in flight against one mailbox.
IN_FLIGHT = 4
#: Exchange Online's default largest message, 35 MB.
MAX_MESSAGE_BYTES = 35 * 1024 * 1024

TokenProvider = Callable[[], Awaitable[str]]


class _RecentTokens(Redactor):
    """Removes the last few access tokens (and the channel's other secrets) from texts.

    Tokens are renewed about hourly for as long as a channel lives, so only the recent ones are kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._recent: collections.deque[str] = collections.deque(maxlen=8)

    def add(self, *secrets: str | None) -> None:
        """Remove these too from now on, forgetting the oldest beyond eight."""
        for secret in secrets:
            if secret and secret not in self._recent:
                self._recent.append(secret)

    def __call__(self, text: str, **options: Any) -> str:
        for secret in sorted(self._recent, key=len, reverse=True):
            text = text.replace(secret, "***")
        return super().__call__(text, **options)


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


class Office365GraphChannel(BaseChannel):
    """Send as Office 365 mailboxes through Microsoft Graph ``sendMail`` (for tenants without SMTP AUTH).

    Exactly one of ``address`` and ``domains``:

    - ``address``: a **delegated** token (a user signed in, scope ``Mail.Send``). The channel sends with
      ``POST {base_url}/me/sendMail``; its scope is that mailbox and ``send_as``, per-address, so the
      credential must not be shared.
    - ``domains``: an **application** token (client credentials, application permission ``Mail.Send``).
      The app may send as any mailbox of the tenant (an admin narrows that with RBAC for Applications),
      so the scope is per-domain and shareable; each message goes as its sender's mailbox with
      ``POST {base_url}/users/{sender}/sendMail``.

    202 Accepted means Exchange took the message for delivery: recipients refused later come back as
    bounces, not here. ``SendResult.accepted`` is every recipient; ``provider_id`` is None for ``sendMail``
    and the ``internetMessageId`` of the draft for messages over 4 MB (which need ``Mail.ReadWrite``).

    Args:
        address: The signed-in user's mailbox (delegated).
        token_provider: An async callable returning an access token for Graph; see
            :meth:`token_from_client_credentials` and :meth:`token_from_device_code`. If it has an
            ``invalidate()`` method, it is called when Graph refuses a token, before one more try.
        domains: The tenant's domains the app sends from (application); ``*.contoso.com`` covers subdomains.
        send_as: Other addresses the delegated mailbox has Send As permission for.
        limits: Limits instead of :attr:`default_limits` (tenants may allow 1-1000 recipients a message
            and up to 150 MB).
        base_url: Graph's root with its version (national clouds, tests); plain http only for this
            machine.
        timeout: Seconds for each network wait.
        tls_context: An ``ssl.SSLContext`` to verify Graph with (default: the system's trust store).
        name: The channel's name (``"msgraph"``).

    Raises:
        ConfigurationError: Both or neither of address and domains, an address or domain that is not one,
            no token_provider, a bad base_url or timeout.
    """

    name = "msgraph"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.PER_ADDRESS
    provider_name: ClassVar[str | None] = "Office 365"
    default_limits: ClassVar[Limits] = Limits(
        rates=(Rate.per_minute(30), Rate.per_day(10_000, "recipients")),
        max_recipients_per_message=500,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_connections=IN_FLIGHT,
    )

    def __init__(
        self,
        address: str | None = None,
        *,
        token_provider: TokenProvider,
        domains: Iterable[str] | str = (),
        send_as: Iterable[str] | str = (),
        limits: Limits | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        wanted = configured_domains(
            domains,
            covers="an application token covers the tenant's mailboxes by domain; for one user's mailbox "
            "pass address= with a delegated token",
        )
        if isinstance(send_as, str):
            send_as = (send_as,)
        aliases = tuple(configured_address(alias, "send_as") for alias in send_as)
        if (address is None) == (not wanted):
            raise ConfigurationError(
                "Office365GraphChannel needs exactly one of address= (a delegated token: the signed-in "
                "user's mailbox) or domains= (an application token with Mail.Send: the tenant's domains "
                "it sends from)"
                + (", not both" if address is not None else "")
            )
        if wanted and aliases:
            raise ConfigurationError(
                "send_as= is for a delegated channel (address=); an application channel sends as any "
                "mailbox at its domains"
            )
        if not callable(token_provider):
            raise ConfigurationError(
                "token_provider must be an async callable returning an access token for Microsoft Graph; "
                "build one with Office365GraphChannel.token_from_client_credentials(...) or "
                "token_from_device_code(...)"
            )
        self.address = None if address is None else configured_address(address, "address")
        self.domains = wanted
        self.send_as = aliases
        if self.address is not None:
            self.scope = CredentialScope.per_address(self.address, *aliases, provider=self.provider_name)
        else:
            self.scope = CredentialScope.per_domain(*wanted, provider=self.provider_name)
        self.limits = limits if limits is not None else self.default_limits
        if name is not None:
            self.name = name
        self.base_url = check_base_url(base_url, example=DEFAULT_BASE_URL, exposes="the access token")
        self._token_provider = token_provider
        self._redact = _RecentTokens()
        self._client = HttpClient(
            provider="Microsoft Graph",
            owner="Office365GraphChannel",
            timeout=timeout,
            tls_context=tls_context,
            redact=self._redact,
            max_connections=IN_FLIGHT if self.address is not None else None,
            remedy="pass tls_context=ssl.create_default_context(cafile=...), or set SSL_CERT_FILE",
            channel=self.name,
        )
        self._gates: dict[str, asyncio.Semaphore] = {}

    @property
    def delegated(self) -> bool:
        """Whether the channel sends with a delegated token (``address``) rather than an application's."""
        return self.address is not None

    @classmethod
    def scope_kind_for(cls, identity: str | None) -> ScopeKind:
        """The scope kind of a channel for ``identity``: a mailbox (delegated) or a domain (application)."""
        return ScopeKind.PER_DOMAIN if identity is not None and "@" not in identity else ScopeKind.PER_ADDRESS

    # -- token providers ---------------------------------------------------------------------------------

    @staticmethod
    def token_from_client_credentials(
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str | None = None,
        **msal_options: Any,
    ) -> ClientCredentialsTokenProvider:
        """A token provider for an app that sends without a user (client credentials, via msal).

        It asks for ``https://graph.microsoft.com/.default``: the application permissions an admin granted
        the app (``Mail.Send``; ``Mail.ReadWrite`` too for messages over 4 MB). Use it with ``domains=``.
        Needs ``pip install "sendchannel[msgraph]"``.

        Args:
            tenant_id: The Entra tenant id (a GUID or ``contoso.onmicrosoft.com``).
            client_id: The app's client id.
            client_secret: The app's client secret; never shown.
            authority: The sign-in authority; ``https://login.microsoftonline.com/<tenant_id>`` by default.
            msal_options: More arguments of ``msal.ConfidentialClientApplication``.
        """
        return _tokens.client_credentials(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            authority=authority,
            **msal_options,
        )

    @staticmethod
    def token_from_device_code(
        *,
        client_id: str,
        tenant_id: str = "organizations",
        cache_path: str | os.PathLike[str] | None = None,
        authority: str | None = None,
        scopes: Sequence[str] = (_tokens.MAIL_SEND_SCOPE,),
        prompt: Callable[[str], None] | None = None,
        **msal_options: Any,
    ) -> DeviceCodeTokenProvider:
        """A token provider for which a user signs in once on another device (device code, via msal).

        It asks for ``Mail.Send`` and ``offline_access`` (msal adds the latter), so later tokens come from
        the refresh token, kept in ``cache_path`` across runs when given. Use it with ``address=``. Needs
        ``pip install "sendchannel[msgraph]"``.

        Args:
            client_id: The public client app's id (with the delegated ``Mail.Send`` permission).
            tenant_id: The tenant, or ``"organizations"``.
            cache_path: A file to keep msal's token cache in (created with owner-only permissions).
            authority: The sign-in authority; ``https://login.microsoftonline.com/<tenant_id>`` by default.
            scopes: The scopes asked for; add ``https://graph.microsoft.com/Mail.ReadWrite`` to send
                messages over 4 MB.
            prompt: Shows Microsoft's sign-in instruction; prints it to standard error by default.
            msal_options: More arguments of ``msal.PublicClientApplication``.
        """
        return _tokens.device_code(
            client_id=client_id,
            tenant_id=tenant_id,
            cache_path=cache_path,
            authority=authority,
            scopes=scopes,
            prompt=prompt,
            **msal_options,
        )

    # -- sending -------------------------------------------------------------------------------------------

    def _mailbox_root(self, mailbox: str) -> str:
        if self.address is not None:
            return f"{self.base_url}/me"
        return f"{self.base_url}/users/{urllib.parse.quote(mailbox, safe='@')}"

    async def _send(self, message: Message) -> SendResult:
        mailbox = self.address or message.sender_address
        context = Submission(self, message, mailbox)
        body = base64.b64encode(submitted_mime(message))
        if len(body) <= MAX_REQUEST:
            await context.call("POST", "sendMail", body, "text/plain", situation=SEND, delivers=True)
            provider_id = None
        else:
            provider_id = await context.through_draft()
        return SendResult(
            message_id=message.message_id,
            provider_id=provider_id,
            accepted=message.recipients,
            channel=self.name,
        )

    async def _token(self) -> str:
        try:
            token = await self._token_provider()
        except SendError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's provider: say what failed, never its text (it may echo secrets)
            raise AuthenticationError(
                f"The token_provider of {self.name} failed ({type(exc).__name__}); no access token for "
                "Microsoft Graph, so nothing was sent. Check how the provider gets its token.",
                channel=self.name,
            ) from None
        if not isinstance(token, str) or not token.strip():
            raise AuthenticationError(
                f"The token_provider of {self.name} returned {type(token).__name__} instead of an access "
                "token string; nothing was sent.",
                channel=self.name,
            )
        self._redact.add(token)
        return token

    def _gate(self, mailbox: str) -> asyncio.Semaphore:
        key = mailbox.lower()
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(IN_FLIGHT)
        return gate

    async def verify(self) -> None:
        """Get a token and read its claims: ``roles`` (application) or ``scp`` (delegated) must hold
        ``Mail.Send``. Nothing is sent, and Graph is not called.

        Raises:
            AuthenticationError: No token, or one without ``Mail.Send`` (the message says what to grant), or
                an application token for a delegated channel (or the reverse).
        """
        token = await self._token()
        grant = _tokens.read_grant(token)
        expected = "delegated" if self.delegated else "application"
        who = self.address if self.address is not None else f"the app for {', '.join(self.domains)}"
        if grant.kind == "unknown":
            raise AuthenticationError(
                f"The access token for {who} is not a Microsoft Graph token whose permissions can be read "
                "(no roles or scp claim); make sure the token is issued for https://graph.microsoft.com.",
                channel=self.name,
            )
        if grant.kind != expected:
            flow = (
                "sign the user in (Office365GraphChannel.token_from_device_code)"
                if self.delegated
                else "use client credentials (Office365GraphChannel.token_from_client_credentials)"
            )
            raise AuthenticationError(
                f"The access token for {who} is {_article(grant.kind)} token, but this channel was built for "
                f"{_article(expected)} one ({'address=' if self.delegated else 'domains='}); {flow}.",
                channel=self.name,
            )
        if "Mail.Send" not in grant.permissions and "Mail.Send.Shared" not in grant.permissions:
            held = ", ".join(sorted(grant.permissions)) or "none"
            if self.delegated:
                remedy = (
                    "add the delegated permission Mail.Send (Microsoft Graph) to the app registration in "
                    "Entra ID, then have the user sign in again and consent"
                )
            else:
                remedy = (
                    "an admin adds the application permission Mail.Send (Microsoft Graph) to the app "
                    "registration in Entra ID and grants admin consent"
                )
            raise AuthenticationError(
                f"The access token for {who} lacks the Mail.Send permission (it holds: {held}); {remedy}.",
                channel=self.name,
            )

    async def aclose(self) -> None:
        """Close the HTTP session; the channel cannot send afterwards."""
        await self._client.aclose()

    def __repr__(self) -> str:
        mode = f"delegated {self.address}" if self.address is not None else "application"
        return f"<Office365GraphChannel {self.name!r} {mode} via {self.base_url} scope={self.scope}>"
