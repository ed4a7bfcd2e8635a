"""Tests of SmtpChannel and Office365Channel against real SMTP servers on 127.0.0.1."""
