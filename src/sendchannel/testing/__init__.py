"""Test support: a fake channel, a virtual clock, a pytest plugin and a conformance kit.

In a user's test suite::

    from sendchannel.testing import FakeChannel

    async def test_welcome_mail():
        channel = FakeChannel()
        await signup("bob@example.com", mailer=channel)
        assert ["bob@example.com"] == list(channel.outbox[0].to)

With pytest, the ``fake_channel`` and ``outbox`` fixtures are there without any import (the plugin is
registered through the ``pytest11`` entry point); ``fake_channel`` is also what ``memory://`` URLs give.
"""

from sendchannel._retry import is_testing, set_testing
from sendchannel.testing._clock import VirtualClock
from sendchannel.testing._fake import FakeChannel, memory_channel

__all__ = ["FakeChannel", "VirtualClock", "is_testing", "memory_channel", "set_testing"]
