"""A real `postfach serve --workers N` with one account, and a way to choose the worker of a connection.

Which worker accepts a connection is up to the kernel. To put a connection on
a chosen worker, `pinned` stops (SIGSTOP) every other worker while the
connection is made, so only the chosen one can accept it.
"""

import asyncio
import contextlib
import imaplib
import os
import re
import signal

from postfach.config import load_config
from postfach.store.sqlite import SqliteStore
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import ServeProcess
from tests.support.tls import insecure_context

USER = "alice@example.com"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


class Workers:
    """A real `postfach serve --workers 2` with one account."""

    def __init__(self, tmp_path, extra: str = "", auth: str = "", count: int = 2) -> None:
        config_file = write_config(tmp_path, extra=f"{extra}[auth]\nallow_plaintext_on_loopback = true\n{auth}")
        asyncio.run(_add_account(load_config(config_file, environ={})))
        self.count = count
        self.process = ServeProcess(["--config", str(config_file), "--workers", str(count)])
        self.addresses = self.process.addresses

    def pids(self) -> dict[int, int]:
        """The running worker of each number (the newest, after a restart)."""
        pids = {}
        for line in self.process.log:
            if match := STARTED.search(line):
                pids[int(match.group(1))] = int(match.group(2))
        assert len(pids) == self.count, "".join(self.process.log)
        return pids

    @contextlib.contextmanager
    def pinned(self, number: int):
        """Connections made in this block are accepted by worker `number`."""
        others = [pid for other, pid in self.pids().items() if other != number]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)

    def imap(self, number: int) -> imaplib.IMAP4_SSL:
        address = self.addresses["imaps"]
        with self.pinned(number):
            return imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)

    def login(self, number: int) -> imaplib.IMAP4_SSL:
        client = self.imap(number)
        client.login(USER, PASSWORD)
        return client

    def stop(self) -> int:
        return self.process.stop(signal.SIGTERM)


async def _add_account(config) -> None:
    store = await SqliteStore.open(config.db_path, config.blob_dir)
    try:
        await make_account(store, USER)
    finally:
        await store.close()
