"""Password hashes (argon2id), the secure password generator, app passwords, the strength rule."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# No 0/O, 1/l/I: a generated password is read off a screen and typed into a phone.
GENERATED_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
GENERATED_LENGTH = 24  # log2(57) * 24 ≈ 140 bits

# An app password is five groups of five: "Ab3de-fGh4k-...". The first group finds the
# credential (the lookup); the other four, ≈ 117 bits, are the secret.
APP_PASSWORD_GROUPS = 5
APP_PASSWORD_GROUP_LENGTH = 5
_APP_PASSWORD = re.compile(f"[{GENERATED_ALPHABET}]{{{APP_PASSWORD_GROUPS * APP_PASSWORD_GROUP_LENGTH}}}")

MIN_PASSWORD_LENGTH = 10


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A password from the operating system's cryptographic random source."""
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))


def generate_app_password() -> str:
    groups = (generate_password(APP_PASSWORD_GROUP_LENGTH) for _ in range(APP_PASSWORD_GROUPS))
    return "-".join(groups)


@dataclass(frozen=True, slots=True)
class AppPasswordText:
    lookup: str  # the first group
    secret: str  # the whole password without separators: what is hashed


def parse_app_password(password: str) -> AppPasswordText | None:
    """The parts of something typed as an app password (dashes and spaces are ignored);
    None when it cannot be one."""
    compact = password.replace("-", "").replace(" ", "")
    if len(password) > 64 or not _APP_PASSWORD.fullmatch(compact):
        return None
    return AppPasswordText(compact[:APP_PASSWORD_GROUP_LENGTH], compact)


class WeakPassword(ValueError):
    """A new password breaks the strength rule; the message is one sentence for its owner."""


@cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("postfach.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_strength(password: str) -> None:
    """The minimum rule for a new password (issue 6 point 4): long enough, not a common one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip() or "\n" in password:
        raise WeakPassword("the password must not start or end with white space")
    folded = password.lower()
    if folded in _common_passwords() or folded.replace(" ", "") in _common_passwords():
        raise WeakPassword("the password is one of the most common passwords, which are tried first; choose another")
    if len(set(folded)) < 4:
        raise WeakPassword("the password repeats too few different characters; choose another")


class Passwords:
    """Hashes and checks passwords with argon2id; parameters come from the configuration."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2-cffi's defaults follow RFC 9106

    @classmethod
    def configured(cls, time_cost: int, memory_kib: int, parallelism: int) -> Passwords:
        """argon2id with the configuration's parameters ([auth] argon2_*)."""
        return cls(PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
