"""`postfach serve --workers N`: the rules of one server hold across its worker processes (issue 7 point 1).

Connections are put on a chosen worker with `Workers.pinned` (tests/support/workers.py).
"""

import asyncio
import imaplib
import os
import re
import poplib
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from postfach.net import worker_index
from tests.support.accounts import PASSWORD
from tests.support.config import write_config
from tests.support.idle import Idler
from tests.support.workers import USER, Workers

DEADLINE = 1.0


@pytest.fixture
def make_workers(tmp_path):
    started = []

    def make(extra: str = "", auth: str = "", count: int = 2) -> Workers:
        workers = Workers(tmp_path, extra, auth, count)
        started.append(workers)
        return workers

    yield make
    for workers in started:
        workers.process.kill()


def test_idle_in_one_worker_hears_of_mail_flags_and_expunges_made_in_another(make_workers):
    workers = make_workers()
    idler = Idler(workers.login(1))
    smtp = workers.addresses["smtp"]
    with workers.pinned(2):
        mx = smtplib.SMTP(smtp.host, smtp.port, timeout=10)
    with mx:
        mx.sendmail("someone@example.org", [USER], b"Subject: hello\r\n\r\nnew mail\r\n")
    assert idler.wait_for(b"EXISTS") < DEADLINE

    other = workers.login(2)
    other.select("INBOX")
    assert max(idler.hears_flag_and_expunge(other)) < DEADLINE
    other.logout()
    assert workers.stop() == 0


def test_connections_opened_at_once_are_spread_over_the_workers(make_workers):
    # One socket shared by the workers went to the one that woke first, which took a whole
    # burst. Now each worker has its own, and the client's port picks it (net.bind_sockets).
    workers = make_workers()
    address = workers.addresses["imap"]

    async def log_in_together(count: int) -> list[int]:
        clients = await asyncio.gather(*(asyncio.open_connection(address.host, address.port) for _ in range(count)))
        for reader, writer in clients:
            assert (await reader.readline()).startswith(b"* OK")
            writer.write(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        for reader, writer in clients:
            while not (await reader.readline()).startswith(b"a OK"):
                pass
            writer.close()
        return [writer.get_extra_info("sockname")[1] for _, writer in clients]

    ports = asyncio.run(log_in_together(20))
    logged_in = re.compile(r"worker (\d+) .* logged in from 127\.0\.0\.1:(\d+)")
    deadline = time.monotonic() + 5
    while True:  # the log is read by a thread of its own: it may lag a little
        by_port = {int(match[2]): int(match[1]) for line in workers.process.log if (match := logged_in.search(line))}
        if len(by_port) == len(ports) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert by_port == {port: worker_index(port, 2) + 1 for port in ports}
    assert set(by_port.values()) == {1, 2}
    assert workers.stop() == 0


def test_connections_per_address_count_on_every_worker(make_workers):
    workers = make_workers("[imap]\nmax_connections_per_address = 2\n")
    first, second = workers.imap(1), workers.imap(2)
    for number in (1, 2):
        with pytest.raises(imaplib.IMAP4.error, match="too many connections"):
            workers.imap(number)
    first.logout()
    # The supervisor hears of the close a moment after the client does.
    deadline = time.monotonic() + 5
    while True:
        try:
            third = workers.imap(1)
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline, "a closed connection was never given back"
            time.sleep(0.05)
    third.logout()
    second.logout()
    assert workers.stop() == 0


def test_connections_per_account_count_on_every_worker(make_workers):
    workers = make_workers("[imap]\nmax_connections_per_account = 2\n")
    sessions = [workers.login(1), workers.login(2)]
    refused = workers.imap(1)
    with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
        refused.login(USER, PASSWORD)
    for session in sessions:
        session.logout()
    assert workers.stop() == 0


def test_pop3_maildrop_lock_holds_across_workers(make_workers):
    workers = make_workers("[pop3]\nexclusive_lock = true\n")
    address = workers.addresses["pop3"]
    with workers.pinned(1):
        holder = poplib.POP3(address.host, address.port, timeout=10)
    holder.user(USER)
    holder.pass_(PASSWORD)
    with workers.pinned(2):
        other = poplib.POP3(address.host, address.port, timeout=10)
    other.user(USER)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        other.pass_(PASSWORD)
    holder.quit()
    other.close()
    assert workers.stop() == 0


def test_quarantine_from_one_worker_holds_in_another(make_workers):
    workers = make_workers(auth="quarantine_failures = 3\n")
    for attempt in range(3):  # three different wrong passwords (one repeated counts once)
        client = workers.imap(1)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(USER, f"wrong password {attempt}")
        client.logout()
    client = workers.imap(2)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, PASSWORD)
    client.logout()
    assert workers.stop() == 0


def test_a_killed_worker_is_replaced_and_gives_back_what_it_held(make_workers):
    workers = make_workers("[imap]\nmax_connections_per_address = 2\n")
    held = [workers.imap(1), workers.imap(1)]
    old_pid = workers.pids()[1]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while workers.pids()[1] == old_pid or "postfach.server: postfach ready" not in "".join(workers.process.log):
        assert time.monotonic() < deadline, "".join(workers.process.log)
        time.sleep(0.1)
    for client in held:
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            client.noop()
    # Both of the dead worker's connections were given back: two new ones are admitted.
    deadline = time.monotonic() + 10
    fresh = []
    while len(fresh) < 2:
        try:
            fresh.append(workers.login(2))
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline, "the dead worker's connections still count"
            time.sleep(0.1)
    for client in fresh:
        client.logout()
    replacement = workers.login(1)
    replacement.logout()
    assert "worker 1 ended" in "".join(workers.process.log)
    assert workers.stop() == 0


def test_sigterm_stops_every_worker(make_workers):
    workers = make_workers()
    pids = workers.pids().values()
    assert workers.stop() == 0, "".join(workers.process.log)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "".join(workers.process.log).count("postfach.server: stopped") == 2


def serve_refused(*args: str) -> str:
    """`postfach serve ARGS` that must refuse to start: its one line of stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "postfach", "serve", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("count", ["0", "-1", "many", "257"])
def test_a_bad_worker_count_is_one_sentence(tmp_path, count):
    message = serve_refused("--config", str(write_config(tmp_path)), "--workers", count)
    assert "workers" in message


def test_workers_in_the_config_file_must_be_a_positive_number(tmp_path):
    message = serve_refused("--config", str(write_config(tmp_path, extra="workers = 0\n")))
    assert "workers" in message
