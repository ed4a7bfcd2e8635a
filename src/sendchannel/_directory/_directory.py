"""ChannelDirectory: one channel per sender, for a team; credentials encrypted; broken ones noticed."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from sendchannel._address import try_parse_address
from sendchannel._channel import Channel, Closing
from sendchannel._clock import Clock, SystemClock
from sendchannel._database import parse_database_url
from sendchannel._directory import _overrides
from sendchannel._directory._entry import OK, DirectoryEntry, Record, State
from sendchannel._directory._layers import Failover, Guard
from sendchannel._directory._runtime import Runtime
from sendchannel._directory._secrets import SecretBox
from sendchannel._directory._store import MailboxTaken, SqlDirectoryStore
from sendchannel._message import Message
from sendchannel._registry import channel_from_url, redact_url
from sendchannel._result import SendResult
from sendchannel._retry import _DEFAULT_POLICY, RetryPolicy
from sendchannel._scope import CredentialScope, ScopeKind
from sendchannel._throttle import MemoryStore, SqliteStore, ThrottleStore
from sendchannel._throttle._throttler import check_max_wait
from sendchannel.errors import ConfigurationError, SenderNotAllowedError

__all__ = ["ChannelDirectory"]

logger = logging.getLogger("sendchannel.directory")

OnChange = Callable[[DirectoryEntry, DirectoryEntry], Awaitable[None] | None]

_RANK = {ScopeKind.PER_ADDRESS.value: 0, ScopeKind.PER_DOMAIN.value: 1, ScopeKind.UNRESTRICTED.value: 2}


def _identity(url: str, channel: Channel) -> str:
    """The credential's identity, with no secret in it: scheme, user and host, and what the scope covers.

    The same owner connecting the same identity again replaces the entry (a new password for the same
    mailbox, a new key for the same domains); entries of one identity share one throttle budget. A
    channel that names its credential (a ``credential_id`` attribute) is identified by that name.
    """
    parts = urllib.parse.urlsplit(redact_url(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{host}"
    credential = getattr(channel, "credential_id", None)
    if isinstance(credential, str) and credential:
        # The channel names its credential itself (never with a secret): that is the identity.
        return f"{parts.scheme.lower()}:{credential}"
    scope = channel.scope
    covered = ",".join(sorted(identity.lower() for identity in scope.identities)) or "*"
    return f"{parts.scheme.lower()}://{netloc.lower()}/{scope.kind.value}:{covered}"


class ChannelDirectory(Closing):
    """One channel per sender, for a team: connect credentials, route each message by its sender.

    Each person or team (an *owner*, the application's id for them) connects channels by URL; the
    directory verifies them, keeps their secrets encrypted in the database, and routes every message to
    the channel that may send as its sender: a per-address credential first, then a per-domain one, then
    an unrestricted one (the oldest connected among equals); a channel that is not ``shared`` serves its
    owner's messages only. It notices a credential the provider refuses (``needs_reconnect``, seen by
    every process within a second) and a provider's spent quota (``paused``), and tells the application
    through ``on_change``.

    Args:
        database: ``sqlite:///path`` (the default ``sqlite:///sendchannel.db``: the processes of one host),
            ``postgresql://...`` (a fleet; ``pip install "sendchannel[postgresql]"``) or ``memory://``
            (one process, for tests). The outbox may share it.
        secrets: One Fernet key or a list of them (the first encrypts, all decrypt); default: the
            comma-separated keys in ``SENDCHANNEL_SECRET_KEYS``.
        throttle_store: Where the entries' throttle budgets are kept (one budget per credential). Default:
            a :class:`~sendchannel.SqliteStore` on the same file for a SQLite database (shared by the
            host's processes), else a :class:`~sendchannel.MemoryStore` (this process only: give a fleet a
            :class:`~sendchannel.RedisStore`).
        retry: The retry policy of every send (None: no retries).
        max_wait: The longest a send waits for its throttle budget, in seconds.
        failover: Try the other fitting entries, in routing order, when the first fails transiently, is
            out of quota, or refuses its credentials.
        on_change: Called as ``on_change(entry, previous)`` (a function or a coroutine function) after each
            state change this process makes: an entry that needs reconnecting, is paused, is ok again.
        clock: The clock for state times, pauses, throttling and retries (the system clock by default).
        refresh_interval: How often, in seconds, this process checks the database for changes made by
            others (one small read).

    Raises:
        ConfigurationError: A database URL that is not one of those, a key that is not a Fernet key, or a
            bad option.

    Example::

        async with ChannelDirectory("sqlite:///mail.db") as directory:
            await directory.connect("alice", "office365://alice@contoso.com", password=alices_password)
            await directory.connect("sales", "sparkpost://@us?domains=contoso.com", shared=True,
                                    api_key=key)
            await directory.send(message, owner="alice")
    """

    def __init__(
        self,
        database: str = "sqlite:///sendchannel.db",
        *,
        secrets: str | bytes | Sequence[str | bytes] | None = None,
        throttle_store: ThrottleStore | None = None,
        retry: RetryPolicy | None = _DEFAULT_POLICY,
        max_wait: float = 60.0,
        failover: bool = False,
        on_change: OnChange | None = None,
        clock: Clock | None = None,
        refresh_interval: float = 0.5,
    ) -> None:
        url = parse_database_url(database)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        wait = check_max_wait(max_wait)  # the Throttler's own check: the entries' throttlers get it
        if not isinstance(refresh_interval, int | float) or not 0 < refresh_interval < math.inf:
            raise ConfigurationError(f"refresh_interval must be a positive number, got {refresh_interval!r}")
        if on_change is not None and not callable(on_change):
            raise ConfigurationError(f"on_change must be callable, got {type(on_change).__name__}")
        #: The database, shown without its password.
        self.database = url.display
        self.secrets = SecretBox(secrets)
        self.store = SqlDirectoryStore(url)
        self._owns_throttle_store = throttle_store is None
        if throttle_store is None:
            if url.kind == "sqlite" and url.path not in (None, ":memory:"):
                throttle_store = SqliteStore(url.path, timeout=url.timeout)
            else:
                throttle_store = MemoryStore()
        self.throttle_store: ThrottleStore = throttle_store
        self.retry = retry
        self.max_wait = wait
        self.failover = bool(failover)
        self.on_change = on_change
        self.clock: Clock = SystemClock() if clock is None else clock
        self._interval = float(refresh_interval)
        self._records: dict[str, Record] = {}
        self._generation: int | None = None
        self._checked = -math.inf
        self._routes: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._lock: asyncio.Lock | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<ChannelDirectory {self.database} entries={len(self._records)}>"

    async def __aenter__(self) -> ChannelDirectory:
        await self._refresh()
        return self

    # -- keeping the cache current -------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Reload the entries if anything changed since the last look (one small read when nothing did)."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            generation = await self.store.generation()
            if generation != self._generation:
                generation, records = await self.store.load()
                self._install(generation, records)
            self._checked = time.monotonic()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="sendchannel-directory-refresh")

    def _install(self, generation: int, records: list[Record]) -> None:
        self._records = {record.id: record for record in records}
        self._generation = generation
        self._routes.clear()
        for entry_id, runtime in list(self._runtimes.items()):
            record = self._records.get(entry_id)
            if record is None or record.secret_version != runtime.record.secret_version:
                # Disconnected, or credentials rewritten by another process: rebuild on next use.
                del self._runtimes[entry_id]
                runtime.retired = True
                if not runtime.in_flight:
                    self._close_later(runtime)
            else:
                runtime.record = record

    def _close_later(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(runtime.close())
        self._closing.add(task)  # a strong reference until it is done
        task.add_done_callback(self._closing.discard)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if time.monotonic() - self._checked < self._interval / 2:
                continue
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep polling; the next send reports a lasting failure
                logger.warning("directory: could not check %s for changes: %s", self.database, exc)

    async def _current(self) -> None:
        if time.monotonic() - self._checked >= self._interval:
            await self._refresh()

    # -- connecting ----------------------------------------------------------------------------------------

    async def connect(
        self, owner: str, url: str, *, shared: bool = False, verify: bool = True, **overrides: Any
    ) -> DirectoryEntry:
        """Connect a channel for ``owner``: build it from ``url``, verify it, store it (secrets encrypted).

        Args:
            owner: The application's id for the person or team.
            url: A channel URL, as :func:`~sendchannel.channel_from_url` takes.
            shared: Serve every owner's messages (allowed for a per-domain or unrestricted credential only).
            verify: Reach the provider and authenticate first (nothing is sent).
            overrides: Keyword arguments of the channel (``password=``, ``credentials=``...): kept encrypted.
                Values must be rebuildable in another process: text, numbers, lists, or a google-auth
                ``Credentials`` object.

        Returns:
            The new entry. Connecting the same credential (same scheme, mailbox, key's domains or host and
            user) again for the same owner replaces the old entry: that is how a person reconnects after a
            changed password, and it clears ``needs_reconnect``.

        Raises:
            ConfigurationError: ``shared=True`` for a per-address credential, or its mailbox is connected by
                another owner (the message quotes the scope's explanation); an override that cannot be
                stored; no secret key; a bad URL.
            SendError: Verification failed (an AuthenticationError names the likely cause); nothing stored.
        """
        if not isinstance(owner, str) or not owner.strip():
            raise ConfigurationError(
                f"owner must be a non-empty string (the application's id), got {owner!r}"
            )
        await self._current()
        self.secrets.check()
        stored_overrides = _overrides.encode(overrides)
        channel = channel_from_url(url, **overrides)
        try:
            scope = channel.scope
            display = redact_url(url)
            if shared and not scope.shareable:
                raise _not_shareable(display, scope, owner)  # noqa: TRY301 - the channel is closed below
            if verify:
                await channel.verify()
                stored_overrides = _overrides.encode(overrides)  # tokens refreshed while verifying
            blob = self.secrets.encrypt(json.dumps({"url": url, "overrides": stored_overrides}).encode())
            now = self.clock.now()
            record = Record(
                id=uuid.uuid4().hex,
                owner=owner,
                url=display,
                scheme=url.split("://", 1)[0].lower(),
                identity=_identity(url, channel),
                scope_kind=scope.kind.value,
                scope_identities=tuple(scope.identities),
                scope_provider=scope.provider,
                shared=bool(shared),
                state=OK,
                reason=None,
                since=now,
                paused_until=None,
                sequence=0,
                secret=blob,
            )
            try:
                stored, replaced = await self.store.connect(record)
            except MailboxTaken as taken:
                raise ConfigurationError(
                    f"{display} cannot be connected for {owner}: {taken.mailbox} is already connected by "
                    f"{taken.other.owner} (entry {taken.other.id}). {scope.explain(taken.mailbox)} "
                    f"If the mailbox now belongs to {owner}, disconnect {taken.other.owner}'s entry first."
                ) from None
        except BaseException:
            await channel.aclose()
            raise
        self._records[stored.id] = stored
        self._routes.clear()
        self._runtimes[stored.id] = Runtime(self, stored, channel, url, dict(overrides))
        logger.info("directory: %s connected %s as entry %s", owner, display, stored.id)
        if replaced is not None:
            self._records.pop(replaced.id, None)
            old = self._runtimes.pop(replaced.id, None)
            if old is not None:
                old.retired = True
                if not old.in_flight:
                    await old.close()
            if replaced.state != OK:
                await self._notify(stored.entry(), replaced.entry())
        return stored.entry()

    async def disconnect(self, entry_id: str) -> bool:
        """Remove an entry and close its channel; False when there was no such entry."""
        await self._current()
        removed = await self.store.delete(entry_id)
        self._records.pop(entry_id, None)
        self._routes.clear()
        runtime = self._runtimes.pop(entry_id, None)
        if runtime is not None:
            runtime.retired = True
            if not runtime.in_flight:
                await runtime.close()
        if removed is not None:
            logger.info("directory: disconnected entry %s (%s of %s)", entry_id, removed.url, removed.owner)
        return removed is not None

    async def entries(self, owner: str | None = None) -> list[DirectoryEntry]:
        """Every entry (of ``owner``, when given), oldest connected first, read from the database."""
        await self._refresh()
        return [
            record.entry()
            for record in sorted(self._records.values(), key=lambda r: r.sequence)
            if owner is None or record.owner == owner
        ]

    async def rotate_secrets(self) -> int:
        """Re-encrypt every entry's secrets with the first key; returns how many entries.

        Run it after putting a new key first in ``SENDCHANNEL_SECRET_KEYS``; then the old key can go.
        """
        await self._current()
        count = await self.store.rotate(self.secrets.rotate)
        await self._refresh()
        return count

    # -- routing -------------------------------------------------------------------------------------------

    def _loaded(self) -> None:
        if self._generation is None:
            raise ConfigurationError(
                "The directory has not read its entries yet: use it as `async with ChannelDirectory(...) as "
                "directory:` (or await directory.entries() first)."
            )

    def _candidates(self, sender: str, owner: str | None) -> tuple[str, ...]:
        key = (sender, owner)
        found = self._routes.get(key)
        if found is None:
            fitting = [
                record
                for record in self._records.values()
                if (record.shared or record.owner == owner) and record.scope.allows(sender)
            ]
            fitting.sort(key=lambda r: (_RANK[r.scope_kind], r.sequence))
            found = tuple(record.id for record in fitting)
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[key] = found
        if not found:
            raise self._no_route(sender, owner)
        return found

    def _no_route(self, sender: str, owner: str | None) -> SenderNotAllowedError:
        parsed = try_parse_address(sender)
        if parsed is None:
            return SenderNotAllowedError(
                f"{sender!r} is not an e-mail address; write 'bob@example.com' or 'Bob <bob@example.com>'."
            )
        address, domain = parsed.addr_spec, parsed.domain.lower()
        for_whom = f"owner {owner!r}" if owner is not None else "no owner (shared entries only)"
        related = [r for r in sorted(self._records.values(), key=lambda r: r.sequence) if _near(r, domain)]
        if not related:
            return SenderNotAllowedError(
                f"Nothing in the directory may send as {address} for {for_whom}: no channel is connected for "
                f"{domain}. Connect one with directory.connect(owner, url) (shared=True for a team's "
                "per-domain key)."
            )
        reasons = []
        for record in related:
            scope = record.scope
            if not scope.allows(sender):
                why = scope.explain(sender)
            else:
                why = f"it is {record.owner}'s and not shared, so it serves {record.owner}'s messages only"
            reasons.append(f"{record.url} (entry {record.id}, {record.owner}, {scope}): {why}")
        return SenderNotAllowedError(
            f"Nothing in the directory may send as {address} for {for_whom}. Connected for {domain}: "
            + " ".join(f"[{n}] {text}" for n, text in enumerate(reasons, 1))
        )

    def route(self, sender: str, *, owner: str | None = None) -> DirectoryEntry:
        """The entry that sends ``sender``'s messages for ``owner`` (health is not considered).

        It answers from this process's copy of the entries, kept current within ``refresh_interval``.

        Raises:
            SenderNotAllowedError: No entry fits; the message lists what is connected for the sender's
                domain and why each does not fit.
            ConfigurationError: The directory was not opened (``async with``).
        """
        self._loaded()
        return self._records[self._candidates(sender, owner)[0]].entry()

    def explain(self, sender: str, *, owner: str | None = None) -> str:
        """One or two sentences saying which entry sends as ``sender`` for ``owner``, and why."""
        self._loaded()
        try:
            ids = self._candidates(sender, owner)
        except SenderNotAllowedError as exc:
            return str(exc)
        first = self._records[ids[0]]
        kind = {0: "a per-address entry", 1: "a per-domain entry", 2: "an unrestricted entry"}[
            _RANK[first.scope_kind]
        ]
        text = (
            f"{first.url} (entry {first.id}, {first.owner}{', shared' if first.shared else ''}) sends as "
            f"{sender}: it is {kind}, {first.scope.explain(sender)}"
        )
        if len(ids) > 1:
            others = ", ".join(self._records[i].url for i in ids[1:])
            text += f" Also fitting, in order{' (tried on failure)' if self.failover else ''}: {others}."
        if first.state != OK:
            text += f" It is {first.state}: {first.reason}"
        return text

    # -- sending -------------------------------------------------------------------------------------------

    def _runtime(self, entry_id: str) -> Runtime:
        runtime = self._runtimes.get(entry_id)
        if runtime is None:
            record = self._records[entry_id]
            stored = json.loads(self.secrets.decrypt(record.secret))
            overrides = _overrides.decode(stored["overrides"])
            channel = channel_from_url(stored["url"], **overrides)
            runtime = self._runtimes[entry_id] = Runtime(self, record, channel, stored["url"], overrides)
        return runtime

    async def channel_for(
        self,
        message: Message,
        *,
        owner: str | None = None,
        max_wait: float | None = None,
        retry: bool = True,
    ) -> Channel:
        """The channel that sends ``message`` exactly as :meth:`send` would.

        Routed by the message's sender for ``owner``, with the health checks (an entry that needs
        reconnecting or is paused answers at once) and health changes recorded when it raises, and
        failover when the directory has it. For the outbox and other schedulers.

        Args:
            message: The message (its sender picks the entry).
            owner: Whose message it is.
            max_wait: The longest the entry's throttler waits for its budget (None: the directory's
                ``max_wait``); 0 makes a spent budget raise ``QuotaExceededError`` at once, with
                ``retry_after``.
            retry: Wrap it in the directory's retry policy (False: one attempt).

        Returns:
            A Channel with ``credential_id`` (its throttle budget key: one per credential) and
            ``idempotent`` (passed through from the provider). The directory owns it: do not close it.

        Raises:
            SenderNotAllowedError: No entry fits the sender.
            ConfigurationError: ``max_wait`` is not a number of seconds (0 or more), or an entry's stored
                secrets cannot be decrypted with the keys given.
        """
        wait = self.max_wait if max_wait is None else check_max_wait(max_wait)
        await self._current()
        ids = self._candidates(message.sender, owner)
        if not self.failover or len(ids) == 1:
            return self._runtime(ids[0]).guard(wait, retry)
        guards: list[Guard] = [self._runtime(entry_id).guard(wait, retry) for entry_id in ids]
        return Failover(guards, self.clock)

    async def send(self, message: Message, *, owner: str | None = None) -> SendResult:
        """Send ``message`` through the entry that may send as its sender for ``owner``.

        Raises:
            SenderNotAllowedError: No entry fits (the message lists what is connected and why).
            AuthenticationError: The entry's credentials were refused (now or earlier, by any process:
                then nothing is sent and the message names the owner who must reconnect).
            QuotaExceededError: The entry's quota is spent (paused until ``resets_at``), or its budget
                is further than ``max_wait`` away.
            SendError: What the provider answered, classified.
        """
        channel = await self.channel_for(message, owner=owner)
        return await channel.send(message)

    # -- health --------------------------------------------------------------------------------------------

    async def _change_state(
        self, runtime: Runtime, state: State, reason: str | None, paused_until: float | None
    ) -> None:
        record = runtime.record
        try:
            changed = await self.store.set_state(record.id, state, reason, paused_until, self.clock.now())
        except Exception as exc:  # noqa: BLE001 - the provider's error is what the caller must see
            logger.warning("directory: could not record entry %s as %s: %s", record.id, state, exc)
            runtime.record = attrs.evolve(record, state=state, reason=reason, paused_until=paused_until)
            return
        if changed is None:
            return
        previous, current = changed
        runtime.record = attrs.evolve(current, secret=runtime.record.secret,
                                      secret_version=runtime.record.secret_version)
        self._records[current.id] = runtime.record
        logger.warning(
            "directory: entry %s (%s of %s) is now %s%s",
            current.id, current.url, current.owner, state, f": {reason}" if reason else "",
        )
        await self._notify(current.entry(), previous.entry())

    async def _notify(self, entry: DirectoryEntry, previous: DirectoryEntry) -> None:
        if self.on_change is None:
            return
        try:
            outcome = self.on_change(entry, previous)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("directory: on_change raised for entry %s", entry.id)

    # -- closing -------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop watching the database, close every entry's channel and the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            await runtime.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        try:
            await self.store.aclose()
        finally:
            if self._owns_throttle_store:
                await self.throttle_store.aclose()


def _not_shareable(display: str, scope: CredentialScope, owner: str) -> ConfigurationError:
    mailbox = scope.identities[0] if scope.identities else "this mailbox"
    return ConfigurationError(
        f"{display} cannot be connected with shared=True: {scope.explain(mailbox)} Connect it with "
        f"shared=False for {owner}, and give the team a per-domain channel to share."
    )


def _near(record: Record, domain: str) -> bool:
    """Whether an entry is "connected for" ``domain``: it names the domain, or covers any sender."""
    if record.scope_kind == ScopeKind.UNRESTRICTED.value:
        return True
    for identity in record.scope_identities:
        lowered = identity.lower()
        name = lowered.rpartition("@")[2]
        if name == domain or (name.startswith("*.") and domain.endswith(name[1:])):
            return True
    return False
