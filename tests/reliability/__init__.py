"""The reliability and security suite: faults, bad input, secrets, transport security, load and crashes."""
