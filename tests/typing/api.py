"""The public API as a user's type checker sees it.

This file is never run: ``.ci/run`` checks it with ``mypy --strict``, so a change that loses a type, widens a
return type to ``Any`` or breaks a documented call fails CI. ``assert_type`` pins the exact types.
"""

from __future__ import annotations

from typing import assert_type

import sendchannel
from sendchannel import (
    Attachment,
    BulkReport,
    Channel,
    CredentialScope,
    FailoverChannel,
    Limits,
    MemoryStore,
    Message,
    Office365Channel,
    Office365GraphChannel,
    Outcome,
    Rate,
    Retrying,
    RetryPolicy,
    ScopeKind,
    SendResult,
    SmtpChannel,
    SqliteStore,
    Throttler,
    ThrottleStore,
    channel_from_url,
    pipeline,
    send_all,
)
from sendchannel.errors import QuotaExceededError, SendError, ThrottledError
from sendchannel.testing import FakeChannel, VirtualClock


async def sending() -> None:
    message = Message(
        "Alice <alice@example.com>",
        ["bob@example.com"],
        subject="Report",
        text="Attached.",
        attachments=[Attachment("report.pdf", b"%PDF", "application/pdf")],
    )
    assert_type(message.recipients, tuple[str, ...])
    assert_type(message.as_bytes(), bytes)
    bounced = message.evolve(envelope_sender="bounces+bob=example.com@example.com")
    assert_type(bounced.envelope_sender, str | None)
    assert_type(bounced.envelope_address, str)

    channel: Channel = SmtpChannel("smtp.example.com", 587, username="alice", password="secret")
    async with pipeline(channel, store=SqliteStore("quota.db")) as stack:
        result = await stack.send(message)
        assert_type(result, SendResult)
        assert_type(result.accepted, tuple[str, ...])
        assert_type(result.attempts, int)

    report = await send_all(FakeChannel(), [message], concurrency=4, progress=lambda o: None)
    assert_type(report, BulkReport)
    for outcome in report.outcomes:
        assert_type(outcome, Outcome)
        assert_type(outcome.result, SendResult | None)


def layers() -> None:
    office = Office365Channel("alice@contoso.com", password="secret")
    throttled = Throttler(office, store=MemoryStore(), max_wait=30.0)
    retried = Retrying(throttled, RetryPolicy(attempts=3))
    assert_type(retried, Retrying)
    failover = FailoverChannel([office, FakeChannel()])
    assert_type(failover.scope, CredentialScope)
    store: ThrottleStore = MemoryStore()
    del store
    limits = Limits(rates=(Rate.per_minute(30), Rate.per_day(10_000, unit="recipients")))
    assert_type(limits.evolve(max_recipients=100), Limits)
    assert_type(office.scope.kind, ScopeKind)
    assert_type(channel_from_url("memory://"), Channel)
    assert_type(sendchannel.schemes(), list[str])
    assert_type(VirtualClock().now(), float)


async def graph() -> None:
    tokens = Office365GraphChannel.token_from_client_credentials(
        tenant_id="contoso.onmicrosoft.com", client_id="app", client_secret="secret"
    )
    app = Office365GraphChannel(domains=["contoso.com"], token_provider=tokens)
    assert_type(app.scope.shareable, bool)
    assert_type(app.delegated, bool)
    user = Office365GraphChannel(
        "alice@contoso.com",
        token_provider=Office365GraphChannel.token_from_device_code(client_id="app", cache_path="cache.json"),
    )
    async with user:
        await user.verify()
        assert_type(await user.send(Message("alice@contoso.com", ["b@example.com"])), SendResult)


def errors(error: SendError) -> None:
    assert_type(error.transient, bool)
    assert_type(error.retry_after, float | None)
    assert_type(error.code, int | None)
    if isinstance(error, QuotaExceededError):
        assert_type(error.resets_at, float | None)
    if isinstance(error, ThrottledError):
        assert_type(error.channel, str | None)


async def directory() -> None:
    import datetime
    from typing import Literal

    from sendchannel import ChannelDirectory, DirectoryEntry

    def told(entry: DirectoryEntry, previous: DirectoryEntry) -> None:
        assert_type(entry.state, Literal["ok", "needs_reconnect", "paused"])

    async with ChannelDirectory("sqlite:///mail.db", failover=True, on_change=told) as team:
        entry = await team.connect("alice", "office365://alice@contoso.com", password="...")
        assert_type(entry, DirectoryEntry)
        assert_type(entry.since, datetime.datetime)
        assert_type(team.route("alice@contoso.com", owner="alice"), DirectoryEntry)
        assert_type(await team.entries(owner="alice"), list[DirectoryEntry])
        message = Message("alice@contoso.com", ["b@example.net"], subject="s", text="t")
        assert_type(await team.send(message, owner="alice"), SendResult)
        assert_type(await team.channel_for(message, max_wait=0, retry=False), Channel)
        assert_type(await team.disconnect(entry.id), bool)
        assert_type(await team.rotate_secrets(), int)


async def outbox() -> None:
    import datetime

    from sendchannel import Outbox, OutboxItem

    async with Outbox("sqlite:///mail.db", channel=FakeChannel(), lease=60.0) as queue:
        message = Message("alice@contoso.com", ["b@example.net"], subject="s", text="t")
        now = datetime.datetime.now(datetime.UTC)
        item = await queue.put(message, owner="alice", send_at=now, priority=1)
        assert_type(item, OutboxItem)
        assert_type(item.id, int)
        assert_type(item.next_attempt_at, datetime.datetime)
        assert_type(item.result, SendResult | None)
        assert_type(await queue.put_many([message]), list[OutboxItem])
        assert_type(await queue.get(item.id), OutboxItem | None)
        assert_type(await queue.counts(), dict[str, int])
        async for each in queue.items(status="unknown", owner="alice"):
            assert_type(each.error, str | None)
        assert_type(await queue.cancel(item.id), bool)
        assert_type(await queue.purge(datetime.timedelta(days=30)), int)
        await queue.run(concurrency=4, until_empty=True)
        queue.stop()
    throttler = Throttler(FakeChannel())
    assert_type(await throttler.next_permit(), float)
