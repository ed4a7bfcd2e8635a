"""The durable_outbox fixture, used from a user's project as they would: no import, no conftest."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_durable_outbox_queues_and_sends_through_the_fake_channel(pytester: pytest.Pytester) -> None:
    """A user's test queues through durable_outbox; after run() the outbox fixture lists what went out."""
    pytester.makepyfile(
        """
        import asyncio, datetime
        from sendchannel import Message

        def test_queue_now_and_later(durable_outbox, outbox):
            async def main():
                later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
                await durable_outbox.put(Message("app@example.com", ["bob@example.com"], subject="Now"))
                await durable_outbox.put(
                    Message("app@example.com", ["bob@example.com"], subject="Later"), send_at=later
                )
                await durable_outbox.run(until_empty=True)
                return await durable_outbox.counts()
            counts = asyncio.run(main())
            assert ["Now"] == [m.subject for m in outbox]
            assert (1, 1) == (counts["sent"], counts["queued"])

        def test_each_test_gets_an_empty_one(durable_outbox):
            assert 0 == sum(asyncio.run(durable_outbox.counts()).values())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
