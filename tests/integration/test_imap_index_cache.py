"""SELECT answers from a folder index each worker process keeps in memory (store/index_cache.py);
what one worker changes, a SELECT in another shows at once, exactly as the store holds it.

Which worker accepts a connection is up to the kernel; `pinned` stops (SIGSTOP) the
other worker while a connection is made, so that the chosen one accepts it.
"""

import asyncio
import contextlib
import imaplib
import os
import re
import signal

import pytest

from postfach.config import load_config
from postfach.store.sqlite import SqliteStore
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import ServeProcess

USER = "alice@example.com"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


class TwoWorkers:
    def __init__(self, tmp_path) -> None:
        config_file = write_config(tmp_path, listeners=("imap",), extra="[auth]\nallow_plaintext_on_loopback = true\n")
        asyncio.run(_add_account(load_config(config_file, environ={})))
        self.process = ServeProcess(["--config", str(config_file), "--workers", "2"])
        self.address = self.process.addresses["imap"]

    def pids(self) -> dict[int, int]:
        return {int(m.group(1)): int(m.group(2)) for line in self.process.log if (m := STARTED.search(line))}

    @contextlib.contextmanager
    def pinned(self, number: int):
        others = [pid for other, pid in self.pids().items() if other != number]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)

    def login(self, number: int) -> imaplib.IMAP4:
        with self.pinned(number):
            client = imaplib.IMAP4(self.address.host, self.address.port, timeout=10)
        client.login(USER, PASSWORD)
        return client


async def _add_account(config) -> None:
    store = await SqliteStore.open(config.db_path, config.blob_dir)
    try:
        await make_account(store, USER)
    finally:
        await store.close()


@pytest.fixture
def workers(tmp_path):
    started = TwoWorkers(tmp_path)
    yield started
    started.process.kill()


def state(client: imaplib.IMAP4, folder: str) -> tuple[int, list[bytes]]:
    """EXISTS, and every message's UID, FLAGS and MODSEQ, as a fresh EXAMINE shows them (no \\Recent)."""
    typ, data = client.select(folder, readonly=True)
    assert typ == "OK", data
    count = int(data[0])
    if not count:
        return 0, []
    typ, lines = client.fetch("1:*", "(UID FLAGS MODSEQ)")
    assert typ == "OK"
    return count, sorted(line for line in lines if isinstance(line, bytes))


def test_select_in_one_worker_shows_every_change_made_in_the_other(workers):
    first = workers.login(1)
    first.enable("CONDSTORE")
    assert state(first, "INBOX") == (0, [])  # worker 1 holds INBOX in memory from here on
    second = workers.login(2)
    second.enable("CONDSTORE")
    message = b"Subject: scale\r\n\r\nbody\r\n"
    for flags in ("()", "(\\Seen)", "(\\Flagged $Work)", "()", "()"):
        assert second.append("INBOX", flags, None, message)[0] == "OK"
    assert state(first, "INBOX") == state(second, "INBOX")

    second.select("INBOX")
    second.store("1:2", "+FLAGS", "(\\Answered)")
    second.store("3", "-FLAGS", "($Work)")
    assert state(first, "INBOX") == state(second, "INBOX")

    second.select("INBOX")
    second.store("1", "+FLAGS", "(\\Deleted)")
    second.expunge()
    second.uid("MOVE", "4", "Archive")
    second.copy("1", "Archive")
    assert state(first, "INBOX") == state(second, "INBOX")
    assert state(first, "Archive") == state(second, "Archive")

    # A folder deleted and made again under its name: new uidvalidity, nothing of the old one shown.
    first.select("Archive")
    first.unselect()
    second.delete("Archive")
    second.create("Archive")
    assert state(first, "Archive") == (0, [])
    assert second.append("Archive", "(\\Draft)", None, message)[0] == "OK"
    assert state(first, "Archive") == state(second, "Archive")
    first.logout()
    second.logout()
    assert workers.process.stop(signal.SIGTERM) == 0
