"""The quarantine and throttling rules against the embedded store, on a fake clock."""

import pytest
from argon2 import PasswordHasher

from postfach.auth.authenticator import Authenticator, AuthFailure, FailureReason
from postfach.auth.passwords import Passwords, WeakPassword, check_strength, parse_app_password
from postfach.auth.quarantine import LoginPolicy, load_login_secret, password_mac, source_of
from postfach.model import Account, CredentialKey, QuarantineRule
from postfach.provisioning import InvalidRequest, Provisioning
from postfach.store.sqlite import SqliteStore

FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
PASSWORD = "a good long password"
ALICE = "alice@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        self.now += 0.001  # time passes, a little, between two looks at the clock
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
async def store(tmp_path):
    store = await SqliteStore.open(tmp_path / "db", tmp_path / "blobs")
    await store.add_domain("example.com")
    for address in (ALICE, "bob@example.com", "carol@example.com"):
        await store.add_account(address, FAST.hash(PASSWORD), 10 << 20)
    yield store
    await store.close()


def make(store, clock, **policy):
    settings = {"quarantine": QuarantineRule(3, 600, 600), "throttle_delay": 0.0, **policy}
    authenticator = Authenticator(store, FAST, LoginPolicy(**settings), b"k" * 32, clock=clock, sleep=clock.sleep)

    def login(password, user=ALICE, source="192.0.2.1"):
        return authenticator.authenticate(user, password, source=source, protocol="imap")

    return login


async def test_quarantine_runs_out_and_a_new_wrong_password_restarts_it(store):
    clock = Clock()
    login = make(store, clock)
    for number in range(3):
        assert await login(f"guess {number}") == AuthFailure(FailureReason.WRONG_PASSWORD)
    assert await login(PASSWORD) == AuthFailure(FailureReason.QUARANTINED)
    clock.now += 500
    assert await login("guess 2") == AuthFailure(FailureReason.WRONG_PASSWORD)  # a repeat: no restart
    clock.now += 101
    assert isinstance(await login(PASSWORD), Account)
    for number in range(3):
        await login(f"again {number}")
    clock.now += 500
    await login("one more")  # new: the 600 s start again
    clock.now += 500
    assert await login(PASSWORD) == AuthFailure(FailureReason.QUARANTINED)
    clock.now += 101
    assert isinstance(await login(PASSWORD), Account)


async def test_failures_outside_the_window_or_before_a_good_login_do_not_count(store):
    clock = Clock()
    login = make(store, clock)
    await login("guess 1")
    await login("guess 2")
    clock.now += 601
    await login("guess 3")
    assert isinstance(await login(PASSWORD), Account)
    await login("guess 4")
    await login("guess 5")
    assert isinstance(await login(PASSWORD), Account)


async def test_a_stale_password_cannot_keep_the_account_locked(store):
    clock = Clock()
    login = make(store, clock)
    await login("stale", source="198.51.100.7")  # the old phone
    await login("guess 1", source="203.0.113.1")
    await login("guess 2", source="203.0.113.1")  # the attacker: quarantine
    for _ in range(20):  # the phone keeps trying, every minute
        clock.now += 60
        await login("stale", source="198.51.100.7")
    assert isinstance(await login(PASSWORD), Account)  # 600 s after the attacker stopped


async def test_scope_account_and_address(store):
    clock = Clock()
    login = make(store, clock, scope="account+address")
    for number in range(3):
        await login(f"guess {number}", source="203.0.113.1")
    assert await login(PASSWORD, source="203.0.113.1") == AuthFailure(FailureReason.QUARANTINED)
    assert isinstance(await login(PASSWORD, source="192.0.2.1"), Account)


async def test_delays_grow_and_spraying_many_accounts_bans(store):
    clock = Clock()
    login = make(store, clock, throttle_delay=1.0, throttle_max_delay=4.0, ban_accounts=3)
    users = [ALICE, "bob@example.com", "nobody@example.com", "carol@example.com"]
    for user in users[:3]:
        await login("Winter2024!", user=user, source="203.0.113.9")
    assert clock.slept == pytest.approx([1.0], abs=0.01)  # nothing after the first failure, 1 s after the second
    assert await login(PASSWORD, user=users[3], source="203.0.113.9") == AuthFailure(FailureReason.BANNED)
    assert isinstance(await login(PASSWORD, user=users[3], source="192.0.2.1"), Account)
    assert LoginPolicy(throttle_delay=1.0, throttle_max_delay=4.0).delay(9) == 4.0


async def test_app_password_locks_alone(store):
    clock = Clock()
    login = make(store, clock)
    provisioning = Provisioning(store, FAST)
    _, phone = await provisioning.add_app_password(ALICE, "phone")
    _, tablet = await provisioning.add_app_password(ALICE, "tablet")
    for letter in "xyz":
        assert await login(phone[:6] + f"aaaa{letter}-bbbbb-ccccc-ddddd") == AuthFailure(FailureReason.WRONG_PASSWORD)
    assert await login(phone) == AuthFailure(FailureReason.QUARANTINED)
    assert isinstance(await login(tablet), Account)
    assert isinstance(await login(PASSWORD), Account)
    quarantines = await store.list_quarantines(clock.now)
    assert [q.key for q in quarantines] == [CredentialKey(ALICE, "phone", "")]
    with pytest.raises(InvalidRequest, match="already"):
        await provisioning.add_app_password(ALICE, "phone")


async def test_audit_and_rehash_with_the_configured_parameters(store):
    clock = Clock()
    strong = Passwords.configured(time_cost=2, memory_kib=16, parallelism=1)
    authenticator = Authenticator(store, strong, LoginPolicy(throttle_delay=0), clock=clock, sleep=clock.sleep)
    assert isinstance(await authenticator.authenticate(ALICE, PASSWORD, source="[2001:db8::5]:993", protocol="pop3"), Account)
    assert "m=16,t=2,p=1" in (await store.get_account(ALICE)).password_hash
    await authenticator.authenticate(ALICE, "secret guess", source="192.0.2.4:1234", protocol="smtp")
    attempts = await store.list_login_attempts(ALICE)
    assert [(a.source, a.protocol, a.result) for a in attempts] == [
        ("192.0.2.4", "smtp", "failed"), ("2001:db8::/64", "pop3", "ok")
    ]
    assert all("secret guess" not in str(a) for a in attempts)


def test_sources_macs_and_the_secret(tmp_path):
    assert source_of("[::ffff:192.0.2.1]:143") == "192.0.2.1"
    assert source_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert source_of("192.0.2.1:993") == "192.0.2.1"
    secret = load_login_secret(tmp_path)
    assert load_login_secret(tmp_path) == secret and len(secret) == 32
    assert (tmp_path / "login-secret").stat().st_mode & 0o777 == 0o600
    mac = password_mac(secret, ALICE, "hunter2 hunter2")
    assert mac == password_mac(secret, ALICE, "hunter2 hunter2") != password_mac(secret, "bob@example.com", "hunter2 hunter2")
    assert "hunter2" not in mac


def test_strength_rule_and_app_password_shape():
    for weak, message in (
        ("short", "too short"),
        ("Password123", "most common"),
        ("qwerty uiop", "most common"),
        ("aaaaabbbbbaaaaa", "too few different"),
    ):
        with pytest.raises(WeakPassword, match=message):
            check_strength(weak)
    check_strength("correct horse battery")
    assert parse_app_password("abcde-fghij-kmnop-qrstu-vwxyz") is not None
    assert parse_app_password("abcdefghijkmnopqrstuvwxyz").lookup == "abcde"
    assert parse_app_password("abcde-fghij-kmnop-qrstu-vwxy0") is None  # 0 is not in the alphabet
    assert parse_app_password(PASSWORD) is None
