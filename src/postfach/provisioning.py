"""The rules for domains, mailboxes, aliases, forwarding and the autoresponder.

The CLI, the admin interface and the customer panel all change accounts
through here, so a rule (minimum quota, at most 20 forwarding targets, no
forwarding loops) is checked in one place. Input arrives as people type it;
every refusal is an InvalidRequest whose message is one sentence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from datetime import date

from postfach.address import (
    AddressError,
    display_address,
    display_domain,
    domain_of,
    normalize_address,
    normalize_alias_source,
    normalize_domain,
)
from postfach import dkim_keys
from postfach.auth.quarantine import source_of
from postfach.auth.passwords import (
    Passwords,
    WeakPassword,
    check_strength,
    generate_app_password,
    parse_app_password,
)
from postfach.model import (
    MAX_FORWARD_TARGETS,
    MIN_QUOTA_BYTES,
    Account,
    Alias,
    AppPassword,
    DkimKey,
    Domain,
    Forwarding,
    LoginAttempt,
    Quarantine,
    SourceBan,
    Vacation,
)
from postfach.sizes import SizeError, format_size, parse_size
from postfach.store.base import Store, StoreError

DEFAULT_QUOTA_BYTES = 1 << 30
MAX_APP_PASSWORD_NAME = 64
MAX_VACATION_SUBJECT = 200


class InvalidRequest(Exception):
    """Refused input; the message is one sentence for the person who typed it."""


def _address(text: str) -> str:
    try:
        return normalize_address(text)
    except AddressError as error:
        raise InvalidRequest(str(error)) from None


def _domain(text: str) -> str:
    try:
        return normalize_domain(text)
    except AddressError as error:
        raise InvalidRequest(str(error)) from None


def quota_from_text(text: str) -> int:
    try:
        quota = parse_size(text)
    except SizeError as error:
        raise InvalidRequest(str(error)) from None
    if quota < MIN_QUOTA_BYTES:
        raise InvalidRequest(f"a quota of {text} is too small: the minimum is {format_size(MIN_QUOTA_BYTES)}")
    return quota


def check_new_password(password: str) -> None:
    try:
        check_strength(password)
    except WeakPassword as error:
        raise InvalidRequest(str(error)) from None


def _app_password_name(text: str) -> str:
    name = text.strip()
    if not 1 <= len(name) <= MAX_APP_PASSWORD_NAME or not name.isprintable():
        raise InvalidRequest(f"an app password's name is 1 to {MAX_APP_PASSWORD_NAME} printable characters")
    return name


class Provisioning:
    def __init__(self, store: Store, passwords: Passwords) -> None:
        self.store = store
        self._passwords = passwords

    async def _hash(self, password: str) -> str:
        check_new_password(password)
        return await asyncio.to_thread(self._passwords.hash, password)

    async def _run(self, operation):
        try:
            return await operation
        except StoreError as error:
            raise InvalidRequest(str(error)) from None

    # Domains.

    async def add_domain(self, name: str) -> Domain:
        """Host a domain, with its DKIM key pair (RFC 6376) made at once."""
        private_key = await asyncio.to_thread(dkim_keys.generate_private_key)
        domain = await self._run(self.store.add_domain(_domain(name)))
        await self.store.set_dkim_key(domain.name, dkim_keys.new_selector(), private_key)
        return domain

    async def dkim_key(self, name: str) -> DkimKey:
        """The domain's DKIM key; one is made for a domain added before keys existed."""
        domain = _domain(name)
        if await self.store.get_domain(domain) is None:
            raise InvalidRequest(f"the domain {display_domain(domain)} is not hosted here")
        key = await self.store.get_dkim_key(domain)
        if key is None:
            private_key = await asyncio.to_thread(dkim_keys.generate_private_key)
            key = await self._run(self.store.set_dkim_key(domain, dkim_keys.new_selector(), private_key))
        return key

    async def remove_domain(self, name: str) -> None:
        await self._run(self.store.remove_domain(_domain(name)))

    async def list_domains(self) -> list[Domain]:
        return await self.store.list_domains()

    # Mailboxes.

    async def add_mailbox(self, address: str, password: str, quota: str | None = None) -> Account:
        normalized = _address(address)
        quota_bytes = quota_from_text(quota) if quota is not None else DEFAULT_QUOTA_BYTES
        if await self.store.get_domain(domain_of(normalized)) is None:
            raise InvalidRequest(f"the domain {display_domain(domain_of(normalized))} is not hosted here; add it first")
        return await self._run(self.store.add_account(normalized, await self._hash(password), quota_bytes))

    async def remove_mailbox(self, address: str) -> None:
        await self._run(self.store.remove_account(_address(address)))

    async def get_mailbox(self, address: str) -> Account:
        account = await self.store.get_account(_address(address))
        if account is None:
            raise InvalidRequest(f"there is no mailbox {display_address(_address(address))}")
        return account

    async def list_mailboxes(self, domain: str | None = None) -> list[Account]:
        return await self._run(self.store.list_accounts(_domain(domain) if domain else None))

    async def set_password(self, address: str, password: str) -> None:
        normalized = _address(address)
        await self._run(self.store.set_password_hash(normalized, await self._hash(password)))

    async def set_quota(self, address: str, quota: str) -> None:
        await self._run(self.store.set_quota(_address(address), quota_from_text(quota)))

    async def set_enabled(self, address: str, enabled: bool) -> None:
        await self._run(self.store.set_enabled(_address(address), enabled))

    # App passwords: one per device or protocol, each revocable (issue 6 point 3).

    async def add_app_password(self, address: str, name: str) -> tuple[AppPassword, str]:
        """A new generated app password; the text is shown once and never stored."""
        account = await self.get_mailbox(address)
        name = _app_password_name(name)
        for _ in range(5):  # the first group must differ from the account's others
            password = generate_app_password()
            text = parse_app_password(password)
            assert text is not None
            if await self.store.find_app_password(account.id, text.lookup) is None:
                break
        password_hash = await asyncio.to_thread(self._passwords.hash, text.secret)
        app = await self._run(self.store.add_app_password(account.address, name, text.lookup, password_hash))
        return app, password

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        return await self._run(self.store.list_app_passwords(_address(address)))

    async def revoke_app_password(self, address: str, name: str) -> None:
        await self._run(self.store.remove_app_password(_address(address), name.strip()))

    # Login security: quarantines, banned addresses, the audit.

    async def list_quarantines(self) -> tuple[list[Quarantine], list[SourceBan]]:
        now = time.time()
        return await self.store.list_quarantines(now), await self.store.list_bans(now)

    async def release(self, target: str) -> str:
        """End the quarantines of a mailbox, or the ban of a source address; says what it did."""
        try:
            source = source_of(str(ipaddress.ip_address(target.strip().strip("[]"))))
        except ValueError:
            normalized = _address(target)
            count = await self.store.release_quarantines(normalized, time.time())
            if count == 0:
                raise InvalidRequest(f"{display_address(normalized)} is not in quarantine")
            return f"released {display_address(normalized)} from {count} quarantine(s)"
        if not await self.store.release_ban(source, time.time()):
            raise InvalidRequest(f"the address {source} is not banned")
        return f"lifted the ban of {source}"

    async def login_attempts(self, address: str | None, limit: int) -> list[LoginAttempt]:
        if limit < 1:
            raise InvalidRequest("the limit must be at least 1")
        return await self.store.list_login_attempts(_address(address) if address else None, limit)

    # Aliases.

    async def add_alias(self, source: str, target: str) -> Alias:
        try:
            normalized_source = normalize_alias_source(source)
        except AddressError as error:
            raise InvalidRequest(str(error)) from None
        normalized_target = _address(target)
        if normalized_source == normalized_target:
            raise InvalidRequest(f"the alias {display_address(normalized_source)} cannot point to itself")
        await self._check_local_target(normalized_target)
        await self._refuse_loop(normalized_source, [normalized_target], replace=False)
        return await self._run(self.store.add_alias(normalized_source, normalized_target))

    async def remove_alias(self, source: str, target: str) -> None:
        try:
            normalized_source = normalize_alias_source(source)
        except AddressError as error:
            raise InvalidRequest(str(error)) from None
        await self._run(self.store.remove_alias(normalized_source, _address(target)))

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return await self._run(self.store.list_aliases(_domain(domain) if domain else None))

    # Forwarding.

    async def set_forwarding(self, address: str, targets: Sequence[str], keep_copy: bool) -> Forwarding:
        normalized = _address(address)
        if not targets:
            raise InvalidRequest("give at least one address to forward to")
        if len(targets) > MAX_FORWARD_TARGETS:
            raise InvalidRequest(
                f"{len(targets)} forwarding targets are too many: at most {MAX_FORWARD_TARGETS} are allowed"
            )
        normalized_targets: list[str] = []
        for target in targets:
            normalized_target = _address(target)
            if normalized_target == normalized:
                raise InvalidRequest(f"{display_address(normalized)} cannot forward to itself")
            if normalized_target not in normalized_targets:
                normalized_targets.append(normalized_target)
        await self.get_mailbox(normalized)
        for target in normalized_targets:
            await self._check_local_target(target)
        await self._refuse_loop(normalized, normalized_targets, replace=True)
        forwarding = Forwarding(tuple(normalized_targets), keep_copy)
        await self._run(self.store.set_forwarding(normalized, forwarding))
        return forwarding

    async def clear_forwarding(self, address: str) -> None:
        normalized = _address(address)
        await self.get_mailbox(normalized)
        await self._run(self.store.set_forwarding(normalized, None))

    async def get_forwarding(self, address: str) -> Forwarding | None:
        return await self.store.get_forwarding((await self.get_mailbox(address)).address)

    async def _check_local_target(self, target: str) -> None:
        """A target in a domain hosted here must exist, or mail to it would bounce."""
        domain = domain_of(target)
        if await self.store.get_domain(domain) is None:
            return
        if await self.store.get_account(target) is not None:
            return
        aliases = await self.store.list_aliases(domain)
        if any(alias.source in (target, "@" + domain) for alias in aliases):
            return
        raise InvalidRequest(f"{display_address(target)} does not exist here")

    async def _refuse_loop(self, source: str, new_targets: list[str], *, replace: bool) -> None:
        """Refuse a change after which mail for `source` could come back to it.

        `replace`: the new targets replace the source's old ones (forwarding) instead of
        joining them (aliases).
        """
        accounts = {account.address for account in await self.store.list_accounts()}
        next_hops: dict[str, list[str]] = {}
        for alias in await self.store.list_aliases():
            next_hops.setdefault(alias.source, []).append(alias.target)
        for address, forwarding in (await self.store.list_forwardings()).items():
            next_hops[address] = list(forwarding.targets)
        next_hops[source] = ([] if replace else next_hops.get(source, [])) + new_targets

        def hops(address: str) -> list[str]:
            if address in next_hops:
                return next_hops[address]
            if address in accounts:
                return []
            return next_hops.get("@" + domain_of(address), [])  # the domain's catch-all

        def is_source(address: str) -> bool:
            if source.startswith("@"):
                # A catch-all receives what no mailbox or alias of its domain takes.
                return domain_of(address) == source[1:] and address not in accounts and address not in next_hops
            return address == source

        seen: set[str] = set()
        pending = list(new_targets)
        while pending:
            address = pending.pop()
            if is_source(address):
                raise InvalidRequest(
                    f"this would make a loop: mail for {display_address(source)} would come back to it"
                )
            if address not in seen:
                seen.add(address)
                pending.extend(hops(address))

    # The autoresponder.

    async def set_vacation(self, address: str, start: date, end: date, subject: str, body: str) -> Vacation:
        normalized = _address(address)
        if end < start:
            raise InvalidRequest(f"the end date {end} is before the start date {start}")
        if end < date.today():
            raise InvalidRequest(f"the end date {end} has already passed")
        subject = subject.strip()
        if not subject or len(subject) > MAX_VACATION_SUBJECT or "\n" in subject:
            raise InvalidRequest(f"the subject must be one line of 1 to {MAX_VACATION_SUBJECT} characters")
        if not body.strip():
            raise InvalidRequest("the autoresponder text is empty")
        await self.get_mailbox(normalized)
        vacation = Vacation(start, end, subject, body)
        await self._run(self.store.set_vacation(normalized, vacation))
        return vacation

    async def clear_vacation(self, address: str) -> None:
        normalized = _address(address)
        await self.get_mailbox(normalized)
        await self._run(self.store.set_vacation(normalized, None))

    async def get_vacation(self, address: str) -> Vacation | None:
        return await self.store.get_vacation((await self.get_mailbox(address)).address)
