"""How many connections one address, and one account, may hold (issue 3 point 7, issue 6 point 6).

One client must not exhaust the server: a misbehaving script opening
connections in a loop is refused at the door, and an account with too many
sessions (a sync tool run twenty times) is refused at login. Each protocol
has its own `ConnectionLimits`, shared by all of its listeners (imap and
imaps, pop3 and pop3s, smtp, submission and submissions); POP3 and SMTP limit
addresses only (`per_account=None`).

The counts live in `Slots`: in this process (`LocalSlots`) when one process
serves, or with the supervisor (`postfach.broker.BrokerSlots`) when several
worker processes share the listeners, so that a limit holds for the whole
server and not per process.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol


class Slots(Protocol):
    """Named counters with a limit: `acquire` counts one unless `limit` are taken already."""

    async def acquire(self, kind: str, key: str, limit: int) -> bool: ...

    def release(self, kind: str, key: str) -> None: ...


class LocalSlots:
    def __init__(self) -> None:
        self._taken: Counter[tuple[str, str]] = Counter()

    async def acquire(self, kind: str, key: str, limit: int) -> bool:
        if self._taken[kind, key] >= limit:
            return False
        self._taken[kind, key] += 1
        return True

    def release(self, kind: str, key: str) -> None:
        self._taken[kind, key] -= 1
        if self._taken[kind, key] <= 0:
            del self._taken[kind, key]


class ConnectionLimits:
    def __init__(
        self, protocol: str, per_address: int, per_account: int | None = None, *, slots: Slots | None = None
    ) -> None:
        self.per_address = per_address
        self.per_account = per_account
        self._slots = slots or LocalSlots()
        self._address_kind = f"{protocol}-address"
        self._account_kind = f"{protocol}-account"

    async def open(self, address: str) -> bool:
        """Count a new connection from `address`; False (and nothing counted) when it is one too many."""
        return await self._slots.acquire(self._address_kind, address, self.per_address)

    def close(self, address: str) -> None:
        self._slots.release(self._address_kind, address)

    async def log_in(self, account_id: int) -> bool:
        if self.per_account is None:
            return True
        return await self._slots.acquire(self._account_kind, str(account_id), self.per_account)

    def log_out(self, account_id: int) -> None:
        if self.per_account is not None:
            self._slots.release(self._account_kind, str(account_id))


def peer_host(peer: str) -> str:
    """The address part of a formatted peer ("192.0.2.1:993" or "[2001:db8::1]:993")."""
    return peer.rsplit(":", 1)[0].strip("[]")
