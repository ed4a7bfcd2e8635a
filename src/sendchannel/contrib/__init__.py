"""Integrations with frameworks (``sendchannel.contrib.django``)."""
