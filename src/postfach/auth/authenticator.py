"""Checks a login for every door (IMAP, POP3, SMTP AUTH, web) against the store.

The one place a password is checked, so the quarantine, the throttling of
source addresses and the audit (postfach.auth.quarantine) hold for every door.
Nothing is cached: a mailbox added or removed with the CLI, in another
process, is seen at the next login; quarantine state is read from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from postfach.address import AddressError, normalize_address
from postfach.auth.passwords import Passwords, generate_password, parse_app_password
from postfach.auth.quarantine import LoginPolicy, password_mac, source_of
from postfach.model import Account, AppPassword, LoginAttempt
from postfach.store.base import Store

log = logging.getLogger(__name__)

MAX_AUDITED_USER = 320  # RFC 5321 §4.5.3.1: no address is longer
PRUNE_EVERY = 60.0  # seconds between forgetting failures that count for nothing any more


class FailureReason(Enum):
    MALFORMED_USER = "malformed user name"
    UNKNOWN_USER = "unknown user"
    DISABLED = "account disabled"
    WRONG_PASSWORD = "wrong password"
    QUARANTINED = "in quarantine after wrong passwords"
    BANNED = "source address banned after failing for many accounts"


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a login failed: for the log and the audit, never for the client."""

    reason: FailureReason
    detail: str = field(default="", compare=False)  # e.g. "quarantine started", for the audit

    def __str__(self) -> str:
        return f"{self.reason.value} ({self.detail})" if self.detail else self.reason.value


@dataclass(frozen=True, slots=True)
class _Credential:
    name: str  # "" the account's password, else the app password's name
    app_password: AppPassword | None = None


class Authenticator:
    def __init__(
        self,
        store: Store,
        passwords: Passwords,
        policy: LoginPolicy | None = None,
        secret: bytes | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`secret` keys the MACs of wrong passwords; the server passes the one in its data
        directory, so that every process and every restart agree (load_login_secret)."""
        self._store = store
        self._passwords = passwords
        self._policy = policy or LoginPolicy()
        self._secret = secret or generate_password(32).encode()
        self._clock = clock
        self._sleep = sleep
        self._unknown_user_hash = passwords.hash(generate_password())
        self._pruned_at = 0.0

    @property
    def policy(self) -> LoginPolicy:
        return self._policy

    async def authenticate(self, user: str, password: str, *, source: str, protocol: str) -> Account | AuthFailure:
        """Check a login from `source` (the peer's address) over `protocol` ("imap", "pop3",
        "smtp", "web"); every attempt goes to the audit, without the password."""
        source = source_of(source)
        try:
            address = normalize_address(user)
        except AddressError:
            address = None
        audited = (address or user)[:MAX_AUDITED_USER].encode("ascii", "backslashreplace").decode()
        result, credential = await self._check(address, user, password, source, protocol)
        await self._audit(audited, credential.name, source, protocol, result)
        return result

    async def _check(
        self, address: str | None, user: str, password: str, source: str, protocol: str
    ) -> tuple[Account | AuthFailure, _Credential]:
        policy = self._policy
        now = self._clock()
        record = await self._store.source_record(source, now, policy.throttle_window)
        if record.banned_until is not None:
            return AuthFailure(FailureReason.BANNED), _Credential("")
        if record.last_failure is not None:
            wait = record.last_failure + policy.delay(record.failures) - now
            if wait > 0:
                # Growing delays: a source guessing passwords gets a few tries a minute.
                await self._sleep(min(wait, policy.throttle_max_delay))
        if address is None:
            await self._remember_failure(user[:MAX_AUDITED_USER], "", password, source, counts_for_account=False)
            return AuthFailure(FailureReason.MALFORMED_USER), _Credential("")
        account = await self._store.get_account(address)
        credential, matches = await self._verify(account, password)
        if account is None:
            await self._remember_failure(address, "", password, source, counts_for_account=False)
            return AuthFailure(FailureReason.UNKNOWN_USER), credential
        key = policy.key(address, credential.name, source)
        if not matches:
            return await self._remember_failure(address, credential.name, password, source), credential
        if await self._store.quarantined_until(key, self._clock()) is not None:
            # Even the right password: the quarantine has to run out (or be released).
            return AuthFailure(FailureReason.QUARANTINED), credential
        if not account.enabled:
            return AuthFailure(FailureReason.DISABLED), credential
        await self._store.record_login_success(key, self._clock())
        await self._after_success(account, credential, password, source, protocol)
        return account, credential

    async def _verify(self, account: Account | None, password: str) -> tuple[_Credential, bool]:
        """Which credential the password is meant for, and whether it is right: an app password
        is found by its first group; anything else is the account's password."""
        # argon2 takes tens of milliseconds: off the event loop. An unknown user costs the same
        # time as a known one, so the answer's timing does not tell which addresses exist.
        if account is None:
            await asyncio.to_thread(self._passwords.verify, self._unknown_user_hash, password)
            return _Credential(""), False
        app_text = parse_app_password(password)
        app = await self._store.find_app_password(account.id, app_text.lookup) if app_text else None
        if app is not None and app_text is not None:
            if await asyncio.to_thread(self._passwords.verify, app.password_hash, app_text.secret):
                return _Credential(app.name, app), True
            # An account password that happens to look like one of its app passwords.
            if await asyncio.to_thread(self._passwords.verify, account.password_hash, password):
                return _Credential(""), True
            return _Credential(app.name, app), False
        return _Credential(""), await asyncio.to_thread(self._passwords.verify, account.password_hash, password)

    async def _remember_failure(
        self, address: str, credential: str, password: str, source: str, *, counts_for_account: bool = True
    ) -> AuthFailure:
        policy = self._policy
        now = self._clock()
        mac = password_mac(self._secret, address, password)
        key = policy.key(address, credential, source)
        outcome = await self._store.record_login_failure(
            key, source, mac, now, policy.quarantine if counts_for_account else None
        )
        record = await self._store.source_record(source, now, policy.throttle_window)
        if record.accounts >= policy.ban_accounts and record.banned_until is None:
            await self._store.ban_source(source, now, now + policy.ban_seconds, record.accounts)
            log.warning("source %s banned for %.0f s: wrong passwords for %d accounts",
                        source, policy.ban_seconds, record.accounts)
        await self._prune(now)
        what = f"app password {credential!r} of {address}" if credential else address
        if outcome.started:
            log.warning("%s in quarantine for %.0f s after wrong passwords (last from %s)",
                        what, policy.quarantine.seconds, source)
            return AuthFailure(FailureReason.WRONG_PASSWORD, "quarantine started")
        if outcome.extended:
            log.warning("quarantine of %s started again by a wrong password from %s", what, source)
            return AuthFailure(FailureReason.WRONG_PASSWORD, "quarantine started again")
        if outcome.until is not None:
            return AuthFailure(FailureReason.WRONG_PASSWORD, "in quarantine; repeated password not counted")
        return AuthFailure(FailureReason.WRONG_PASSWORD, "" if outcome.counted else "repeated password not counted")

    async def _after_success(
        self, account: Account, credential: _Credential, password: str, source: str, protocol: str
    ) -> None:
        app = credential.app_password
        if app is not None:
            secret = parse_app_password(password)
            assert secret is not None
            new_hash = None
            if self._passwords.needs_rehash(app.password_hash):
                new_hash = await asyncio.to_thread(self._passwords.hash, secret.secret)
            await self._store.note_app_password_use(app.id, self._clock(), source, protocol, new_hash)
        elif self._passwords.needs_rehash(account.password_hash):
            # The configured argon2 parameters changed: the hash follows at this login.
            new_hash = await asyncio.to_thread(self._passwords.hash, password)
            await self._store.set_password_hash(account.address, new_hash)

    async def _prune(self, now: float) -> None:
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self._store.prune_login_failures(now - self._policy.retention)

    async def _audit(
        self, address: str, credential: str, source: str, protocol: str, result: Account | AuthFailure
    ) -> None:
        ok = isinstance(result, Account)
        reason = ("app password" if credential else "password") if ok else str(result)
        at = datetime.fromtimestamp(self._clock(), timezone.utc)
        try:
            await self._store.add_login_attempt(
                LoginAttempt(at, address, credential, source, protocol, "ok" if ok else "failed", reason)
            )
        except Exception:
            log.exception("could not write the login audit for %s from %s", address, source)
