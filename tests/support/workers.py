"""A real `postfach serve --workers N` with one account, and a way to choose the worker of a connection.

Which worker accepts a connection depends on the client's port (net.worker_index
computes it as the kernel does). `pinned` makes the connections of a block come
from ports that lead to the chosen worker.
"""

import asyncio
import contextlib
import errno
import imaplib
import random
import re
import signal
import socket
from unittest import mock

from postfach.config import load_config
from postfach.net import worker_index
from postfach.store.sqlite import SqliteStore
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import ServeProcess
from tests.support.tls import insecure_context

USER = "alice@example.com"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
# Below Linux's ephemeral range (32768-60999), so that a chosen port is rarely taken.
_CLIENT_PORTS = range(20000, 32768)
_create_connection = socket.create_connection


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
        """Connections made in this block (by socket.create_connection, as imaplib, poplib and
        smtplib do) are accepted by worker `number`."""

        def from_a_port_of_the_worker(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **rest):
            while True:
                port = random.choice(_CLIENT_PORTS)
                if worker_index(port, self.count) != number - 1:
                    continue
                try:
                    return _create_connection(address, timeout, ("127.0.0.1", port), **rest)
                except OSError as error:
                    if error.errno != errno.EADDRINUSE:
                        raise

        with mock.patch("socket.create_connection", from_a_port_of_the_worker):
            yield

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
