"""Password hashes (argon2id) and the secure password generator."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# No 0/O, 1/l/I: a generated password is read off a screen and typed into a phone.
GENERATED_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
GENERATED_LENGTH = 24  # log2(57) * 24 ≈ 140 bits


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A password from the operating system's cryptographic random source."""
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))


class Passwords:
    """Hashes and checks passwords with argon2id; parameters come from the configuration."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2-cffi's defaults follow RFC 9106

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
