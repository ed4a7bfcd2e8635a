"""Message.envelope_sender: the MAIL FROM address, apart from the From address the recipients see."""

from __future__ import annotations

import pytest

from sendchannel import InvalidMessageError, Message


def test_without_an_envelope_sender_mail_from_is_the_from_address() -> None:
    message = Message("News <news@example.com>", ["bob@example.net"])
    assert (None, "news@example.com") == (message.envelope_sender, message.envelope_address)


def test_the_envelope_sender_is_kept_as_a_bare_normalised_address() -> None:
    """MAIL FROM has no room for a display name; an internationalised domain takes its IDNA form."""
    message = Message("news@example.com", ["bob@example.net"], envelope_sender="Bounces <b+1@bücher.example>")
    assert ("b+1@xn--bcher-kva.example", "b+1@xn--bcher-kva.example") == (
        message.envelope_sender,
        message.envelope_address,
    )


def test_the_envelope_sender_is_not_in_the_headers_and_survives_evolve() -> None:
    message = Message("news@example.com", ["bob@example.net"], envelope_sender="bounce@example.org")
    assert b"bounce@example.org" not in message.as_bytes()
    assert "bounce@example.org" == message.evolve(subject="again").envelope_sender
    assert message != message.evolve(envelope_sender=None)


@pytest.mark.parametrize("bad", ["not an address", "a@b@c.example", "bounce\n@example.org", ""])
def test_a_malformed_envelope_sender_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidMessageError, match=r"^envelope_sender: "):
        Message("news@example.com", ["bob@example.net"], envelope_sender=bad)


def test_an_address_without_a_domain_is_still_refused_outside_django() -> None:
    """Local mailboxes ("webmaster") are Django's rule, taken only through its backend."""
    with pytest.raises(InvalidMessageError, match=r"^sender: "):
        Message("webmaster", ["bob@example.net"])
    with pytest.raises(InvalidMessageError, match=r"^envelope_sender: "):
        Message("news@example.com", ["bob@example.net"], envelope_sender="bounces")
