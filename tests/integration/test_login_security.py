"""Login quarantine, throttling, app passwords and the audit over real sockets (issue 6).

imaplib, poplib and smtplib talk to an in-process server; a client picks its
source address on loopback (127.0.0.x), so that "another address" is real.
Durations come from the configuration: a quarantine that must run out lasts
half a second, one that must hold lasts a minute, so a loaded machine cannot
make a check land on the wrong side of it.
"""

import asyncio
import imaplib
import logging
import poplib
import smtplib
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

from postfach.auth.audit_retention import AuditRetention
from postfach.config import load_config
from postfach.model import CredentialKey, LoginAttempt
from postfach.provisioning import Provisioning
from postfach.store.sqlite import SqliteStore
from tests.support.accounts import FAST_HASHES, PASSWORD
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

ALICE = "alice@example.com"
BOB = "bob@example.com"
HOME = "127.0.0.1"
ELSEWHERE = "127.0.0.2"
ATTACKER = "127.0.0.3"
LISTENERS = ("imaps", "pop3s", "submissions")
# Cheap argon2 in the configuration, equal to the accounts' hashes: no rehash at login.
FAST_ARGON2 = "argon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\n"


def auth_config(tmp_path, **settings):
    lines = {"quarantine_seconds": 60, "throttle_delay": 0, **settings}
    text = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in lines.items())
    return write_config(tmp_path, listeners=LISTENERS, extra=f"[auth]\n{FAST_ARGON2}{text}")


async def prepare(server, *addresses):
    provisioning = Provisioning(server.store, FAST_HASHES)
    if await server.store.get_domain("example.com") is None:
        await provisioning.add_domain("example.com")
    for address in addresses:
        await provisioning.add_mailbox(address, PASSWORD)
    return provisioning


# ---------------------------------------------------------------- clients from a chosen address


class Imap(imaplib.IMAP4_SSL):
    def __init__(self, server, source):
        self._source = source
        address = server.addresses["imaps"]
        super().__init__(address.host, address.port, ssl_context=insecure_context(), timeout=20)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class Pop3(poplib.POP3_SSL):
    def __init__(self, server, source):
        self._source = source
        address = server.addresses["pop3s"]
        super().__init__(address.host, address.port, timeout=20, context=insecure_context())

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def imap_login(server, user, password, source=HOME) -> bool:
    client = Imap(server, source)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error as error:
        assert "[AUTHENTICATIONFAILED]" in str(error)  # the same answer, whatever the reason
        return False
    finally:
        client.shutdown()
    return True


def pop3_login(server, user, password, source=HOME) -> bool:
    client = Pop3(server, source)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto as error:
        assert str(error).startswith("b'-ERR [AUTH]")
        return False
    finally:
        client.close()
    return True


def smtp_login(server, user, password, source=HOME) -> bool:
    address = server.addresses["submissions"]
    client = smtplib.SMTP_SSL(
        address.host, address.port, timeout=20, context=insecure_context(), source_address=(source, 0)
    )
    try:
        client.ehlo("client.example")
        client.esmtp_features["auth"] = "PLAIN"  # smtplib would try LOGIN after a failed PLAIN
        client.login(user, password)
    except smtplib.SMTPAuthenticationError as error:
        assert error.smtp_code == 535 and error.smtp_error.startswith(b"5.7.8")
        return False
    finally:
        client.close()
    return True


def login(door, *args, **kwargs):
    return asyncio.to_thread(door, *args, **kwargs)


async def quarantine_until(server, address=ALICE, credential="", source=""):
    return await server.store.quarantined_until(CredentialKey(address, credential, source), time.time())


# ---------------------------------------------------------------- the documented rule


async def test_three_wrong_imap_logins_then_the_right_password_is_refused_on_every_door(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = load_config(auth_config(tmp_path), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE, BOB)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        assert await quarantine_until(server) is not None
        assert not await login(pop3_login, server, ALICE, PASSWORD)
        assert not await login(smtp_login, server, ALICE, PASSWORD)
        assert not await login(imap_login, server, ALICE, PASSWORD)
        assert await login(pop3_login, server, BOB, PASSWORD)  # another account is not touched
        attempts = await server.store.list_login_attempts(ALICE, limit=10)
    assert [(a.protocol, a.result) for a in attempts[:3]] == [("imap", "failed"), ("smtp", "failed"), ("pop3", "failed")]
    assert attempts[0].reason == "in quarantine after wrong passwords" and attempts[0].source == HOME
    assert "quarantine started" in attempts[3].reason
    assert "in quarantine after wrong passwords" in caplog.text  # the log says why
    assert PASSWORD not in caplog.text and "wrong password 1" not in caplog.text


async def test_after_the_quarantine_the_right_password_works(tmp_path):
    config = load_config(auth_config(tmp_path, quarantine_seconds=0.5), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        until = await quarantine_until(server)
        assert until is not None
        await asyncio.sleep(max(0.0, until - time.time()) + 0.05)
        assert await login(pop3_login, server, ALICE, PASSWORD)
        # The failures before it no longer count: one more wrong password is only one.
        assert not await login(imap_login, server, ALICE, "yet another guess")
        assert await login(imap_login, server, ALICE, PASSWORD)


async def test_a_wrong_password_during_quarantine_starts_it_again_a_repeated_one_does_not(tmp_path):
    config = load_config(auth_config(tmp_path), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        first = await quarantine_until(server)
        await asyncio.sleep(0.05)
        assert not await login(smtp_login, server, ALICE, "wrong password 2")  # a repeat from the same source
        assert await quarantine_until(server) == first
        assert not await login(pop3_login, server, ALICE, "a new wrong password")
        second = await quarantine_until(server)
        assert second > first + 0.04
        assert not await login(imap_login, server, ALICE, PASSWORD)


async def test_the_same_stale_password_from_one_source_counts_once(tmp_path):
    config = load_config(auth_config(tmp_path), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        for _ in range(6):  # an old phone retrying the password it remembers
            assert not await login(imap_login, server, ALICE, "the old password")
        assert await quarantine_until(server) is None
        assert await login(imap_login, server, ALICE, PASSWORD)
        # From another address the same password is another failure.
        assert not await login(imap_login, server, ALICE, "the old password", source=ELSEWHERE)
        assert not await login(imap_login, server, ALICE, "the old password")
        assert await quarantine_until(server) is None


async def test_scope_account_and_address_keeps_other_addresses_working(tmp_path):
    config = load_config(auth_config(tmp_path, quarantine_scope="account+address"), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"guess {attempt}", source=ATTACKER)
        assert not await login(imap_login, server, ALICE, PASSWORD, source=ATTACKER)
        assert await login(imap_login, server, ALICE, PASSWORD, source=HOME)
        assert await login(pop3_login, server, ALICE, PASSWORD, source=ELSEWHERE)
        assert await quarantine_until(server, source=ATTACKER) is not None


# ---------------------------------------------------------------- throttling and bans


async def test_an_address_spraying_many_accounts_is_slowed_then_banned(tmp_path):
    config = load_config(
        auth_config(tmp_path, throttle_delay=0.3, throttle_max_delay=2.0, ban_accounts=4, throttle_window=60),
        environ={},
    )
    accounts = [f"user{number}@example.com" for number in range(5)]
    async with running_server(config) as server:
        await prepare(server, *accounts)
        started, ended = [], []
        for account in accounts[:4]:
            started.append(time.time())
            assert not await login(imap_login, server, account, "Summer2024!", source=ATTACKER)
            ended.append(time.time())
        # No wait after one failure; then 0.3 s after the second, 0.6 s after the third. (A
        # failure is recorded after its attempt started: lower bounds that load cannot break.)
        assert ended[2] - started[1] >= 0.3 and ended[3] - started[2] >= 0.6
        assert [ban.source for ban in await server.store.list_bans(time.time())] == [ATTACKER]
        # Banned: even a right password from there is refused, on every door.
        assert not await login(pop3_login, server, accounts[4], PASSWORD, source=ATTACKER)
        assert not await login(smtp_login, server, accounts[4], PASSWORD, source=ATTACKER)
        assert await login(imap_login, server, accounts[4], PASSWORD, source=HOME)
        attempts = await server.store.list_login_attempts(accounts[4], limit=5)
        assert [a.reason for a in attempts[1:]] == [
            "source address banned after failing for many accounts"
        ] * 2


# ---------------------------------------------------------------- app passwords


async def test_app_passwords_work_while_the_account_password_is_in_quarantine(tmp_path):
    config = load_config(auth_config(tmp_path), environ={})
    async with running_server(config) as server:
        provisioning = await prepare(server, ALICE)
        _, phone = await provisioning.add_app_password(ALICE, "phone")
        _, laptop = await provisioning.add_app_password(ALICE, "laptop")
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        assert not await login(imap_login, server, ALICE, PASSWORD)
        assert await login(imap_login, server, ALICE, phone)
        assert await login(smtp_login, server, ALICE, laptop.replace("-", ""))  # typed without dashes
        # Three wrong tries at the phone's password lock the phone's only.
        for attempt in "xyz":
            assert not await login(pop3_login, server, ALICE, phone[:6] + f"aaaa{attempt}-bbbbb-ccccc-ddddd")
        assert not await login(pop3_login, server, ALICE, phone)
        assert await login(pop3_login, server, ALICE, laptop)
        listed = {app.name: app for app in await provisioning.list_app_passwords(ALICE)}
        assert listed["laptop"].last_used_protocol == "pop3" and listed["laptop"].last_used_from == HOME
        assert listed["phone"].last_used_protocol == "imap"
        await provisioning.revoke_app_password(ALICE, "laptop")
        assert not await login(imap_login, server, ALICE, laptop)


# ---------------------------------------------------------------- the operator's view, restarts


def postfach(config_file, *args):
    return subprocess.run(
        [sys.executable, "-m", "postfach", *args, "--config", str(config_file)],
        capture_output=True, text=True, timeout=60,
    )


async def test_quarantine_list_release_and_audit_through_the_real_cli(tmp_path):
    config_file = auth_config(tmp_path)
    config = load_config(config_file, environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE, BOB)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        listed = await asyncio.to_thread(postfach, config_file, "quarantine", "list")
        assert listed.returncode == 0 and listed.stdout.startswith(ALICE + "\tpassword\tuntil ")
        released = await asyncio.to_thread(postfach, config_file, "quarantine", "release", ALICE)
        assert released.returncode == 0, released.stderr
        assert await login(pop3_login, server, ALICE, PASSWORD)
        again = await asyncio.to_thread(postfach, config_file, "quarantine", "release", ALICE)
        assert again.returncode == 1 and again.stderr == f"postfach: {ALICE} is not in quarantine\n"
        assert await login(smtp_login, server, BOB, PASSWORD)
        audit = await asyncio.to_thread(postfach, config_file, "audit", ALICE, "--limit", "2")
        everyone = await asyncio.to_thread(postfach, config_file, "audit")
    lines = audit.stdout.splitlines()
    assert audit.returncode == 0 and len(lines) == 2
    assert lines[0].split("\t")[1:6] == [ALICE, HOME, "pop3", "ok", "password"]
    assert lines[1].split("\t")[1:5] == [ALICE, HOME, "imap", "failed"]
    assert "quarantine started" in lines[1]
    assert everyone.stdout.splitlines()[0].split("\t")[1:5] == [BOB, HOME, "smtp", "ok"]
    assert len(everyone.stdout.splitlines()) == 5
    assert PASSWORD not in everyone.stdout and "wrong password 0" not in everyone.stdout


async def test_app_passwords_through_the_real_cli(tmp_path):
    config_file = auth_config(tmp_path)
    config = load_config(config_file, environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        added = await asyncio.to_thread(postfach, config_file, "mailbox", "app-password", "add", ALICE, "phone")
        assert added.returncode == 0, added.stderr
        password = added.stdout.splitlines()[1].removeprefix("password: ")
        assert await login(imap_login, server, ALICE, password)
        listed = await asyncio.to_thread(postfach, config_file, "mailbox", "app-password", "list", ALICE)
        assert listed.stdout.startswith("phone\tcreated ") and f"from {HOME} (imap)" in listed.stdout
        assert password not in listed.stdout
        revoked = await asyncio.to_thread(postfach, config_file, "mailbox", "app-password", "revoke", ALICE, "phone")
        assert revoked.returncode == 0
        assert not await login(imap_login, server, ALICE, password)


async def test_a_restart_keeps_the_quarantine(tmp_path):
    config = load_config(auth_config(tmp_path), environ={})
    async with running_server(config) as server:
        await prepare(server, ALICE)
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
    async with running_server(config) as server:
        assert not await login(pop3_login, server, ALICE, PASSWORD)
        assert [q.key.address for q in await server.store.list_quarantines(time.time())] == [ALICE]


def test_a_common_password_is_refused_with_a_clear_message(tmp_path):
    config_file = auth_config(tmp_path)
    assert postfach(config_file, "domain", "add", "example.com").returncode == 0
    refused = subprocess.run(
        [sys.executable, "-m", "postfach", "mailbox", "add", ALICE, "--password-stdin", "--config", str(config_file)],
        input="Password123\n", capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr == (
        "postfach: the password is one of the most common passwords, which are tried first; choose another\n"
    )
    assert postfach(config_file, "mailbox", "list").stdout == ""


# ---------------------------------------------------------------- removed mailboxes, audit retention


async def test_a_mailbox_removed_in_quarantine_and_added_again_starts_clean(tmp_path):
    config_file = auth_config(tmp_path)
    config = load_config(config_file, environ={})
    async with running_server(config) as server:
        provisioning = await prepare(server, ALICE)
        await provisioning.add_app_password(ALICE, "phone")
        for attempt in range(3):
            assert not await login(imap_login, server, ALICE, f"wrong password {attempt}")
        assert await quarantine_until(server) is not None
        removed = await asyncio.to_thread(postfach, config_file, "mailbox", "remove", ALICE)
        assert removed.returncode == 0, removed.stderr
        await provisioning.add_mailbox(ALICE, PASSWORD)
        assert await login(imap_login, server, ALICE, PASSWORD)
        assert await server.store.list_quarantines(time.time()) == []
        assert await provisioning.list_app_passwords(ALICE) == []
        # Its failures are gone too: one wrong password now is one, not a fourth.
        assert not await login(pop3_login, server, ALICE, "a new guess")
        assert await quarantine_until(server) is None
        assert await login(smtp_login, server, ALICE, PASSWORD)


def attempt_at(at: float, reason: str) -> LoginAttempt:
    return LoginAttempt(datetime.fromtimestamp(at, timezone.utc), ALICE, "", HOME, "imap", "ok", reason)


async def reasons(store) -> list[str]:
    return [attempt.reason for attempt in await store.list_login_attempts(limit=100)]


async def test_the_running_server_prunes_the_audit_when_it_starts(tmp_path):
    config = load_config(write_config(tmp_path, listeners=(), extra="[audit]\nretention_days = 1\n"), environ={})
    store = await SqliteStore.open(config.db_path, config.blob_dir)
    now = time.time()
    for age, reason in ((3 * 86400, "old"), (86400 + 60, "old"), (86400 - 60, "kept"), (0, "kept")):
        await store.add_login_attempt(attempt_at(now - age, reason))
    await store.close()
    async with running_server(config) as server:
        deadline = time.monotonic() + 10
        while await reasons(server.store) != ["kept", "kept"]:
            assert time.monotonic() < deadline, await reasons(server.store)
            await asyncio.sleep(0.05)


async def test_audit_retention_prunes_again_every_interval(tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    clock = [1_000_000_000.0]
    retention = AuditRetention(store, 1, interval=0.05, clock=lambda: clock[0])
    try:
        await store.add_login_attempt(attempt_at(clock[0] - 43200, "half a day old"))
        retention.start()
        await asyncio.sleep(0.3)  # several intervals: a younger attempt stays
        assert await reasons(store) == ["half a day old"]
        clock[0] += 86400  # a day later it is older than the retention, and the next round takes it
        deadline = time.monotonic() + 10
        while await reasons(store):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await retention.stop()
        await store.close()
