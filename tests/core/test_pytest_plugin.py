"""The pytest plugin, used from a user's project as they would: fixtures with no import or conftest."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_fixtures_are_available_without_any_import(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from sendchannel import Message, channel_from_url

        def test_outbox_sees_what_memory_url_code_sent(fake_channel, outbox):
            channel = channel_from_url("memory://")
            asyncio.run(channel.send(Message("app@example.com", ["bob@example.com"], subject="Hi")))
            assert ["Hi"] == [m.subject for m in outbox]
            assert channel is fake_channel

        def test_each_test_starts_with_an_empty_outbox(outbox):
            assert [] == outbox

        def test_virtual_clock(virtual_clock):
            asyncio.run(virtual_clock.sleep(3600))
            assert 3600 == virtual_clock.now()

        def test_a_failing_assertion_on_the_outbox_fails(outbox):
            assert ["Nope"] == [m.subject for m in outbox]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)


def test_plugin_is_registered_through_the_pytest11_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*fake_channel*", "*outbox*"])


def test_scripted_faults_from_a_user_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from sendchannel import Message, ThrottledError
        from sendchannel.testing import FakeChannel

        def test_user_code_handles_throttling():
            channel = FakeChannel()
            channel.throttle_next(30)
            with pytest.raises(ThrottledError):
                asyncio.run(channel.send(Message("a@example.com", ["b@example.com"])))
            assert 1 == len(channel.attempts)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
