"""Secrets at rest: Fernet keys (cryptography), several for rotation; the first encrypts, all decrypt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sendchannel.errors import ConfigurationError

__all__ = ["KEYS_ENV", "SecretBox"]

#: The environment variable the keys come from when none are given: comma-separated Fernet keys.
KEYS_ENV = "SENDCHANNEL_SECRET_KEYS"


def _fernet_module() -> Any:
    try:
        import cryptography.fernet
    except ImportError as exc:
        raise ConfigurationError(
            "The channel directory encrypts its secrets with the cryptography package, which is not "
            'installed; install it with: pip install "sendchannel[directory]"'
        ) from exc
    return cryptography.fernet


class SecretBox:
    """Encrypts and decrypts the directory's secrets; the keys never appear in a repr or a message.

    Args:
        keys: One Fernet key or a list of them (str or bytes), the first used to encrypt; None reads
            ``SENDCHANNEL_SECRET_KEYS`` (comma-separated) when a secret is first needed.

    Raises:
        ConfigurationError: A key that is not a Fernet key (raised at once when keys are given, else when
            a secret is first needed), no key at all, or cryptography not installed.
    """

    def __init__(self, keys: str | bytes | Sequence[str | bytes] | None = None) -> None:
        self._given = keys
        self._fernet: Any = None
        if keys is not None:
            self._fernet = self._build(keys, origin="secrets=")

    def __repr__(self) -> str:
        return "<SecretBox keys=***>"

    def _build(self, keys: str | bytes | Sequence[str | bytes], *, origin: str) -> Any:
        fernet = _fernet_module()
        listed = [keys] if isinstance(keys, str | bytes) else list(keys)
        listed = [key.strip() if isinstance(key, str | bytes) else key for key in listed]
        listed = [key for key in listed if key]
        if not listed:
            raise ConfigurationError(
                f"No secret key in {origin}: the directory needs at least one Fernet key to encrypt "
                "credentials. Make one with: python -c \"from cryptography.fernet import Fernet; "
                f'print(Fernet.generate_key().decode())", and set {KEYS_ENV} to it (or pass secrets=).'
            )
        built = []
        for number, key in enumerate(listed, 1):
            if not isinstance(key, str | bytes):
                raise ConfigurationError(
                    f"Secret key {number} in {origin} is a {type(key).__name__}, not a str"
                )
            try:
                built.append(fernet.Fernet(key))
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"Secret key {number} in {origin} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes); make one with Fernet.generate_key()."
                ) from None
        return fernet.MultiFernet(built)

    def _keys(self) -> Any:
        if self._fernet is None:
            value = os.environ.get(KEYS_ENV, "")
            self._fernet = self._build(value.split(","), origin=f"${KEYS_ENV}")
        return self._fernet

    def check(self) -> None:
        """Raise the ConfigurationError now if no usable key can be found."""
        self._keys()

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt with the first key."""
        token: bytes = self._keys().encrypt(plaintext)
        return token

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt with whichever key encrypted it.

        Raises:
            ConfigurationError: No key decrypts it (the key that encrypted it was dropped).
        """
        fernet = _fernet_module()
        try:
            plaintext: bytes = self._keys().decrypt(bytes(token))
        except fernet.InvalidToken:
            raise ConfigurationError(
                "None of the secret keys decrypts this directory entry: the key it was encrypted with is "
                f"missing. Put that key back in {KEYS_ENV} (after the new one), or connect the channel again."
            ) from None
        return plaintext

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the first key (the same as decrypt then encrypt)."""
        fernet = _fernet_module()
        try:
            rotated: bytes = self._keys().rotate(bytes(token))
        except fernet.InvalidToken:
            raise ConfigurationError(
                f"None of the secret keys decrypts a directory entry; put its key back in {KEYS_ENV}."
            ) from None
        return rotated
