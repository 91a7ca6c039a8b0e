"""POP3 over real sockets with poplib against an in-process server on the shared store."""

import asyncio
import base64
import contextlib
import poplib
import socket
import time

import pytest

from postfach.auth.passwords import Passwords
from postfach.config import load_config
from postfach.pop3.server import SEND_SIZE
from postfach.provisioning import Provisioning
from postfach.store.changes import MessagesExpunged
from tests.support.config import write_config
from tests.support.messages import make_message
from tests.support.server import running_server
from tests.support.tls import insecure_context

ADDRESS = "alice@example.com"
PASSWORD = "correct horse battery"
OTHER = "bob@example.com"
TIMEOUT = 20



@contextlib.asynccontextmanager
async def pop3_server(tmp_path, extra: str = ""):
    config = load_config(write_config(tmp_path, listeners=("pop3", "pop3s"), extra=extra), environ={})
    async with running_server(config) as server:
        provisioning = Provisioning(server.store, Passwords())
        await provisioning.add_domain("example.com")
        account = await provisioning.add_mailbox(ADDRESS, PASSWORD)
        await provisioning.add_mailbox(OTHER, PASSWORD)
        server.account = account
        server.inbox = await server.store.get_folder(account.id, "INBOX")
        yield server


@pytest.fixture
async def server(tmp_path):
    async with pop3_server(tmp_path) as running:
        yield running


def connect_stls(server) -> poplib.POP3:
    address = server.addresses["pop3"]
    pop = poplib.POP3(address.host, address.port, timeout=TIMEOUT)
    pop.stls(insecure_context())
    return pop


def connect_pop3s(server) -> poplib.POP3_SSL:
    address = server.addresses["pop3s"]
    return poplib.POP3_SSL(address.host, address.port, timeout=TIMEOUT, context=insecure_context())


def login(server, user=ADDRESS, password=PASSWORD) -> poplib.POP3:
    pop = connect_pop3s(server)
    pop.user(user)
    pop.pass_(password)
    return pop


def retr_bytes(pop: poplib.POP3, number: int) -> bytes:
    # poplib removes the dot-stuffing and splits at CRLF; put the lines back together.
    _, lines, _ = pop.retr(number)
    return b"".join(line + b"\r\n" for line in lines)


def top_bytes(pop: poplib.POP3, number: int, count: int) -> bytes:
    _, lines, _ = pop.top(number, count)
    return b"".join(line + b"\r\n" for line in lines)


def run(function, *args):
    return asyncio.to_thread(function, *args)


async def append(server, *messages: bytes) -> None:
    for message in messages:
        await server.store.append(server.inbox.id, message)


async def unlocked(server, account_id: int) -> None:
    """Wait for the server to notice a dropped connection and let go of the maildrop."""
    for _ in range(500):
        if await server.pop3.locks.acquire(account_id, wait=0):
            server.pop3.locks.release(account_id)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the maildrop lock was never released")


# --- TLS and login ------------------------------------------------------------------------


async def test_stls_then_user_pass(server):
    await append(server, make_message())

    def scenario():
        pop = connect_stls(server)
        assert pop.user(ADDRESS) == b"+OK send PASS"
        assert pop.pass_(PASSWORD).startswith(b"+OK 1 messages")
        assert pop.stat()[0] == 1
        assert pop.quit().startswith(b"+OK")

    await run(scenario)


async def test_stls_then_auth_plain_with_initial_response_and_with_continuation(server):
    credentials = base64.b64encode(f"\0{ADDRESS}\0{PASSWORD}".encode()).decode()

    def scenario():
        pop = connect_stls(server)
        assert pop._shortcmd("AUTH PLAIN " + credentials).startswith(b"+OK 0 messages")
        pop.quit()
        pop = connect_stls(server)
        pop._putcmd("AUTH PLAIN")
        assert pop._getline()[0] == b"+ "
        assert pop._shortcmd(credentials).startswith(b"+OK")
        pop.quit()

    await run(scenario)


async def test_pop3s(server):
    await append(server, make_message(), make_message())

    def scenario():
        pop = login(server)
        assert pop.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert pop.stat()[0] == 2
        pop.quit()

    await run(scenario)


async def test_login_refused_before_stls(server):
    credentials = base64.b64encode(f"\0{ADDRESS}\0{PASSWORD}".encode()).decode()

    def scenario():
        address = server.addresses["pop3"]
        pop = poplib.POP3(address.host, address.port, timeout=TIMEOUT)
        for attempt in (lambda: pop.user(ADDRESS), lambda: pop.pass_(PASSWORD),
                        lambda: pop._shortcmd("AUTH PLAIN " + credentials)):
            with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[AUTH\] plaintext login is not allowed"):
                attempt()
        with pytest.raises(poplib.error_proto, match="only valid after login"):
            pop.stat()
        pop.quit()

    await run(scenario)


async def test_plaintext_on_loopback_when_configured(tmp_path):
    async with pop3_server(tmp_path, extra="[auth]\nallow_plaintext_on_loopback = true\n") as server:
        def scenario():
            address = server.addresses["pop3"]
            pop = poplib.POP3(address.host, address.port, timeout=TIMEOUT)
            assert {"USER", "SASL", "STLS"} <= set(pop.capa())
            pop.user(ADDRESS)
            assert pop.pass_(PASSWORD).startswith(b"+OK")
            pop.quit()

        await run(scenario)


async def test_capa_before_and_after_stls(server):
    base = {"TOP": [], "UIDL": [], "RESP-CODES": [], "AUTH-RESP-CODE": [], "PIPELINING": [],
            "EXPIRE": ["NEVER"], "LOGIN-DELAY": ["0"], "IMPLEMENTATION": ["Postfach"]}

    def scenario():
        address = server.addresses["pop3"]
        pop = poplib.POP3(address.host, address.port, timeout=TIMEOUT)
        assert pop.capa() == {**base, "STLS": []}
        pop.stls(insecure_context())
        assert pop.capa() == {**base, "USER": [], "SASL": ["PLAIN"]}
        pop.quit()
        pop = connect_pop3s(server)
        assert pop.capa() == {**base, "USER": [], "SASL": ["PLAIN"]}
        pop.quit()

    await run(scenario)


async def test_wrong_password_is_auth_error_and_the_session_goes_on(server):
    def scenario():
        pop = connect_pop3s(server)
        pop.user(ADDRESS)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] wrong user name or password"):
            pop.pass_("not the password")
        pop.user(ADDRESS)
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        pop.quit()

    await run(scenario)


async def test_concurrent_sessions_share_the_maildrop_by_default(server):
    await append(server, make_message(), make_message())

    def scenario():
        first, second = login(server), login(server)
        first.dele(1)
        first.quit()
        with pytest.raises(poplib.error_proto, match="removed"):
            second.retr(1)
        assert second.retr(2)[0].startswith(b"+OK")
        second.quit()

    await run(scenario)
    assert (await server.store.message_sizes(server.inbox.id))[0] == [2]


@pytest.fixture
async def locking_server(tmp_path):
    async with pop3_server(tmp_path, extra="[pop3]\nexclusive_lock = true\n") as running:
        yield running


async def test_two_concurrent_logins_get_in_use_with_an_exclusive_lock(locking_server):
    server = locking_server

    def scenario():
        first = login(server)
        second = connect_pop3s(server)
        second.user(ADDRESS)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            second.pass_(PASSWORD)
        login(server, OTHER).quit()  # another maildrop is not locked
        first.quit()
        second.user(ADDRESS)
        assert second.pass_(PASSWORD).startswith(b"+OK")
        second.quit()

    await run(scenario)


async def test_stls_command_injection_is_not_executed(server):
    """Commands pipelined after STLS in plaintext are discarded, not run inside TLS."""

    def scenario():
        address = server.addresses["pop3"]
        with socket.create_connection((address.host, address.port), timeout=TIMEOUT) as raw:
            assert read_line(raw).startswith(b"+OK")
            raw.sendall(f"STLS\r\nUSER {ADDRESS}\r\n".encode())
            assert read_line(raw) == b"+OK begin TLS negotiation\r\n"
            with insecure_context().wrap_socket(raw) as tls:
                tls.sendall(f"PASS {PASSWORD}\r\n".encode())
                assert read_line(tls) == b"-ERR send USER first\r\n"
                tls.sendall(b"STAT\r\n")
                assert read_line(tls) == b"-ERR STAT is only valid after login\r\n"

    await run(scenario)


def read_line(sock) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


# --- the maildrop -------------------------------------------------------------------------


async def test_stat_list_uidl_exact(server):
    messages = [make_message(size) for size in (0, 1000, 50_000)]
    await append(server, *messages)
    validity = server.inbox.uidvalidity

    def scenario():
        pop = login(server)
        assert pop.stat() == (3, sum(map(len, messages)))
        assert pop.list()[1] == [f"{n} {len(m)}".encode() for n, m in enumerate(messages, 1)]
        assert pop.list(2) == f"+OK 2 {len(messages[1])}".encode()
        assert pop.uidl()[1] == [f"{n} {validity}.{n}".encode() for n in (1, 2, 3)]
        assert pop.uidl(3) == f"+OK 3 {validity}.3".encode()
        pop.quit()

    await run(scenario)


async def test_retr_whose_reply_ends_exactly_at_a_write_boundary(server):
    # The reply goes out in pieces of SEND_SIZE; here the final ".\r\n" completes one, and
    # nothing is left for a last write.
    head = b"From: a@example.org\r\nSubject: edge\r\n\r\n"
    length = SEND_SIZE - 3  # status line + message + ".\r\n" == SEND_SIZE, lines of 78
    while len(b"+OK %d octets\r\n" % length) + length + 3 != SEND_SIZE or (length - len(head)) % 78 < 2:
        length -= 1
    lines, rest = divmod(length - len(head), 78)
    edge = head + (b"x" * 76 + b"\r\n") * lines + b"y" * (rest - 2) + b"\r\n"
    assert len(edge) == length
    await append(server, edge, b"Subject: next\r\n\r\nafter the edge\r\n")

    def scenario():
        pop = login(server)
        assert retr_bytes(pop, 1) == edge
        assert retr_bytes(pop, 2) == b"Subject: next\r\n\r\nafter the edge\r\n"
        pop.quit()

    await asyncio.to_thread(scenario)


async def test_retr_and_top_byte_exact(server):
    dots = (b"From: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nmiddle . dot\r\n"
            b"...\r\n.\r\nlast\r\n")
    big = make_message(3 * 1024 * 1024)
    await append(server, dots, big)

    def scenario():
        pop = login(server)
        assert retr_bytes(pop, 1) == dots
        assert retr_bytes(pop, 2) == big
        header, body = dots.split(b"\r\n\r\n", 1)
        assert top_bytes(pop, 1, 0) == header + b"\r\n\r\n"
        assert top_bytes(pop, 1, 3) == header + b"\r\n\r\n" + b"".join(body.split(b"\r\n")[i] + b"\r\n" for i in range(3))
        assert top_bytes(pop, 1, 1000) == dots
        big_header = big.split(b"\r\n\r\n", 1)[0]
        assert top_bytes(pop, 2, 1) == big_header + b"\r\n\r\n" + big.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[0] + b"\r\n"
        pop.quit()

    await run(scenario)


async def test_dele_and_quit_removes_exactly_those(server):
    await append(server, *(make_message() for _ in range(5)))

    def scenario():
        pop = login(server)
        pop.dele(2)
        pop.dele(5)
        assert pop.stat()[0] == 3
        assert pop.quit() == b"+OK bye (2 messages deleted)"

    await run(scenario)
    assert (await server.store.message_sizes(server.inbox.id))[0] == [1, 3, 4]


async def test_dele_and_a_dropped_connection_removes_nothing(server):
    await append(server, make_message(), make_message())

    def scenario():
        pop = login(server)
        pop.dele(1)
        pop.dele(2)
        pop.sock.close()  # no QUIT

    await run(scenario)
    await unlocked(server, server.account.id)
    assert (await server.store.message_sizes(server.inbox.id))[0] == [1, 2]


async def test_a_login_right_after_a_dropped_connection_gets_the_locked_maildrop(locking_server):
    """The old session's lock goes when the server notices the close; the new login waits for it."""
    server = locking_server
    await append(server, make_message())

    def scenario():
        pop = login(server)
        pop.dele(1)
        pop.file.close()
        pop.sock.close()  # no QUIT, and log in again at once
        again = login(server)
        assert again.stat()[0] == 1
        again.quit()

    await run(scenario)


async def test_rset_unmarks(server):
    await append(server, make_message(), make_message())

    def scenario():
        pop = login(server)
        pop.dele(1)
        with pytest.raises(poplib.error_proto, match="message 1 is already deleted"):
            pop.retr(1)
        assert pop.rset().startswith(b"+OK 2 messages")
        assert pop.stat()[0] == 2
        pop.quit()

    await run(scenario)
    assert (await server.store.message_sizes(server.inbox.id))[0] == [1, 2]


async def test_uidls_are_stable_and_never_reused(server):
    await append(server, make_message(), make_message(), make_message())

    def uidls():
        pop = login(server)
        listing = pop.uidl()[1]
        pop.quit()
        return [line.split()[1] for line in listing]

    first = await run(uidls)
    assert await run(uidls) == first

    def delete_last():
        pop = login(server)
        pop.dele(3)
        pop.quit()

    await run(delete_last)
    await append(server, make_message())
    after = await run(uidls)
    assert after[:2] == first[:2]
    assert after[2] not in first  # the new message does not inherit the deleted one's UIDL


async def test_maildrop_is_a_snapshot(server):
    await append(server, make_message())
    pop = await run(login, server)
    added = make_message(subject="arrived during the session")
    await append(server, added)
    assert await run(pop.stat) == (1, (await server.store.message_sizes(server.inbox.id))[1][0])
    with pytest.raises(poplib.error_proto, match="no message 2"):
        await run(pop.retr, 2)
    await run(pop.quit)

    def next_time():
        pop = login(server)
        assert pop.stat()[0] == 2
        assert retr_bytes(pop, 2) == added
        pop.quit()

    await run(next_time)


async def test_expunge_through_pop3_reaches_store_subscribers(server):
    """What an IMAP session of the same account will see: a normal expunge event."""
    await append(server, make_message(), make_message())
    seen = []
    subscription = server.store.events.subscribe(server.account.id, seen.append)
    try:
        def scenario():
            pop = login(server)
            pop.dele(1)
            pop.quit()

        await run(scenario)
    finally:
        subscription.close()
    expunged = [change for change in seen if isinstance(change, MessagesExpunged)]
    assert [(change.folder_id, change.uids) for change in expunged] == [(server.inbox.id, (1,))]


# --- bad input and idle sessions ----------------------------------------------------------


async def test_bad_commands_get_err_and_the_session_goes_on(server):
    await append(server, make_message())

    def scenario():
        pop = login(server)
        for command, reason in [
            ("FROB", "unknown command"),
            ("RETR", "RETR takes exactly 1 argument"),
            ("RETR 2", "no message 2; the maildrop has 1"),
            ("RETR 0", "no message 0"),
            ("DELE 99", "no message 99"),
            ("TOP 1", "TOP takes exactly 2 arguments"),
            ("LIST x", "LIST takes a message number in digits"),
            ("USER x", "USER is not valid after login"),
            ("A" * 300, "line too long (at most 255 octets)"),
        ]:
            with pytest.raises(poplib.error_proto, match=reason.replace("(", r"\(").replace(")", r"\)")):
                pop._shortcmd(command)
        assert pop.stat()[0] == 1
        pop.quit()

    await run(scenario)


async def test_pipelined_commands_are_answered_in_order(server):
    await append(server, b"Subject: p\r\n\r\n.dot\r\n")

    def scenario():
        address = server.addresses["pop3s"]
        with insecure_context().wrap_socket(socket.create_connection((address.host, address.port), TIMEOUT)) as tls:
            read_line(tls)
            tls.sendall(f"USER {ADDRESS}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n".encode())
            expected = (b"+OK send PASS\r\n+OK 1 messages (20 octets)\r\n+OK 1 20\r\n"
                        b"+OK 20 octets\r\nSubject: p\r\n\r\n..dot\r\n.\r\n+OK\r\n+OK bye (0 messages deleted)\r\n")
            received = b""
            while chunk := tls.recv(65536):
                received += chunk
            assert received == expected

    await run(scenario)


async def test_idle_session_is_closed_and_deletes_nothing(tmp_path):
    async with pop3_server(tmp_path, extra="[pop3]\nidle_timeout = 1\n") as server:
        await append(server, make_message())

        def scenario():
            pop = login(server)
            pop.dele(1)
            started = time.monotonic()
            pop.sock.settimeout(10)
            assert pop.sock.recv(100) == b""  # closed without a response (RFC 1939 §3)
            return time.monotonic() - started

        waited = await run(scenario)
        assert 0.5 < waited < 5
        await unlocked(server, server.account.id)
        assert (await server.store.message_sizes(server.inbox.id))[0] == [1]
