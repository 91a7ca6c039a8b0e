from argon2 import PasswordHasher

from postfach.auth.authenticator import Authenticator, AuthFailure, FailureReason
from postfach.auth.passwords import GENERATED_ALPHABET, Passwords, generate_password
from postfach.model import Account
from postfach.store.sqlite import SqliteStore

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_generated_passwords_are_long_and_unpredictable():
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(len(password) >= 20 and set(password) <= set(GENERATED_ALPHABET) for password in passwords)
    # Every character of the alphabet turns up: the choice is not biased towards a part of it.
    assert set("".join(passwords)) == set(GENERATED_ALPHABET)


def test_hashes_are_argon2id_and_salted():
    passwords = Passwords()
    first, second = passwords.hash("a good long password"), passwords.hash("a good long password")
    assert first.startswith("$argon2id$") and first != second
    assert passwords.verify(first, "a good long password")
    assert not passwords.verify(first, "a good long passworD")
    assert not passwords.verify("not a hash", "anything")


async def test_login_rules_and_rehash_when_parameters_change(tmp_path):
    store = await SqliteStore.open(tmp_path / "db", tmp_path / "blobs")
    try:
        await store.add_domain("example.com")
        weak = Passwords(FAST)
        await store.add_account("alice@example.com", weak.hash("a good long password"), 10 << 20)
        strong = Passwords(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
        authenticator = Authenticator(store, strong)

        def login(user, password):
            return authenticator.authenticate(user, password, source="192.0.2.1", protocol="imap")

        assert isinstance(await login("ALICE@example.com", "a good long password"), Account)
        rehashed = (await store.get_account("alice@example.com")).password_hash
        assert "m=16,t=2,p=1" in rehashed and not strong.needs_rehash(rehashed)
        assert await login("alice@example.com", "wrong") == AuthFailure(FailureReason.WRONG_PASSWORD)
        assert await login("nobody@example.com", "x") == AuthFailure(FailureReason.UNKNOWN_USER)
        assert await login("no address", "x") == AuthFailure(FailureReason.MALFORMED_USER)
        await store.set_enabled("alice@example.com", False)
        assert await login("alice@example.com", "a good long password") == AuthFailure(
            FailureReason.DISABLED
        )
    finally:
        await store.close()
