"""Login quarantine and per-address throttling: the rules, without I/O.

The provider's documented rule: `quarantine_failures` wrong passwords put a
credential in quarantine for `quarantine_seconds`; during it every login with
that credential is refused, even with the right password, and another wrong
password starts it again. The refusal looks like a wrong password to the
client. Beyond it:

- the quarantine covers one credential: the account's password, or one app
  password, so a lock of one leaves the others working; under the scope
  `account+address` it also covers one source address only;
- the same wrong password from the same source counts once (the failure is
  kept as an HMAC of the password under a secret in the data directory, never
  the password), so an old phone retrying a stale password cannot keep an
  account locked;
- a source address that keeps failing waits longer and longer before its next
  attempt is even checked, and one that fails for many accounts is banned.

The state lives in the store (`Store.record_login_failure`), so it holds across
doors, processes and restarts. A source is an IPv4 address or an IPv6 /64: one
customer line usually gets a whole /64.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from postfach.model import CredentialKey, QuarantineRule
from postfach.secret_files import read_or_create

SECRET_FILE = "login-secret"
SCOPE_ACCOUNT = "account"
SCOPE_ACCOUNT_ADDRESS = "account+address"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    quarantine: QuarantineRule = QuarantineRule(failures=3, seconds=600.0, window=600.0)
    scope: str = SCOPE_ACCOUNT
    throttle_delay: float = 0.5
    throttle_max_delay: float = 10.0
    throttle_window: float = 900.0
    ban_accounts: int = 10
    ban_seconds: float = 3600.0

    @classmethod
    def from_config(cls, config) -> LoginPolicy:
        seconds = config.auth_quarantine_seconds
        return cls(
            # Failures count for as long as a quarantine lasts: three within ten minutes.
            QuarantineRule(config.auth_quarantine_failures, seconds, window=seconds),
            config.auth_quarantine_scope,
            config.auth_throttle_delay,
            config.auth_throttle_max_delay,
            config.auth_throttle_window,
            config.auth_ban_accounts,
            config.auth_ban_seconds,
        )

    def key(self, address: str, credential: str, source: str) -> CredentialKey:
        return CredentialKey(address, credential, source if self.scope == SCOPE_ACCOUNT_ADDRESS else "")

    def delay(self, failures: int) -> float:
        """How long after its last failure a source with `failures` recent distinct failures
        waits: nothing after the first (a typo), then the delay doubling up to the maximum."""
        if failures < 2 or self.throttle_delay <= 0:
            return 0.0
        return min(self.throttle_max_delay, self.throttle_delay * 2 ** min(failures - 2, 30))

    @property
    def retention(self) -> float:
        """How long a failure can matter for anything; older ones are pruned."""
        return 2 * max(self.quarantine.window, self.quarantine.seconds, self.throttle_window)


def source_of(peer: str) -> str:
    """The source a login is counted for, from "host", "host:port" or "[v6]:port"."""
    text = peer.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.rsplit(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text[:100] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def password_mac(secret: bytes, address: str, password: str) -> str:
    """Tells the same wrong password from another without keeping it (the address is mixed
    in so that equal passwords for two accounts do not look equal)."""
    message = address.encode("utf-8", "replace") + b"\0" + password.encode("utf-8", "surrogatepass")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def load_login_secret(data_dir: Path) -> bytes:
    """The server's secret for password MACs, made on first use; every process of one
    installation reads the same file."""
    return bytes.fromhex(read_or_create(data_dir / SECRET_FILE, lambda: secrets.token_hex(32)))
