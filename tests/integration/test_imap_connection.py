"""IMAP before and around login, with imaplib over real sockets: TLS rules, LOGIN, AUTHENTICATE, errors."""

import asyncio
import base64
import imaplib
import socket
import ssl
import time

import pytest

from postfach import net
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import make_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"



@pytest.fixture
async def server(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("imap", "imaps"))) as running:
        await make_account(running.store, USER)
        yield running


def plain(server) -> imaplib.IMAP4:
    address = server.addresses["imap"]
    return imaplib.IMAP4(address.host, address.port, timeout=10)


def secure(server) -> imaplib.IMAP4_SSL:
    address = server.addresses["imaps"]
    return imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)


def in_thread(function):
    """imaplib blocks: run the client in a thread, the server on the test's event loop."""

    async def run(*args):
        return await asyncio.to_thread(function, *args)

    return run


@in_thread
def check_plain_port_requires_starttls(server):
    client = plain(server)
    assert "STARTTLS" in client.capabilities and "LOGINDISABLED" in client.capabilities
    assert "IMAP4REV1" in client.capabilities and "IMAP4REV2" in client.capabilities
    typ, data = client._simple_command("LOGIN", USER, client._quote(PASSWORD))
    assert typ == "NO" and b"[PRIVACYREQUIRED]" in data[0]
    client.starttls(insecure_context())
    assert "LOGINDISABLED" not in client.capabilities and "STARTTLS" not in client.capabilities
    assert "AUTH=PLAIN" in client.capabilities
    typ, data = client.login(USER, PASSWORD)
    assert typ == "OK"
    assert client.logout()[0] == "BYE"


async def test_plain_port_requires_starttls_before_login(server):
    await check_plain_port_requires_starttls(server)


@in_thread
def check_logins(server):
    client = secure(server)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, "wrong password")
    assert client.login("Alice@Example.COM", PASSWORD)[0] == "OK"
    client.logout()
    # AUTHENTICATE PLAIN, the client answering the continuation.
    client = secure(server)
    assert client.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())[0] == "OK"
    client.logout()
    # SASL-IR: the response in the command itself (RFC 4959).
    client = secure(server)
    response = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    typ, data = client._simple_command("AUTHENTICATE", "PLAIN", response)
    assert typ == "OK", data
    client.logout()


async def test_login_and_authenticate_plain(server):
    await check_logins(server)


@in_thread
def check_errors_keep_the_session(server):
    client = secure(server)
    assert raw_command(client, b"t1 FROBNICATE").startswith(b"t1 BAD")
    assert b"not allowed in the not authenticated state" in raw_command(client, b"t2 SELECT INBOX")
    client.login(USER, PASSWORD)
    # An over-long command line gets BAD; the next command works.
    assert raw_command(client, b"t3 NOOP " + b"x" * 70_000).startswith(b"t3 BAD")
    assert client.noop()[0] == "OK"
    typ, data = client.xatom("ID", '("name" "test")')
    assert typ == "OK" and b"Postfach" in client.untagged_responses.pop("ID")[0]
    typ, data = client.namespace()
    assert data == [b'(("" "/")) NIL NIL']
    typ, data = client.xatom("ENABLE", "UTF8=ACCEPT")
    assert typ == "OK" and client.untagged_responses.pop("ENABLED") == [b"UTF8=ACCEPT"]
    client.logout()


def raw_command(client: imaplib.IMAP4, line: bytes) -> bytes:
    """Send a line imaplib would refuse to send; return the tagged answer."""
    tag = line.split(b" ", 1)[0]
    client.send(line + b"\r\n")
    while not (answer := client.readline()).startswith(tag + b" "):
        pass
    return answer


async def test_errors_are_bad_and_the_session_goes_on(server):
    await check_errors_keep_the_session(server)


def raw_exchange(address, payload: bytes, *, tls_after: bytes | None = None, read_seconds: float = 2.0) -> bytes:
    with socket.create_connection((address.host, address.port), timeout=10) as sock:
        sock.recv(4096)  # greeting
        sock.sendall(payload)
        if tls_after is not None:
            answer = b""
            while b"a OK" not in answer:
                answer += sock.recv(4096)
            with insecure_context().wrap_socket(sock) as wrapped:
                wrapped.settimeout(read_seconds)
                wrapped.sendall(tls_after)
                received = b""
                try:
                    while chunk := wrapped.recv(4096):
                        received += chunk
                except (TimeoutError, ssl.SSLError, ConnectionError):
                    pass
                return answer + b"|TLS|" + received
        sock.settimeout(read_seconds)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except TimeoutError:
            return received + b"|OPEN|"
        return received + b"|CLOSED|"


async def test_commands_pipelined_before_starttls_are_never_run(server):
    address = server.addresses["imap"]
    answer = await asyncio.to_thread(
        raw_exchange, address, b"a STARTTLS\r\nb CAPABILITY\r\n", tls_after=b"c NOOP\r\n"
    )
    before, _, after = answer.partition(b"|TLS|")
    assert b"a OK" in before and b"b " not in before
    assert b"b OK" not in after and b"c OK" in after


async def test_tls_handshake_on_the_plain_port_closes_the_connection(server):
    address = server.addresses["imap"]
    hello = bytes.fromhex("16030100a5010000a10303") + bytes(200)
    answer = await asyncio.to_thread(raw_exchange, address, hello)
    assert answer.endswith(b"|CLOSED|")


async def test_binary_garbage_ends_in_bye(server):
    address = server.addresses["imap"]
    garbage = b"".join(bytes([n % 256]) * 7 + b"\r\n" for n in range(1, 60))
    answer = await asyncio.to_thread(raw_exchange, address, garbage)
    assert b"* BYE" in answer and answer.endswith(b"|CLOSED|")


def logged_in_waiting(server, idling: bool) -> imaplib.IMAP4_SSL:
    client = secure(server)
    client.login(USER, PASSWORD)
    client.select("INBOX")
    if idling:
        client.send(b"i1 IDLE\r\n")
        assert client.readline().startswith(b"+ ")
    return client


def bye_after(client: imaplib.IMAP4_SSL, started: float) -> tuple[bytes, float]:
    """The next line the server sends, and how long after `started` it came."""
    line = client.readline()
    return line, time.monotonic() - started


async def test_clients_waiting_for_their_next_command_hear_bye_at_shutdown(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("imaps",))) as server:
        await make_account(server.store, USER)
        between, idling = [await asyncio.to_thread(logged_in_waiting, server, idle) for idle in (False, True)]
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop())
        heard = await asyncio.gather(*(asyncio.to_thread(bye_after, client, started) for client in (between, idling)))
        await stopping
    assert [line for line, _ in heard] == [b"* BYE server shutting down\r\n"] * 2
    # At once, not after the grace period that lets a command in progress finish.
    assert max(after for _, after in heard) < net.SHUTDOWN_GRACE_SECONDS / 2
