"""Checks a login for every door (IMAP, POP3, SMTP AUTH, web) against the store.

Nothing is cached: a mailbox added or removed with the CLI, in another
process, is seen at the next login.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

from postfach.address import AddressError, normalize_address
from postfach.auth.passwords import Passwords, generate_password
from postfach.model import Account
from postfach.store.base import Store


class FailureReason(Enum):
    MALFORMED_USER = "malformed user name"
    UNKNOWN_USER = "unknown user"
    DISABLED = "account disabled"
    WRONG_PASSWORD = "wrong password"


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a login failed: for the log and the audit, never for the client."""

    reason: FailureReason


class Authenticator:
    def __init__(self, store: Store, passwords: Passwords) -> None:
        self._store = store
        self._passwords = passwords
        self._unknown_user_hash = passwords.hash(generate_password())

    async def authenticate(self, user: str, password: str) -> Account | AuthFailure:
        try:
            address = normalize_address(user)
        except AddressError:
            return AuthFailure(FailureReason.MALFORMED_USER)
        account = await self._store.get_account(address)
        # argon2 takes tens of milliseconds: off the event loop. An unknown user costs the same
        # time as a known one, so the answer's timing does not tell which addresses exist.
        password_hash = account.password_hash if account else self._unknown_user_hash
        matches = await asyncio.to_thread(self._passwords.verify, password_hash, password)
        if account is None:
            return AuthFailure(FailureReason.UNKNOWN_USER)
        if not matches:
            return AuthFailure(FailureReason.WRONG_PASSWORD)
        if not account.enabled:
            return AuthFailure(FailureReason.DISABLED)
        if self._passwords.needs_rehash(account.password_hash):
            new_hash = await asyncio.to_thread(self._passwords.hash, password)
            await self._store.set_password_hash(address, new_hash)
        return account
