"""Recipient resolution: which mailboxes (and remote addresses) mail for one address reaches.

The rules, in the order they apply to an address in a domain hosted here:

1. a mailbox (Account): its INBOX, unless it forwards without keeping a copy;
   then its forwarding targets, each resolved again;
2. an alias (one source may have several targets): each target, resolved again;
3. the domain's catch-all ("@domain"): only when neither 1 nor 2 matched;
4. nothing matched: the address is unknown.

An address outside the hosted domains is "not local" when it is the
recipient itself, and a remote target (to be queued) when an alias or a
forwarding leads to it.

Provisioning refuses loops when an alias or a forwarding is set, but the
store can still hold one (an older row, a change made by another process in
between), so resolution is loop-safe on its own: an address met again on the
current path, or a chain deeper than MAX_DEPTH, ends that branch. A recipient
whose every branch ended that way resolves to `Looping`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postfach.address import AddressError, domain_of, normalize_address
from postfach.model import Account, Mailbox
from postfach.store.base import Store

# Hops from the recipient through aliases and forwardings. Real setups use two or three.
MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Local:
    """Mail for `address` is filed in `mailboxes` and sent on to `remote` (which needs the outbound queue)."""

    address: str
    mailboxes: tuple[Mailbox, ...]
    remote: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unknown:
    """The domain is hosted here, but no mailbox, alias or catch-all takes the address."""

    address: str


@dataclass(frozen=True, slots=True)
class NotLocal:
    """The address's domain is not hosted here."""

    address: str


@dataclass(frozen=True, slots=True)
class Looping:
    """Aliases or forwardings only lead back to where they started (or too deep)."""

    address: str


@dataclass(frozen=True, slots=True)
class Malformed:
    address: str
    reason: str


Resolution = Local | Unknown | NotLocal | Looping | Malformed


@dataclass
class _Walk:
    """One resolution: what it found, and what it has read from the store (read once per walk)."""

    store: Store
    mailboxes: dict[int, Mailbox] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)
    looped: bool = False
    _done: set[str] = field(default_factory=set)
    _path: set[str] = field(default_factory=set)
    _hosted: dict[str, bool] = field(default_factory=dict)
    _aliases: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    async def hosted(self, domain: str) -> bool:
        if domain not in self._hosted:
            self._hosted[domain] = await self.store.get_domain(domain) is not None
        return self._hosted[domain]

    async def alias_targets(self, source: str, domain: str) -> list[str]:
        if domain not in self._aliases:
            table: dict[str, list[str]] = {}
            for alias in await self.store.list_aliases(domain):
                table.setdefault(alias.source, []).append(alias.target)
            self._aliases[domain] = table
        return self._aliases[domain].get(source, [])

    async def visit(self, address: str, depth: int) -> None:
        if address in self._path or depth > MAX_DEPTH:
            self.looped = True
            return
        if address in self._done:  # reached twice without a loop (a diamond): once is enough
            return
        self._done.add(address)
        self._path.add(address)
        try:
            await self._expand(address, depth)
        finally:
            self._path.discard(address)

    async def _expand(self, address: str, depth: int) -> None:
        domain = domain_of(address)
        facts = await self.store.recipient_facts(address)  # one read: domain, mailbox, forwarding
        self._hosted[domain] = facts.domain_hosted
        if not facts.domain_hosted:
            self.remote.append(address)
            return
        mailbox, forwarding = facts.mailbox, facts.forwarding
        if mailbox is not None:
            # A disabled account still receives: disabling stops logins, it must not bounce mail.
            if forwarding is None or forwarding.keep_copy:
                self.mailboxes.setdefault(mailbox.account.id, mailbox)
            for target in forwarding.targets if forwarding else ():
                await self.visit(target, depth + 1)
            return
        targets = await self.alias_targets(address, domain)
        if not targets:
            # The catch-all takes only what no mailbox and no alias of its domain takes.
            targets = await self.alias_targets("@" + domain, domain)
        for target in targets:
            await self.visit(target, depth + 1)


class Resolver:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def resolve(self, address: str) -> Resolution:
        try:
            normalized = normalize_address(address)
        except AddressError as error:
            return Malformed(address, str(error))
        walk = _Walk(self._store)
        await walk.visit(normalized, 0)
        if not await walk.hosted(domain_of(normalized)):  # known from the visit: no second read
            return NotLocal(normalized)
        if walk.mailboxes or walk.remote:
            return Local(normalized, tuple(walk.mailboxes.values()), tuple(walk.remote))
        if walk.looped:
            return Looping(normalized)
        return Unknown(normalized)

    async def may_send_as(self, account: Account, address: str) -> bool:
        """Whether `account` may use `address` as its sender: its own address, or an alias of it.

        Only explicit aliases count (followed through alias chains): a catch-all would let its
        owner send as any address of the domain, and forwarding says where mail goes, not who
        owns an address.
        """
        try:
            normalized = normalize_address(address)
        except AddressError:
            return False
        if normalized == account.address:
            return True
        walk = _Walk(self._store)
        pending, seen = [(normalized, 0)], {normalized}
        while pending:
            current, depth = pending.pop()
            if depth >= MAX_DEPTH or not await walk.hosted(domain_of(current)):
                continue
            for target in await walk.alias_targets(current, domain_of(current)):
                if target == account.address:
                    return True
                if target not in seen:
                    seen.add(target)
                    pending.append((target, depth + 1))
        return False
