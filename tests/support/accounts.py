"""Accounts for tests, made through the same rules as the CLI."""

from argon2 import PasswordHasher

from postfach.auth.passwords import Passwords
from postfach.provisioning import Provisioning

PASSWORD = "correct horse battery"
# Tests log in often: cheap argon2 parameters (the server rehashes to its own on login).
FAST_HASHES = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


async def make_account(store, address: str, password: str = PASSWORD, quota: str | None = None):
    provisioning = Provisioning(store, FAST_HASHES)
    domain = address.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        await provisioning.add_domain(domain)
    return await provisioning.add_mailbox(address, password, quota)
