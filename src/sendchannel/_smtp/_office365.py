"""Office365Channel: SMTP AUTH client submission to Exchange Online, and Microsoft token providers.

Office 365 credentials belong to one mailbox; the channel's scope is that mailbox plus the send-as
addresses declared for it. The limits are Microsoft's documented defaults for SMTP AUTH submission:
30 messages a minute, 10,000 recipients in any rolling 24 hours, 500 recipients a message, 35 MB a
message and 3 concurrent connections a mailbox. Replies are read with Office 365's own table first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from sendchannel._address import try_parse_address
from sendchannel._limits import Limits, Rate
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._smtp._channel import SmtpChannel
from sendchannel._smtp._classify import SMTP_RULES, ReplyRule, rule
from sendchannel._smtp._session import TokenProvider
from sendchannel.errors import (
    AuthenticationError,
    ConfigurationError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    SenderNotAllowedError,
    ThrottledError,
    TransientError,
)

__all__ = [
    "OFFICE365_RULES",
    "ClientCredentialsTokenProvider",
    "DeviceCodeTokenProvider",
    "Office365Channel",
]

#: 35 MB as Microsoft counts it (35 * 1024 * 1024 bytes of encoded message).
MAX_MESSAGE_BYTES = 35 * 1024 * 1024

#: The scope of app-only tokens (client credentials) for SMTP AUTH.
APP_SCOPE = "https://outlook.office365.com/.default"
#: The delegated scope for SMTP AUTH (a user signs in); msal adds offline_access itself.
DELEGATED_SCOPE = "https://outlook.office.com/SMTP.Send"

_THROTTLED = (
    "Office 365 has paused SMTP sending for {username} after repeated {cause} errors ({reply}). "
)

#: Office 365's replies, read before the generic SMTP table.
OFFICE365_RULES: tuple[ReplyRule, ...] = (
    rule(
        AuthenticationError,
        "Office 365 refused SMTP AUTH for {username} ({reply}): authenticated SMTP or Basic auth is "
        "disabled for the tenant or the mailbox, or security defaults block it. An admin can turn on "
        "'Authenticated SMTP' for the mailbox; better, sign in with OAuth through token_provider, "
        "since Microsoft is retiring Basic auth.",
        enhanced="5.7.139",
    ),
    rule(
        AuthenticationError,
        "Office 365 rejected the access token for {username} ({reply}), also after a fresh token was "
        "fetched. Check that the app has the SMTP.SendAsApp permission (client credentials) or "
        "SMTP.Send (delegated), and that its service principal was given access to the mailbox.",
        code="535",
        enhanced="5.7.3",
        credential="token",
    ),
    rule(
        AuthenticationError,
        "Office 365 rejected the password for {username} ({reply}). If the password changed recently, "
        "update it; Basic auth may also be disabled for the tenant (5.7.139): use token_provider.",
        code="535",
        enhanced="5.7.3",
    ),
    rule(
        AuthenticationError,
        "Office 365 no longer accepts Basic auth (a password) for {username} ({reply}); sign in with "
        "OAuth through token_provider (see Office365Channel.token_from_client_credentials).",
        enhanced="5.7.30",
    ),
    rule(
        AuthenticationError,
        "Office 365 took the connection as not signed in ({reply}); give the channel a password or a "
        "token_provider, and check that SMTP AUTH is enabled for {username}.",
        enhanced="5.7.57",
    ),
    rule(
        SenderNotAllowedError,
        "Office 365 does not let {username} send as {sender} ({reply}); grant the mailbox the Send As "
        "permission for that address in the Exchange admin center, or send from {username}.",
        enhanced="5.7.60",
    ),
    rule(
        SenderNotAllowedError,
        "Office 365 does not let {username} send as {sender} ({reply}); grant the mailbox the Send As "
        "permission for that address in the Exchange admin center, or send from {username}.",
        code="5xx",
        text=r"SendAsDenied|permissions? to send as",
    ),
    rule(
        QuotaExceededError,
        "{username} has sent to 10,000 recipients in the last 24 hours, Office 365's limit for a "
        "mailbox ({reply}). Sending resumes as the rolling 24-hour window moves on; use a bulk "
        "provider for mail to many recipients.",
        enhanced="5.2.0",
        text=r"SubmissionQuotaExceeded",
    ),
    rule(
        ThrottledError,
        "Office 365 allows 3 concurrent connections a mailbox, and {username} has more open "
        "({reply}); another process or device is probably sending as this mailbox. Try again "
        "shortly, and share one Throttler between the senders.",
        enhanced="4.3.2",
    ),
    rule(
        PermanentError,
        "Office 365 refused the TLS version ({reply}); it needs TLS 1.2 or later. Use a tls_context "
        "whose minimum_version is ssl.TLSVersion.TLSv1_2.",
        enhanced="4.7.66",
    ),
    rule(
        QuotaExceededError,
        "The mailbox {username} is full ({reply}); Office 365 keeps sent mail in Sent Items, so a full "
        "mailbox cannot send. Empty Sent Items (a retention policy keeps it small) or raise the quota.",
        enhanced="5.2.2",
    ),
    rule(
        QuotaExceededError,
        _THROTTLED.format(username="{username}", cause="mailbox-full", reply="{reply}")
        + "Free space in the mailbox (Sent Items fills it), then wait for the pause to end.",
        enhanced="5.2.251",
    ),
    rule(
        SenderNotAllowedError,
        _THROTTLED.format(username="{username}", cause="Send As denied", reply="{reply}")
        + "Grant the mailbox Send As for the sender, or send from {username}, then wait.",
        enhanced="5.2.252",
    ),
    rule(
        PermanentError,
        _THROTTLED.format(username="{username}", cause="invalid licence", reply="{reply}")
        + "Assign the mailbox an Exchange Online licence, then wait for the pause to end.",
        enhanced="5.2.253",
    ),
    rule(
        MessageRejectedError,
        _THROTTLED.format(username="{username}", cause="too many recipients", reply="{reply}")
        + "Send to at most 500 recipients a message (or the tenant's limit), then wait.",
        enhanced="5.2.254",
    ),
    rule(
        MessageRejectedError,
        _THROTTLED.format(username="{username}", cause="invalid recipient", reply="{reply}")
        + "Remove the addresses that do not exist from your lists, then wait.",
        enhanced="5.2.255",
    ),
    rule(
        ThrottledError,
        "Office 365 asked to try again later ({reply}); it is limiting this sender or its IP address "
        "for now.",
        enhanced="4.7.500-699",
    ),
    rule(
        SenderNotAllowedError,
        "Office 365 has blocked {username} from sending, usually after it was seen sending spam "
        "({reply}); an admin must release it under Restricted entities in the Microsoft Defender "
        "portal, and should check the account for a compromise.",
        enhanced="5.1.8",
    ),
    rule(
        PermanentError,
        "Office 365 blocks mail from this tenant (5.7.705) or from this IP address (5.7.708) "
        "({reply}); contact Microsoft support through the admin center.",
        enhanced="5.7.705-708",
    ),
)


def _address(value: object, field: str) -> str:
    parsed = try_parse_address(value)
    if parsed is None:
        raise ConfigurationError(
            f"{field} must be an e-mail address such as 'alice@contoso.com', got {value!r}"
        )
    return parsed.addr_spec


class Office365Channel(SmtpChannel):
    """Send as one Office 365 mailbox through SMTP AUTH client submission (smtp.office365.com:587).

    STARTTLS with TLS 1.2 or later, login as ``address`` with a password (Basic auth, being retired by
    Microsoft) or an OAuth token (XOAUTH2) from ``token_provider``. The scope is the mailbox and its
    declared send-as addresses, so the credential must not be shared across a team. Replies are mapped
    to errors that name Office 365's cause and the remedy (5.7.139 Basic auth disabled, 5.7.60 Send As
    denied, 554 5.2.0 recipient quota, 432 4.3.2 too many connections, ...).

    Args:
        address: The mailbox; it is the login and the sender.
        password: The mailbox password (Basic auth). Leave it out with ``token_provider``.
        token_provider: An async callable returning an OAuth access token for the mailbox; see
            :meth:`token_from_client_credentials` and :meth:`token_from_device_code`.
        send_as: Other addresses the mailbox has Send As permission for.
        host: The submission host (``smtp.office365.com``).
        port: The submission port (587).
        tls_context: An SSL context instead of the default one; its minimum_version must be TLS 1.2
            or later.
        limits: Limits instead of :attr:`default_limits` (a tenant may allow 1-1000 recipients a
            message and up to 150 MB).
        pool_size: The most connections open at once; by default ``limits.max_connections`` (3).
        timeout: Seconds to wait for each network step.
        local_hostname: The name given in EHLO.
        recycle_after: Close a connection after this many messages.
        max_idle: Close a connection unused for this many seconds.
        name: The channel's name (``"office365"``).

    Raises:
        ConfigurationError: An address that is not one, both a password and a token_provider, a
            tls_context allowing TLS older than 1.2, or a pool larger than the limits allow.
    """

    name = "office365"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.PER_ADDRESS
    provider_name: ClassVar[str | None] = "Office 365"
    default_limits: ClassVar[Limits] = Limits(
        rates=(Rate.per_minute(30), Rate.per_day(10_000, "recipients")),
        max_recipients_per_message=500,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_connections=3,
    )
    reply_rules: ClassVar[Sequence[ReplyRule]] = OFFICE365_RULES + SMTP_RULES

    def __init__(
        self,
        address: str,
        *,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        send_as: Iterable[str] = (),
        host: str = "smtp.office365.com",
        port: int = 587,
        tls_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        pool_size: int | None = None,
        timeout: float = 60.0,
        local_hostname: str | None = None,
        recycle_after: int | None = 100,
        max_idle: float | None = 30.0,
        name: str | None = None,
    ) -> None:
        mailbox = _address(address, "address")
        if isinstance(send_as, str):
            send_as = (send_as,)
        aliases = tuple(_address(alias, "send_as") for alias in send_as)
        if (
            tls_context is not None
            and isinstance(tls_context, ssl.SSLContext)
            and tls_context.minimum_version < ssl.TLSVersion.TLSv1_2
        ):
            raise ConfigurationError(
                "Office 365 needs TLS 1.2 or later, but tls_context allows older versions; set "
                "tls_context.minimum_version = ssl.TLSVersion.TLSv1_2"
            )
        self.address = mailbox
        self.send_as = aliases
        super().__init__(
            host,
            port,
            username=mailbox if (password is not None or token_provider is not None) else None,
            password=password,
            token_provider=token_provider,
            tls="starttls",
            tls_context=tls_context,
            scope=CredentialScope.per_address(mailbox, *aliases, provider=self.provider_name),
            limits=limits,
            pool_size=pool_size,
            timeout=timeout,
            local_hostname=local_hostname,
            recycle_after=recycle_after,
            max_idle=max_idle,
            name=name,
        )
        # Say who the mailbox is in explanations even before a credential is given.
        self._endpoint.username = mailbox

    @classmethod
    def _default_tls_context(cls) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
        return context

    def _check_ready(self) -> None:
        if self._endpoint.credential is None:
            raise AuthenticationError(
                f"Office365Channel for {self.address} has neither a password nor a token_provider, and "
                "Office 365 accepts no anonymous submission; pass token_provider= (OAuth) or password=.",
                channel=self.name,
            )

    def __repr__(self) -> str:
        return (
            f"<Office365Channel {self.name!r} {self.address} via {self.host}:{self.port} "
            f"scope={self.scope}>"
        )

    # -- token providers ---------------------------------------------------------------------------

    @staticmethod
    def token_from_client_credentials(
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str | None = None,
        scopes: Sequence[str] = (APP_SCOPE,),
        **msal_options: Any,
    ) -> ClientCredentialsTokenProvider:
        """A token provider for an app that sends without a user (OAuth client credentials, via msal).

        The app needs the ``SMTP.SendAsApp`` application permission, and its service principal must be
        given access to the mailbox in Exchange Online. Needs ``pip install "sendchannel[office365]"``.

        Args:
            tenant_id: The Entra tenant id (a GUID or ``contoso.onmicrosoft.com``).
            client_id: The app's client id.
            client_secret: The app's client secret; never shown.
            authority: The sign-in authority; ``https://login.microsoftonline.com/<tenant_id>`` by
                default.
            scopes: The scopes asked for (``https://outlook.office365.com/.default``).
            msal_options: More arguments of ``msal.ConfidentialClientApplication`` (``verify``,
                ``proxies``, ``timeout``, ``instance_discovery``, ...).
        """
        return ClientCredentialsTokenProvider(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            authority=authority,
            scopes=scopes,
            **msal_options,
        )

    @staticmethod
    def token_from_device_code(
        *,
        client_id: str,
        tenant_id: str = "organizations",
        authority: str | None = None,
        scopes: Sequence[str] = (DELEGATED_SCOPE,),
        prompt: Callable[[str], None] | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        **msal_options: Any,
    ) -> DeviceCodeTokenProvider:
        """A token provider for which a user signs in once on another device (OAuth device code, via msal).

        The first token needs the user: ``prompt`` is called with Microsoft's instruction ("open
        https://microsoft.com/devicelogin and enter the code ..."), then the provider waits until the
        sign-in is done. Later tokens come from the refresh token (``offline_access``), kept in
        ``cache_path`` across runs when it is given. Needs ``pip install "sendchannel[office365]"``.

        Args:
            client_id: The public client app's id (with the delegated ``SMTP.Send`` permission).
            tenant_id: The tenant, or ``"organizations"``.
            authority: The sign-in authority; ``https://login.microsoftonline.com/<tenant_id>`` by default.
            scopes: The scopes asked for (``https://outlook.office.com/SMTP.Send``).
            prompt: Shows the instruction to the user; prints it to standard error by default.
            cache_path: A file to keep the token cache in (created with owner-only permissions).
            msal_options: More arguments of ``msal.PublicClientApplication``.
        """
        return DeviceCodeTokenProvider(
            client_id=client_id,
            tenant_id=tenant_id,
            authority=authority,
            scopes=scopes,
            prompt=prompt,
            cache_path=cache_path,
            **msal_options,
        )


# -- Microsoft token providers over msal ----------------------------------------------------------------


def _import_msal() -> Any:
    try:
        import msal
    except ImportError as exc:
        raise ConfigurationError(
            'The Microsoft token providers need msal; install it with: pip install "sendchannel[office365]"'
        ) from exc
    return msal


class _MsalTokenProvider:
    """Shared plumbing: msal runs in a worker thread, one acquisition at a time."""

    def __init__(self, scopes: Sequence[str], authority: str | None, tenant_id: str) -> None:
        if isinstance(scopes, str):
            scopes = (scopes,)
        self.scopes = list(scopes)
        self.authority = authority or f"https://login.microsoftonline.com/{tenant_id}"
        self._lock = threading.Lock()
        self._app: Any = None
        self._stale = False

    async def __call__(self) -> str:
        """An access token (from msal's cache while it is valid)."""
        return await asyncio.to_thread(self._acquire_locked)

    def invalidate(self) -> None:
        """Forget the cached token: the server refused it, so the next call fetches a new one."""
        self._stale = True

    def _acquire_locked(self) -> str:
        with self._lock:
            try:
                result = self._acquire()
            except ConfigurationError:  # msal is missing: a ValueError too, but not an authority problem
                raise
            except ValueError as exc:  # msal's word for an authority or tenant it cannot use
                raise AuthenticationError(
                    f"Could not use the sign-in authority {self.authority} "
                    f"({self._redact(str(exc))[:300]}); check tenant_id and authority."
                ) from None
            except OSError as exc:
                raise TransientError(
                    f"Could not reach {self.authority} for a token ({type(exc).__name__}: "
                    f"{self._redact(str(exc))[:300]}); check the network, then try again."
                ) from None
            except Exception as exc:  # requests' errors, without importing requests
                if type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
                    raise TransientError(
                        f"Could not reach {self.authority} for a token ({type(exc).__name__}); "
                        "try again later."
                    ) from None
                raise
            self._stale = False
        token = result.get("access_token") if isinstance(result, Mapping) else None
        if not token:
            error = result.get("error", "unknown_error") if isinstance(result, Mapping) else "no_result"
            description = result.get("error_description", "") if isinstance(result, Mapping) else ""
            raise AuthenticationError(
                f"Microsoft refused the token request ({error}: {self._redact(str(description))}); "
                f"{_TOKEN_REMEDIES.get(str(error), 'check the app registration and its permissions.')}"
            )
        return str(token)

    def _acquire(self) -> Mapping[str, Any]:
        raise NotImplementedError

    def _redact(self, text: str) -> str:
        return text


_TOKEN_REMEDIES = {
    "invalid_client": "check the client id and the client secret (it may have expired).",
    "unauthorized_client": "check that the app is registered in this tenant for this flow.",
    "invalid_grant": "the user must sign in again (the refresh token expired or was revoked).",
    "invalid_scope": "check the scopes: app-only tokens use https://outlook.office365.com/.default.",
    "authorization_declined": "the user declined the sign-in.",
    "expired_token": "the user did not finish signing in in time; try again.",
    "interaction_required": "the user must sign in again.",
}


class ClientCredentialsTokenProvider(_MsalTokenProvider):
    """OAuth client-credentials tokens for SMTP AUTH.

    Build it with :meth:`Office365Channel.token_from_client_credentials`.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str | None = None,
        scopes: Sequence[str] = (APP_SCOPE,),
        **msal_options: Any,
    ) -> None:
        required = (("tenant_id", tenant_id), ("client_id", client_id), ("client_secret", client_secret))
        for field, value in required:
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{field} must be a non-empty string")
        super().__init__(scopes, authority, tenant_id)
        self.client_id = client_id
        self._client_secret = client_secret
        self._options = msal_options

    def _acquire(self) -> Mapping[str, Any]:
        if self._app is None:
            msal = _import_msal()
            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._client_secret,
                authority=self.authority,
                **self._options,
            )
        if self._stale:
            self._app.remove_tokens_for_client()
        result: Mapping[str, Any] = self._app.acquire_token_for_client(scopes=self.scopes)
        return result

    def _redact(self, text: str) -> str:
        return text.replace(self._client_secret, "***")

    def __repr__(self) -> str:
        return (
            f"<ClientCredentialsTokenProvider client_id={self.client_id!r} "
            f"authority={self.authority!r}>"
        )


class DeviceCodeTokenProvider(_MsalTokenProvider):
    """OAuth device-code tokens for SMTP AUTH (see :meth:`Office365Channel.token_from_device_code`)."""

    def __init__(
        self,
        *,
        client_id: str,
        tenant_id: str = "organizations",
        authority: str | None = None,
        scopes: Sequence[str] = (DELEGATED_SCOPE,),
        prompt: Callable[[str], None] | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        cache_state: str | None = None,
        **msal_options: Any,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        super().__init__(scopes, authority, tenant_id)
        self.client_id = client_id
        self.prompt = prompt if prompt is not None else _print_prompt
        self.cache_path = None if cache_path is None else os.fspath(cache_path)
        #: More arguments of msal.PublicClientApplication (a store that rebuilds the provider keeps them).
        self.msal_options = self._options = msal_options
        self._cache: Any = None
        # A token cache kept elsewhere (ChannelDirectory's encrypted store), serialized, to start from.
        self._cache_state = cache_state

    @property
    def cache_changed(self) -> bool:
        """Whether the token cache changed since it was last serialized (a new token, a new refresh token)."""
        return self._cache is not None and bool(self._cache.has_state_changed)

    def cache_state(self) -> str | None:
        """The token cache, serialized (for a store that keeps it elsewhere), or None before the first use."""
        return self._cache_state if self._cache is None else str(self._cache.serialize())

    def _acquire(self) -> Mapping[str, Any]:
        if self._app is None:
            msal = _import_msal()
            self._cache = msal.SerializableTokenCache()
            if self._cache_state is not None:
                self._cache.deserialize(self._cache_state)
            elif self.cache_path is not None and os.path.exists(self.cache_path):
                with open(self.cache_path, encoding="utf-8") as file:
                    self._cache.deserialize(file.read())
            self._app = msal.PublicClientApplication(
                self.client_id, authority=self.authority, token_cache=self._cache, **self._options
            )
        try:
            result = self._silent() or self._device_flow()
        finally:
            self._save()
        return result

    def _silent(self) -> Mapping[str, Any] | None:
        accounts = self._app.get_accounts()
        if not accounts:
            return None
        result: Mapping[str, Any] | None = self._app.acquire_token_silent(
            self.scopes, account=accounts[0], force_refresh=self._stale
        )
        if result and "access_token" in result:
            return result
        return None

    def _device_flow(self) -> Mapping[str, Any]:
        flow = self._app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            return dict(flow)
        self.prompt(str(flow.get("message") or f"Enter the code {flow['user_code']} to sign in."))
        result: Mapping[str, Any] = self._app.acquire_token_by_device_flow(flow)
        return result

    def _save(self) -> None:
        if self.cache_path is None or self._cache is None or not self._cache.has_state_changed:
            return
        descriptor = os.open(self.cache_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(self._cache.serialize())
        with contextlib.suppress(OSError):
            os.chmod(self.cache_path, 0o600)

    def __repr__(self) -> str:
        return f"<DeviceCodeTokenProvider client_id={self.client_id!r} authority={self.authority!r}>"


def _print_prompt(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
