"""POP3 and SMTP resource rules over real sockets: connections per address, commands before login."""

import asyncio
import poplib
import smtplib
import socket

from postfach.config import load_config
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"
TIMEOUT = 10
POP3_REFUSAL = b"-ERR [SYS/TEMP] too many connections from your address\r\n"
SMTP_REFUSAL = b"421 4.7.0 too many connections from your address\r\n"


def config(tmp_path, listeners, extra):
    return load_config(write_config(tmp_path, listeners=listeners, extra=extra), environ={})


def raw(server, listener: str, tls: bool = False) -> socket.socket:
    address = server.addresses[listener]
    sock = socket.create_connection((address.host, address.port), timeout=TIMEOUT)
    return insecure_context().wrap_socket(sock) if tls else sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


async def test_pop3_connections_per_address_are_limited_across_pop3_and_pop3s(tmp_path):
    extra = "[pop3]\nmax_connections_per_address = 2\n"
    async with running_server(config(tmp_path, ("pop3", "pop3s"), extra)) as server:

        def scenario():
            plain = poplib.POP3(server.addresses["pop3"].host, server.addresses["pop3"].port, timeout=TIMEOUT)
            secure = poplib.POP3_SSL(
                server.addresses["pop3s"].host, server.addresses["pop3s"].port, timeout=TIMEOUT,
                context=insecure_context(),
            )
            for listener, tls in (("pop3", False), ("pop3s", True)):
                with raw(server, listener, tls) as third:
                    assert read_until_closed(third) == POP3_REFUSAL
            plain.quit()
            # A place was freed; the refused connections took none.
            fourth = poplib.POP3(server.addresses["pop3"].host, server.addresses["pop3"].port, timeout=TIMEOUT)
            assert fourth.getwelcome().startswith(b"+OK")
            with raw(server, "pop3") as fifth:
                assert read_until_closed(fifth) == POP3_REFUSAL
            for client in (secure, fourth):
                client.quit()

        await asyncio.to_thread(scenario)


async def test_pop3_closes_a_connection_that_sends_too_many_commands_before_login(tmp_path):
    extra = "[pop3]\nmax_commands_before_login = 4\n"
    async with running_server(config(tmp_path, ("pop3s",), extra)) as server:
        await make_account(server.store, USER)

        def scenario():
            with raw(server, "pop3s", tls=True) as sock:
                sock.recv(4096)  # the greeting
                # Pipelined (RFC 2449 §6.6): four answers, then the refusal, then the close.
                sock.sendall(b"CAPA\r\nUSER x\r\nPASS y\r\nNOOP\r\nUSER x\r\nUSER x\r\n")
                received = read_until_closed(sock)
                assert received.endswith(b"-ERR [SYS/TEMP] too many commands before login\r\n")
                assert received.count(b"\r\n-ERR [SYS/TEMP]") == 1
            # After login there is no cap.
            address = server.addresses["pop3s"]
            pop = poplib.POP3_SSL(address.host, address.port, timeout=TIMEOUT, context=insecure_context())
            pop.user(USER)
            pop.pass_(PASSWORD)
            for _ in range(10):
                pop.noop()
            pop.quit()

        await asyncio.to_thread(scenario)


async def test_smtp_connections_per_address_are_limited_across_the_smtp_listeners(tmp_path):
    extra = "[smtp]\nmax_connections_per_address = 2\n"
    async with running_server(config(tmp_path, ("smtp", "submission", "submissions"), extra)) as server:

        def connect(listener: str) -> smtplib.SMTP:
            address = server.addresses[listener]
            if listener == "submissions":
                return smtplib.SMTP_SSL(address.host, address.port, timeout=TIMEOUT, context=insecure_context())
            return smtplib.SMTP(address.host, address.port, timeout=TIMEOUT)

        def scenario():
            first = connect("smtp")
            first.starttls(context=insecure_context())  # STARTTLS must not count the connection twice
            first.ehlo()
            second = connect("submission")
            for listener, tls in (("smtp", False), ("submission", False), ("submissions", True)):
                with raw(server, listener, tls) as third:
                    assert read_until_closed(third) == SMTP_REFUSAL
            first.quit()
            fourth = connect("submissions")
            assert fourth.noop()[0] == 250
            with raw(server, "smtp") as fifth:
                assert read_until_closed(fifth) == SMTP_REFUSAL
            for client in (second, fourth):
                client.quit()

        await asyncio.to_thread(scenario)
