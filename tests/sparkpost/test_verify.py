"""verify() and verified_domains(): the key works, and every declared domain is a verified sending domain."""

from __future__ import annotations

import logging

import pytest

from sendchannel import (
    AuthenticationError,
    PermanentError,
    SenderNotAllowedError,
    SparkpostChannel,
    TransientError,
)
from tests.sparkpost.server import API_KEY, Answer, SparkpostServer, domain_object, error_body


def channel_for(server: SparkpostServer, *domains: str, key: str = API_KEY) -> SparkpostChannel:
    return SparkpostChannel(key, domains=list(domains), base_url=server.url)


async def test_verify_lists_the_sending_domains_with_the_key_and_sends_nothing(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    await channel.verify()

    [request] = server.received
    assert ("GET", "/api/v1/sending-domains", API_KEY) == (
        request.method,
        request.path,
        request.headers["authorization"],
    )
    assert [] == server.delivered


async def test_verified_domains_are_those_verified_and_not_blocked(server: SparkpostServer) -> None:
    server.sending_domains[:] = [
        domain_object("Example.com"),
        domain_object("pending.example", verified=False),
        domain_object("blocked.example", blocked=True),
        domain_object("mail.example.org"),
    ]
    async with channel_for(server, "example.com") as channel:
        assert frozenset({"example.com", "mail.example.org"}) == await channel.verified_domains()


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ("missing.example", "missing.example (not a sending domain of this account)"),
        ("pending.example", "pending.example (not verified yet"),
        ("blocked.example", "blocked.example (blocked by SparkPost compliance"),
        ("*.example.net", "*.example.net (no verified subdomain of example.net"),
    ],
)
async def test_a_declared_domain_that_cannot_send_fails_verify_naming_it(
    server: SparkpostServer, declared: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.sending_domains += [
        domain_object("pending.example", verified=False),
        domain_object("blocked.example", blocked=True),
    ]
    async with channel_for(server, "example.com", declared) as channel:
        with (
            caplog.at_level(logging.WARNING, logger="sendchannel"),
            pytest.raises(SenderNotAllowedError) as caught,
        ):
            await channel.verify()

    assert reason in str(caught.value)
    assert "example.com (" not in str(caught.value)
    assert any(reason in record.getMessage() for record in caplog.records)


async def test_a_wildcard_domain_is_satisfied_by_a_verified_subdomain(server: SparkpostServer) -> None:
    server.sending_domains.append(domain_object("news.example.net"))

    async with channel_for(server, "example.com", "*.example.net") as channel:
        await channel.verify()


async def test_an_international_domain_is_matched_in_its_ascii_form(server: SparkpostServer) -> None:
    server.sending_domains.append(domain_object("xn--bcher-kva.example"))

    async with channel_for(server, "bücher.example") as channel:
        await channel.verify()


async def test_verify_with_an_unknown_key_is_an_authentication_error(server: SparkpostServer) -> None:
    async with channel_for(server, "example.com", key="wrong-key") as channel:
        with pytest.raises(AuthenticationError, match="did not accept the API key") as caught:
            await channel.verify()

    assert 401 == caught.value.code


async def test_verify_with_a_key_that_cannot_read_domains_names_the_permission(
    server: SparkpostServer,
) -> None:
    server.keys[API_KEY] = {"transmissions"}

    async with channel_for(server, "example.com") as channel:
        with pytest.raises(AuthenticationError, match="'Sending Domains: Read-only' permission"):
            await channel.verify()


async def test_a_server_error_while_verifying_is_transient(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(500, error_body("Failed to read from database", "1501")))

    with pytest.raises(TransientError) as caught:
        await channel.verify()

    assert type(caught.value) is TransientError


async def test_an_answer_without_a_list_of_domains_is_a_permanent_error(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.script(Answer(200, {"results": {"domain": "example.com"}}))

    with pytest.raises(PermanentError, match="no list of results"):
        await channel.verify()


async def test_malformed_domain_entries_are_skipped(
    server: SparkpostServer, channel: SparkpostChannel
) -> None:
    server.sending_domains[:0] = [{"status": {}}, "example.com", {"domain": 7}]  # type: ignore[list-item]

    assert frozenset({"example.com"}) == await channel.verified_domains()
