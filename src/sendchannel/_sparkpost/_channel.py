"""SparkpostChannel: SparkPost's Transmissions API on the shared HTTP base (aiohttp).

A SparkPost API key may send from any address at the account's verified sending domains, so the channel's
scope is per-domain and a whole team can share one key. Each message goes out as its own MIME
(``content.email_rfc822``), so every header, attachment and inline image arrives exactly as rendered;
the recipients (Bcc included) travel beside it in ``recipients``, never in the headers.

Every transmission carries ``Idempotency-Key: <Message-ID>``: SparkPost keeps the key 24 hours and answers
a repeat with the first answer (``X-Idempotent-Replayed: true``), so a message whose outcome is unknown can
be sent again and is delivered once. The channel declares ``idempotent = True``, and ``Retrying`` retries
its DeliveryUnknownError with the same message.

Answers are read by the table in ``_answers.py``; failures of the connection by the shared base
(``sendchannel._http``): before the request was written nothing was sent (ConnectionLostError), after it
the outcome is unknown (DeliveryUnknownError).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NoReturn

from sendchannel._address import idna_domain
from sendchannel._channel import BaseChannel
from sendchannel._clock import Clock, SystemClock
from sendchannel._http import HttpAnswer, HttpClient, Redactor
from sendchannel._limits import Limits
from sendchannel._message import Message
from sendchannel._refusals import all_refused_error
from sendchannel._result import SendResult
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._sparkpost._answers import RECIPIENT_CODES, answer_error, describe, errors_of
from sendchannel._sparkpost._config import EU_API, US_API, api_root, check_key, domains_of
from sendchannel._sparkpost._recipients import attribute
from sendchannel._sparkpost._template import BRACE_DATA, literal_message
from sendchannel._urls import redact_url
from sendchannel.errors import (
    ConfigurationError,
    DeliveryUnknownError,
    PermanentError,
    SenderNotAllowedError,
    SendError,
)

__all__ = ["EU_API", "US_API", "SparkpostChannel"]

logger = logging.getLogger("sendchannel")

_UNKNOWN_ADVICE = (
    "Sending it again with the same Message-ID within 24 hours is safe: SparkPost's Idempotency-Key "
    "delivers it once (Retrying does so). Later, check SparkPost's events before sending it again."
)


class SparkpostChannel(BaseChannel):
    """Send through SparkPost's Transmissions API (aiohttp, async).

    The API key may send from every address at the account's verified sending domains, so the scope is
    per-domain over ``domains`` and the key may be shared by everyone at those domains (unlike an Office
    365 password, which belongs to one mailbox). The sender is checked against ``domains`` before anything
    is sent. Each message goes as its own MIME (``content.email_rfc822``), with SparkPost's template syntax
    escaped and open and click tracking off, so recipients get exactly the Message; all recipients,
    Bcc included, go in ``recipients``. Each transmission's ``Idempotency-Key`` is the Message-ID, so the
    channel is ``idempotent``: the same message sent twice within 24 hours is delivered once.

    One aiohttp session (one connection pool) is created on first use and closed by :meth:`aclose`.

    Args:
        api_key: A SparkPost API key with the "Transmissions: Read/Write" permission (and "Sending Domains:
            Read-only" for :meth:`verify`). Sent as the ``Authorization`` header; never shown.
        domains: The verified sending domains the key may send from (``*.example.com`` covers subdomains).
        region: ``"us"`` (api.sparkpost.com) or ``"eu"`` (api.eu.sparkpost.com); accounts are separate.
        base_url: The API root including ``/api/v1``, for Enterprise endpoints and tests; overrides
            ``region``. Plain ``http`` is accepted only for a server on this machine.
        limits: The account plan's limits. None are declared by default, since SparkPost's hourly, daily
            and monthly limits depend on the plan; give them so a Throttler keeps you inside them.
        timeout: Seconds for each network wait (connecting, then waiting for the answer); finite.
        options: Transmission options sent with every message (``{"transactional": True}``,
            ``{"ip_pool": "my_pool"}``); open and click tracking are off unless turned on here.
        tls_context: An ``ssl.SSLContext`` to verify the endpoint with (a private certificate authority);
            default: the system's trust store (``SSL_CERT_FILE`` works).
        clock: The wall clock used for Retry-After dates and limit resets (a ``VirtualClock`` in tests).

    Raises:
        ConfigurationError: An empty or malformed key, no domains, an unknown region, a base_url that is not
            an https API root, a timeout that is not a positive finite number, or a tls_context that is not
            an ``ssl.SSLContext``.

    Example::

        channel = SparkpostChannel(key, domains=["example.com"], region="eu")
        async with channel:
            result = await channel.send(Message("app@example.com", ["bob@example.net"], subject="Hi"))
    """

    name = "sparkpost"
    scope_kind: ClassVar[ScopeKind] = ScopeKind.PER_DOMAIN
    provider_name: ClassVar[str | None] = "SparkPost"
    default_limits: ClassVar[Limits] = Limits()
    #: SparkPost recognises a repeated transmission by its Idempotency-Key (the Message-ID).
    idempotent: ClassVar[bool] = True

    def __init__(
        self,
        api_key: str,
        *,
        domains: Sequence[str],
        region: str = "us",
        base_url: str | None = None,
        limits: Limits | None = None,
        timeout: float = 30.0,
        options: Mapping[str, Any] | None = None,
        tls_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._api_key = check_key(api_key)
        self.domains = domains_of(domains)
        self.base_url = api_root(region, base_url)
        self.region = region.lower() if base_url is None else None
        self.scope = CredentialScope.per_domain(*self.domains, provider=self.provider_name)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a Limits object, got {type(limits).__name__}")
        self.limits = limits if limits is not None else self.default_limits
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(f"options must be a mapping, got {type(options).__name__}")
        try:
            json.dumps(dict(options or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"options must be JSON data (SparkPost's transmission options): {exc}"
            ) from None
        self.options: dict[str, Any] = {"open_tracking": False, "click_tracking": False, **(options or {})}
        self._redact = Redactor([self._api_key])
        self._http = HttpClient(
            provider="SparkPost",
            owner="SparkpostChannel",
            timeout=timeout,
            tls_context=tls_context,
            redact=self._redact,
            max_connections=self.limits.max_connections,
            remedy="pass tls_context=ssl.create_default_context(cafile=...)",
            channel=self.name,
        )
        self.timeout = self._http.timeout
        self._headers = {"Authorization": self._api_key, "Accept": "application/json"}
        self.clock: Clock = clock if clock is not None else SystemClock()

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> HttpAnswer:
        sent = {**self._headers, **headers}
        if body is not None:
            sent["Content-Type"] = "application/json"
        return await self._http.request(
            method,
            self.base_url + path,
            body=body,
            headers=sent,
            delivers=method == "POST",
            reference=f" (Message-ID {headers['Idempotency-Key']})" if "Idempotency-Key" in headers else "",
            unknown_advice=_UNKNOWN_ADVICE,
        )

    def _error(self, answer: HttpAnswer, errors: list[tuple[str | None, str]], **context: str) -> SendError:
        error = answer_error(
            answer,
            errors,
            now=self.clock.now(),
            redact=self._redact,
            where=redact_url(answer.url),
            context={"unknown_advice": _UNKNOWN_ADVICE, **context},
        )
        error.channel = self.name
        return error

    # -- sending ------------------------------------------------------------------------------------

    def _transmission(self, message: Message, recipients_of: Sequence[str] | None = None) -> bytes:
        """The JSON body of ``POST /transmissions`` for ``message`` (``recipients_of``: its recipients)."""
        literal = literal_message(message)
        mime = (literal or message).as_bytes().decode("utf-8")
        header_to = ",".join(a.addr_spec for a in message.parsed("to"))
        recipients = []
        for address in message.recipients if recipients_of is None else recipients_of:
            entry: dict[str, str] = {"email": address}
            # SparkPost builds a To header from header_to (or from the recipient's own address) when it
            # generates one: point every copy, Bcc included, at the real To list.
            if header_to:
                entry["header_to"] = header_to
            recipients.append({"address": entry})
        body: dict[str, Any] = {
            "options": self.options,
            "recipients": recipients,
            "content": {"email_rfc822": mime},
        }
        if literal is not None:
            body["substitution_data"] = dict(BRACE_DATA)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    async def _send(self, message: Message) -> SendResult:
        recipients = message.recipients
        body = self._transmission(message, recipients)
        key = {"Idempotency-Key": message.message_id}
        answer = await self._request("POST", "/transmissions", body, **key)
        data = answer.json()
        results = data.get("results") if isinstance(data, dict) else None
        errors = errors_of(data, self._redact)
        if errors and {code for code, _ in errors} & RECIPIENT_CODES:
            self._refused(message, answer.status, errors, results)
        if answer.status == 200 and isinstance(results, dict) and results.get("id") is not None:
            if answer.headers.get("x-idempotent-replayed", "").lower() == "true":
                logger.info(
                    "sparkpost: message_id=%s was sent before; SparkPost replayed its answer (id %s)",
                    message.message_id,
                    results.get("id"),
                )
            return self._accepted(message, results, recipients)
        if answer.status == 200:
            raise DeliveryUnknownError(
                "SparkPost answered 200 but not with a transmission id "
                f"({self._redact(answer.text) or 'empty body'}), so it is not known whether the message "
                f"was accepted (Message-ID {message.message_id}). {_UNKNOWN_ADVICE}",
                code=200,
                channel=self.name,
            )
        sender = message.parsed("sender")[0]
        raise self._error(
            answer,
            errors,
            situation="send",
            message_id=message.message_id,
            sender=message.sender_address,
            domain=sender.domain,
        )

    def _accepted(
        self, message: Message, results: Mapping[str, Any], recipients: tuple[str, ...] | None = None
    ) -> SendResult:
        """The result of a 200 answer: rcpt_to_errors become ``rejected``; all refused raises."""
        if recipients is None:
            recipients = message.recipients
        listed = results.get("rcpt_to_errors") or ()
        if not listed and results.get("total_accepted_recipients") != 0:
            return SendResult(
                message_id=message.message_id,
                provider_id=str(results["id"]),
                accepted=recipients,
                channel=self.name,
            )
        refusals = [describe(e, self._redact) for e in listed if isinstance(e, dict)]
        accepted_count = results.get("total_accepted_recipients")
        rejected, unattributed = attribute(recipients, refusals)
        if accepted_count == 0:
            reason = (unattributed or refusals or ["SparkPost accepted none of the recipients"])[0]
            rejected = {r: rejected.get(r, reason) for r in recipients}
            unattributed = []
        if len(rejected) == len(recipients):
            raise self._all_refused(rejected, 200)
        if unattributed:
            logger.warning(
                "SparkPost refused %d recipient(s) of message_id=%s without naming them; the result lists "
                "them as accepted: %s",
                len(unattributed),
                message.message_id,
                "; ".join(unattributed),
            )
        return SendResult(
            message_id=message.message_id,
            provider_id=str(results["id"]),
            accepted=tuple(r for r in recipients if r not in rejected),
            rejected=rejected,
            channel=self.name,
        )

    def _refused(
        self, message: Message, status: int, errors: list[tuple[str | None, str]], results: object
    ) -> NoReturn:
        """Raise for a 1902 or 5002 answer: SparkPost refused recipients, possibly not saying which."""
        recipients = message.recipients
        refusals = [text for code, text in errors if code in RECIPIENT_CODES]
        if isinstance(results, dict):
            listed = results.get("rcpt_to_errors") or ()
            refusals += [describe(e, self._redact) for e in listed if isinstance(e, dict)]
        rejected, unattributed = attribute(recipients, refusals)
        none_valid = next((text for code, text in errors if code == "5002"), None)
        if none_valid is not None:
            # "No valid recipients": every recipient was refused, whether or not the reply names it.
            rejected = {r: rejected.get(r, none_valid) for r in recipients}
        if len(rejected) == len(recipients):
            raise self._all_refused(rejected, status)
        provider_id = results.get("id") if isinstance(results, dict) else None
        unknown = [r for r in recipients if r not in rejected]
        raise DeliveryUnknownError(
            f"SparkPost refused the message for some recipients ({'; '.join(unattributed or refusals)}) "
            f"without saying which of {', '.join(unknown)}, so they may or may not have been sent "
            f"(Message-ID {message.message_id}"
            + (f", transmission {provider_id}" if provider_id else "")
            + "). Check SparkPost's events before sending to them again.",
            code=status,
            enhanced_code=next(c for c, _ in errors if c in RECIPIENT_CODES),
            channel=self.name,
            rejected=rejected,
            reply="; ".join(refusals),
        )

    def _all_refused(self, rejected: Mapping[str, str], status: int) -> SendError:
        error = all_refused_error(rejected, channel=self.name, server="SparkPost")
        if error.code is None:
            error.code = status
            match = re.search(r"\((\d{4})\)", next(iter(rejected.values())))
            error.enhanced_code = match.group(1) if match else None
        return error

    # -- verify -------------------------------------------------------------------------------------

    async def _sending_domains(self) -> dict[str, str]:
        """The account's sending domains and their state: ``"verified"``, ``"unverified"``, ``"blocked"``."""
        answer = await self._request("GET", "/sending-domains")
        body = answer.json()
        if answer.status != 200:
            errors = errors_of(body, self._redact)
            raise self._error(answer, errors, situation="read", reading="listing sending domains")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise PermanentError(
                f"SparkPost's sending-domains answer has no list of results "
                f"({self._redact(answer.text) or 'empty body'}); check base_url.",
                code=answer.status,
                channel=self.name,
            )
        states: dict[str, str] = {}
        for entry in results:
            if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
                continue
            status: dict[str, Any] = entry["status"] if isinstance(entry.get("status"), dict) else {}
            if status.get("compliance_status") == "blocked":
                state = "blocked"
            elif status.get("ownership_verified") is True:
                state = "verified"
            else:
                state = "unverified"
            states[entry["domain"].strip().lower()] = state
        return states

    async def verified_domains(self) -> frozenset[str]:
        """The account's sending domains that are verified and not blocked, lower-cased.

        Raises:
            AuthenticationError: The key was refused, or lacks the "Sending Domains" permission.
            SendError: SparkPost could not be reached or answered with another error.
        """
        states = await self._sending_domains()
        return frozenset(domain for domain, state in states.items() if state == "verified")

    async def verify(self) -> None:
        """Prove the key works and that every declared domain is a verified sending domain; sends nothing.

        Lists the account's sending domains (``GET {base_url}/sending-domains``).

        Raises:
            AuthenticationError: The key was refused, or lacks the "Sending Domains: Read-only" permission.
            SenderNotAllowedError: A domain in ``domains`` is not on the account, not verified yet or
                blocked; sends from it would be refused (7001). The message names each one.
            SendError: SparkPost could not be reached or answered with another error.
        """
        states = await self._sending_domains()
        verified = {domain for domain, state in states.items() if state == "verified"}
        problems: list[str] = []
        for declared in self.domains:
            ascii_domain = idna_domain(declared.removeprefix("*.")).lower()
            if declared.startswith("*."):
                if not any(d.endswith("." + ascii_domain) for d in verified):
                    problems.append(f"{declared} (no verified subdomain of {ascii_domain} on the account)")
                continue
            state = states.get(ascii_domain)
            if state == "verified":
                continue
            reason = {
                None: "not a sending domain of this account",
                "unverified": "not verified yet: publish its DKIM or CNAME record and verify it",
                "blocked": "blocked by SparkPost compliance: contact SparkPost support",
            }[state]
            problems.append(f"{declared} ({reason})")
        if problems:
            logger.warning("sparkpost verify: declared domains that cannot send: %s", "; ".join(problems))
            raise SenderNotAllowedError(
                f"The SparkPost key works, but SparkPost would refuse mail from: {'; '.join(problems)}. "
                "Fix the domains under Sending Domains in the SparkPost app, or remove them from domains=.",
                enhanced_code="7001",
                channel=self.name,
            )
        logger.info("sparkpost verify: key accepted; verified domains: %s", ", ".join(self.domains))

    # -- lifecycle ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the channel's connection pool; no sends afterwards."""
        await self._http.aclose()

    def __repr__(self) -> str:
        where = self.region if self.region is not None else redact_url(self.base_url)
        return f"<SparkpostChannel {where} scope={self.scope}>"
