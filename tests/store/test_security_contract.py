"""The store contract for login security: app passwords, the quarantine rule, bans, the audit."""

import asyncio
from datetime import datetime, timezone

import pytest

from postfach.model import CredentialKey, LoginAttempt, QuarantineRule
from postfach.store.base import AlreadyExists, NotFound

RULE = QuarantineRule(failures=3, seconds=100.0, window=100.0)
KEY = CredentialKey("alice@example.com")
T = 1_000_000.0


async def test_app_passwords_round_trip_and_go_with_their_account(store, account):
    app = await store.add_app_password(account.address, "phone", "abcde", "hash")
    assert (app.name, app.lookup, app.last_used_at) == ("phone", "abcde", None)
    with pytest.raises(AlreadyExists):
        await store.add_app_password(account.address, "phone", "fghij", "hash")
    await store.note_app_password_use(app.id, T, "192.0.2.1", "imap", "new hash")
    found = await store.find_app_password(account.id, "abcde")
    assert (found.password_hash, found.last_used_from, found.last_used_protocol) == ("new hash", "192.0.2.1", "imap")
    assert found.last_used_at == datetime.fromtimestamp(T, timezone.utc)
    await store.remove_app_password(account.address, "phone")
    with pytest.raises(NotFound):
        await store.remove_app_password(account.address, "phone")
    await store.add_app_password(account.address, "tablet", "kmnop", "hash")
    await store.remove_account(account.address)
    await store.add_account(account.address, "x", 50 << 20)
    assert await store.list_app_passwords(account.address) == []


async def test_the_quarantine_rule_is_applied_atomically(store, account):
    # Three failures at once, as from three doors: exactly one starts the quarantine.
    outcomes = await asyncio.gather(
        *(store.record_login_failure(KEY, "192.0.2.1", f"mac{n}", T + n / 10, RULE) for n in range(3))
    )
    assert sum(outcome.started for outcome in outcomes) == 1
    assert await store.quarantined_until(KEY, T + 1) == pytest.approx(T + 100.2)
    repeat = await store.record_login_failure(KEY, "192.0.2.1", "mac1", T + 10, RULE)
    assert not repeat.counted and not repeat.extended
    new = await store.record_login_failure(KEY, "192.0.2.9", "mac1", T + 20, RULE)  # another source
    assert new.extended and new.until == T + 120
    assert [q.key for q in await store.list_quarantines(T + 30)] == [KEY]
    assert await store.release_quarantines(KEY.address, T + 30) == 1
    assert await store.quarantined_until(KEY, T + 31) is None
    # After a release the old failures no longer count.
    assert not (await store.record_login_failure(KEY, "192.0.2.1", "mac7", T + 32, RULE)).started


async def test_sources_bans_and_the_audit(store, account):
    for n, user in enumerate(["a@example.com", "b@example.com", "b@example.com"]):
        await store.record_login_failure(CredentialKey(user), "203.0.113.5", f"mac{n}", T + n, None)
    record = await store.source_record("203.0.113.5", T + 3, window=60)
    assert (record.failures, record.accounts, record.last_failure, record.banned_until) == (3, 2, T + 2, None)
    await store.ban_source("203.0.113.5", T + 3, T + 50, 2)
    assert (await store.source_record("203.0.113.5", T + 4, window=60)).banned_until == T + 50
    assert [ban.source for ban in await store.list_bans(T + 4)] == ["203.0.113.5"]
    assert await store.release_ban("203.0.113.5", T + 5)
    assert (await store.source_record("203.0.113.5", T + 5, window=60)).failures == 0
    assert await store.prune_login_failures(T + 100) >= 0
    for n in range(3):
        at = datetime.fromtimestamp(T + n, timezone.utc)
        await store.add_login_attempt(LoginAttempt(at, account.address, "", "192.0.2.1", "pop3", "ok", f"r{n}"))
    await store.add_login_attempt(LoginAttempt(at, "b@example.com", "", "192.0.2.1", "imap", "failed", "x"))
    assert [a.reason for a in await store.list_login_attempts(account.address, limit=2)] == ["r2", "r1"]
    assert len(await store.list_login_attempts()) == 4


async def test_removing_an_account_takes_its_login_state_and_leaves_others(store, account):
    bob = CredentialKey("bob@example.com")
    await store.add_account(bob.address, "h", 50 << 20)
    await store.add_app_password(account.address, "phone", "abcde", "hash")
    for n in range(3):
        await store.record_login_failure(KEY, "192.0.2.1", f"mac{n}", T + n, RULE)
        await store.record_login_failure(bob, "192.0.2.1", f"bob{n}", T + n, RULE)
    assert [q.key for q in await store.list_quarantines(T + 5)] == [KEY, bob]

    await store.remove_account(account.address)
    assert [q.key for q in await store.list_quarantines(T + 5)] == [bob]
    assert await store.quarantined_until(KEY, T + 5) is None
    assert (await store.source_record("192.0.2.1", T + 5, window=60)).failures == 3  # bob's stay

    # A new mailbox with the address starts clean: one wrong password is one, not a fourth.
    await store.add_account(account.address, "h", 50 << 20)
    assert await store.list_app_passwords(account.address) == []
    outcome = await store.record_login_failure(KEY, "192.0.2.1", "mac9", T + 6, RULE)
    assert outcome.counted and not outcome.started and outcome.until is None
    # The same wrong password as before the removal counts anew too.
    assert (await store.record_login_failure(KEY, "192.0.2.1", "mac0", T + 7, RULE)).counted


async def test_login_attempts_older_than_the_cutoff_are_pruned(store, account):
    def attempt(at, reason):
        return LoginAttempt(datetime.fromtimestamp(at, timezone.utc), account.address, "", "192.0.2.1", "imap",
                            "ok", reason)

    # More old rows than a store deletes in one slice, so that pruning has to go on.
    await asyncio.gather(*(store.add_login_attempt(attempt(T - 86400 - 1 - n, "old")) for n in range(4500)))
    await store.add_login_attempt(attempt(T - 10, "recent"))
    await store.add_login_attempt(attempt(T - 86400 + 1, "just inside"))
    assert await store.prune_login_attempts(T - 86400) == 4500
    assert [a.reason for a in await store.list_login_attempts(limit=10)] == ["just inside", "recent"]
    assert await store.prune_login_attempts(T - 86400) == 0
