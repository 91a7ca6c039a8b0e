"""Talking SMTP to an in-process server: smtplib in a thread, or raw bytes over a socket."""

import asyncio
import contextlib
import smtplib
import socket
import ssl

from postfach.model import INBOX
from tests.support.tls import insecure_context

PASSWORD = "correct horse battery"



@contextlib.contextmanager
def smtp_client(address, *, implicit_tls: bool = False, starttls: bool = False, login: str | None = None):
    """An smtplib client after EHLO (and STARTTLS, and AUTH, when asked)."""
    if implicit_tls:
        client = smtplib.SMTP_SSL(address.host, address.port, timeout=10, context=insecure_context())
    else:
        client = smtplib.SMTP(address.host, address.port, timeout=10)
    try:
        client.ehlo("client.example")
        if starttls:
            client.starttls(context=insecure_context())
            client.ehlo("client.example")
        if login:
            client.login(login, PASSWORD)
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


class RawSession:
    """A plain socket speaking SMTP line by line, for what smtplib would not send."""

    def __init__(self, address, context: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection((address.host, address.port), timeout=10)
        self.sock = context.wrap_socket(raw) if context else raw
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_once(self) -> bytes:
        """What one read from the socket gives (kept for the next reply() as well)."""
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> bytes:
        """One reply, all its lines joined by newlines."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)

    def command(self, text: bytes) -> bytes:
        self.send(text + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


async def inbox_messages(store, account) -> list[bytes]:
    """Every message in the account's INBOX, in uid order."""
    folder = await store.get_folder(account.id, INBOX)
    uids, _ = await store.message_sizes(folder.id)
    metas = await store.get_messages(folder.id, uids)
    return [await store.read_blob(meta.blob.sha256) for meta in metas]


async def inbox_metas(store, account):
    folder = await store.get_folder(account.id, INBOX)
    uids, _ = await store.message_sizes(folder.id)
    return await store.get_messages(folder.id, uids)


def below_trace(stored: bytes) -> bytes:
    """The message as sent: what follows our Return-Path and Received fields."""
    assert stored.startswith(b"Return-Path: <"), stored[:200]
    head, _, rest = stored.partition(b"\r\nReceived: ")
    # The Received field is folded over three lines ending with the date.
    lines = rest.split(b"\r\n")
    index = 1
    while lines[index].startswith(b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


def run(function, *args, **kwargs):
    """A blocking client step off the event loop the server runs on."""
    return asyncio.to_thread(function, *args, **kwargs)
