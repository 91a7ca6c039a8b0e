"""IMAP resource rules: COMPRESS=DEFLATE, connection limits, timeouts, a selected folder deleted elsewhere."""

import asyncio
import imaplib
import socket
import time
import zlib

from postfach.config import load_config
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"



def imap_config(tmp_path, extra: str = ""):
    return load_config(write_config(tmp_path, listeners=("imaps",), extra=extra), environ={})


def secure(server) -> imaplib.IMAP4_SSL:
    address = server.addresses["imaps"]
    return imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)


class RawClient:
    """Just enough IMAP over TLS to speak compressed."""

    def __init__(self, server) -> None:
        address = server.addresses["imaps"]
        self.sock = insecure_context().wrap_socket(socket.create_connection((address.host, address.port), timeout=10))
        self.deflate = None
        self.inflate = None
        self.pending = b""
        self.read_line()

    def send(self, line: bytes) -> None:
        data = line + b"\r\n"
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.pending += self.inflate.decompress(chunk) if self.inflate else chunk
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line

    def command(self, tag: bytes, line: bytes) -> list[bytes]:
        self.send(tag + b" " + line)
        lines = []
        while not (lines and lines[-1].startswith(tag + b" ")):
            lines.append(self.read_line())
        return lines


async def test_compress_deflate_carries_the_session(tmp_path):
    async with running_server(imap_config(tmp_path)) as server:
        await make_account(server.store, USER)
        inbox = await server.store.get_folder((await server.store.get_account(USER)).id, "INBOX")
        body = b"Subject: squeeze\r\n\r\n" + b"compressible text " * 500 + b"\r\n"
        await server.store.append(inbox.id, body)

        def scenario():
            client = RawClient(server)
            assert client.command(b"a", f'LOGIN {USER} "{PASSWORD}"'.encode())[-1].startswith(b"a OK")
            capabilities = client.command(b"b", b"CAPABILITY")[0]
            assert b"COMPRESS=DEFLATE" in capabilities
            assert client.command(b"c", b"COMPRESS DEFLATE")[-1].startswith(b"c OK")
            client.deflate, client.inflate = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
            assert client.command(b"d", b"SELECT INBOX")[-1].startswith(b"d OK")
            fetched = client.command(b"e", b"FETCH 1 BODY.PEEK[]")
            assert fetched[-1].startswith(b"e OK") and fetched[0].endswith(b"{%d}" % len(body))
            again = client.command(b"f", b"COMPRESS DEFLATE")[-1]
            assert again.startswith(b"f NO [COMPRESSIONACTIVE]")
            assert client.command(b"g", b"LOGOUT")[0].startswith(b"* BYE")

        await asyncio.to_thread(scenario)


async def test_connections_per_address_and_per_account_are_limited(tmp_path):
    extra = "[imap]\nmax_connections_per_address = 3\nmax_connections_per_account = 2\n"
    async with running_server(imap_config(tmp_path, extra)) as server:
        await make_account(server.store, USER)

        def scenario():
            first, second = secure(server), secure(server)
            first.login(USER, PASSWORD)
            second.login(USER, PASSWORD)
            third = secure(server)
            try:
                third.login(USER, PASSWORD)
                raise AssertionError("a third session of the account was let in")
            except imaplib.IMAP4.error as refusal:
                assert "LIMIT" in str(refusal)
            # The fourth connection from this address is turned away at the door.
            address = server.addresses["imaps"]
            with insecure_context().wrap_socket(socket.create_connection((address.host, address.port), timeout=10)) as fourth:
                assert fourth.recv(1024).startswith(b"* BYE [UNAVAILABLE]")
            first.logout()
            third.login(USER, PASSWORD)  # a place was freed
            for client in (second, third):
                client.logout()

        await asyncio.to_thread(scenario)


async def test_a_silent_unauthenticated_connection_is_dropped(tmp_path):
    async with running_server(imap_config(tmp_path, "[imap]\nlogin_timeout = 1\n")) as server:

        def scenario():
            address = server.addresses["imaps"]
            with insecure_context().wrap_socket(socket.create_connection((address.host, address.port), timeout=10)) as sock:
                began = time.monotonic()
                received = b""
                while chunk := sock.recv(1024):
                    received += chunk
                assert b"* BYE" in received and time.monotonic() - began < 8

        await asyncio.to_thread(scenario)


async def test_a_session_whose_folder_is_deleted_elsewhere_is_told(tmp_path):
    async with running_server(imap_config(tmp_path)) as server:
        await make_account(server.store, USER)

        def scenario():
            watcher, other = secure(server), secure(server)
            for client in (watcher, other):
                client.login(USER, PASSWORD)
            other.create("Projects")
            watcher.select("Projects")
            other.delete("Projects")
            try:
                watcher.noop()
            except imaplib.IMAP4.abort as bye:
                assert "deleted" in str(bye)
            else:
                raise AssertionError("no BYE after the selected folder was deleted")
            other.logout()

        await asyncio.to_thread(scenario)
