"""How many connections one address, and one account, may hold (issue 3 point 7, issue 6 point 6).

One client must not exhaust the server: a misbehaving script opening
connections in a loop is refused at the door, and an account with too many
sessions (a sync tool run twenty times) is refused at login. Each protocol
has its own `ConnectionLimits`, shared by all of its listeners (imap and
imaps, pop3 and pop3s, smtp, submission and submissions); POP3 and SMTP limit
addresses only (`per_account=None`).
"""

from __future__ import annotations

from collections import Counter


class ConnectionLimits:
    def __init__(self, per_address: int, per_account: int | None = None) -> None:
        self.per_address = per_address
        self.per_account = per_account
        self._addresses: Counter[str] = Counter()
        self._accounts: Counter[int] = Counter()

    def open(self, address: str) -> bool:
        """Count a new connection from `address`; False (and nothing counted) when it is one too many."""
        if self._addresses[address] >= self.per_address:
            return False
        self._addresses[address] += 1
        return True

    def close(self, address: str) -> None:
        self._addresses[address] -= 1
        if self._addresses[address] <= 0:
            del self._addresses[address]

    def log_in(self, account_id: int) -> bool:
        if self.per_account is not None and self._accounts[account_id] >= self.per_account:
            return False
        self._accounts[account_id] += 1
        return True

    def log_out(self, account_id: int) -> None:
        self._accounts[account_id] -= 1
        if self._accounts[account_id] <= 0:
            del self._accounts[account_id]


def peer_host(peer: str) -> str:
    """The address part of a formatted peer ("192.0.2.1:993" or "[2001:db8::1]:993")."""
    return peer.rsplit(":", 1)[0].strip("[]")
