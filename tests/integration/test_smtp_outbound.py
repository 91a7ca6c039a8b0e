"""Two Postfach instances on loopback, a.test and b.test, with a real DNS server for both.

A sends to B through a static route that passes a small fault proxy (it can
answer 451 for a while); both resolve SPF, DKIM and DMARC records from the DNS
server the test starts. Retries are fast (`[queue] retry_delays = ["1s"]`).
"""

import asyncio
import contextlib
import smtplib
import time

import pytest

from postfach.config import load_config
from postfach.dkim_keys import public_record
from postfach.model import Forwarding
from tests.support.accounts import make_account
from tests.support.dns import SilentServer, ZoneServer, free_port
from tests.support.server import running_server
from tests.support.smtp import inbox_messages, run, smtp_client

pytestmark = pytest.mark.timeout(60)


class FaultProxy:
    """Between A and B's MX: for the next `failures` connections it plays an MX that answers
    451 to RCPT; after that it passes bytes through to B unchanged."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.failures = 0
        self.refused = 0
        self.server = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def _handle(self, reader, writer) -> None:
        if self.failures > 0:
            self.failures -= 1
            await self._refuse(reader, writer)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(source, sink):
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def _refuse(self, reader, writer) -> None:
        writer.write(b"220 fault.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-fault.test\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                self.refused += 1
                writer.write(b"451 4.3.0 Try again later\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 2.0.0 OK\r\n")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def write_config(directory, domain, smtp_port, routes, nameservers, timeout=5):
    directory.mkdir()
    path = directory / "postfach.toml"
    route_lines = "\n".join(f'"{name}" = "127.0.0.1:{port}"' for name, port in routes.items())
    servers = ", ".join(f'"{ns}"' for ns in nameservers)
    path.write_text(
        f'data_dir = "data"\nhostname = "mail.{domain}"\n'
        f'[listen]\nsmtp = "127.0.0.1:{smtp_port}"\nsubmission = "127.0.0.1:0"\n'
        f"[routes]\n{route_lines}\n"
        f"[dns]\nnameservers = [{servers}]\ntimeout = {timeout}\n"
        '[queue]\nretry_delays = ["1s"]\n'
    )
    return load_config(path, environ={})


@pytest.fixture
async def pair(tmp_path):
    dns = ZoneServer()
    dns.mail_domain("a.test")
    dns.mail_domain("b.test")
    dns.add("c.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")  # never loopback; no DMARC record
    dns.mail_domain("d.test", spf="v=spf1 ip4:192.0.2.1 -all", dmarc="v=DMARC1; p=reject")
    a_port, b_port, proxy_port = free_port(), free_port(), free_port()
    proxy = FaultProxy(b_port)
    await proxy.start(proxy_port)
    config_a = write_config(tmp_path / "a", "a.test", a_port, {"b.test": proxy_port}, [dns.address])
    config_b = write_config(tmp_path / "b", "b.test", b_port, {"a.test": a_port}, [dns.address])
    try:
        async with running_server(config_a) as a, running_server(config_b) as b:
            a.alice = await make_account(a.store, "alice@a.test")
            b.bob = await make_account(b.store, "bob@b.test")
            for server, domain in ((a, "a.test"), (b, "b.test")):
                key = await server.store.get_dkim_key(domain)
                dns.add(f"{key.selector}._domainkey.{domain}", "TXT", public_record(key))
            yield a, b, proxy
    finally:
        await proxy.stop()
        dns.stop()


def message(sender, to, subject="Hello"):
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{time.monotonic_ns()}@test>\r\n\r\nHi there.\r\n"
    ).encode()


async def submit(server, login, recipients, data):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login=login) as client:
            return client.sendmail(login, recipients, data)

    return await run(dialog)


async def wait_for_mail(store, account, count=1, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = await inbox_messages(store, account)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.1)
    raise AssertionError(f"{account.address} got {len(await inbox_messages(store, account))} of {count} messages")


async def queue_drained(store, timeout=10.0) -> list:
    """The queue once it is empty, or what is left after `timeout`: the sender removes an entry
    after the receiver's 250, a moment after the receiver has filed the message."""
    deadline = time.monotonic() + timeout
    while (left := await store.list_queue()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


def header_of(stored: bytes) -> str:
    return stored.split(b"\r\n\r\n", 1)[0].decode()


async def test_submitted_at_a_arrives_at_b_signed_and_verified(pair):
    a, b, _ = pair
    assert await submit(a, "alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test")) == {}
    [stored] = await wait_for_mail(b.store, b.bob)
    header = header_of(stored)
    assert "DKIM-Signature: " in header and "d=a.test" in header
    assert "Authentication-Results: mail.b.test;" in header
    assert "spf=pass smtp.mailfrom=alice@a.test" in header
    assert "dkim=pass header.d=a.test" in header
    assert "dmarc=pass header.from=a.test" in header
    assert "Return-Path: <alice@a.test>" in header and header.count("Return-Path:") == 1
    assert await queue_drained(a.store) == []  # delivered: the entry and its file reference are gone


async def test_a_temporary_failure_is_retried_then_delivered(pair):
    a, b, proxy = pair
    proxy.failures = 2
    await submit(a, "alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test"))
    [stored] = await wait_for_mail(b.store, b.bob)
    assert proxy.refused == 2
    assert "dkim=pass" in header_of(stored)
    assert await inbox_messages(a.store, a.alice) == []  # no bounce


async def test_a_permanent_failure_bounces_into_the_senders_inbox_as_a_dsn(pair):
    a, b, _ = pair
    await submit(a, "alice@a.test", ["nobody@b.test"], message("alice@a.test", "nobody@b.test", "Lost"))
    [bounce] = await wait_for_mail(a.store, a.alice)
    text = bounce.decode()
    assert text.startswith("Return-Path: <>\r\n")
    assert "Content-Type: multipart/report; report-type=delivery-status;" in text
    assert "Content-Type: message/delivery-status" in text
    assert "Final-Recipient: rfc822; nobody@b.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Subject: Lost" in text  # the original's header comes back with it
    assert await queue_drained(a.store) == []


async def test_forwarding_from_b_to_a_passes_spf_through_srs(pair):
    a, b, _ = pair
    await b.store.set_forwarding("bob@b.test", Forwarding(("alice@a.test",), keep_copy=False))

    def send_to_b():
        with smtplib.SMTP(b.addresses["smtp"].host, b.addresses["smtp"].port, timeout=10) as client:
            return client.sendmail("carol@c.test", ["bob@b.test"], message("carol@c.test", "bob@b.test"))

    assert await run(send_to_b) == {}
    [stored] = await wait_for_mail(a.store, a.alice)
    header = header_of(stored)
    # B saw carol's domain fail SPF (B is not c.test's server); A sees B's SRS address pass.
    assert "spf=pass smtp.mailfrom=SRS0=" in header and "=c.test=carol@b.test" in header
    assert "Delivered-To: bob@b.test" in header
    assert await inbox_messages(b.store, b.bob) == []


async def test_a_dmarc_reject_policy_is_honoured(pair):
    _, b, _ = pair

    def send_to_b():
        with smtplib.SMTP(b.addresses["smtp"].host, b.addresses["smtp"].port, timeout=10) as client:
            client.sendmail("dave@d.test", ["bob@b.test"], message("dave@d.test", "bob@b.test"))

    with pytest.raises(smtplib.SMTPDataError) as refused:
        await run(send_to_b)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 ")
    assert await inbox_messages(b.store, b.bob) == []


async def test_a_message_looping_back_to_a_recipient_it_reached_is_refused(pair):
    _, b, _ = pair
    looped = b"Delivered-To: bob@b.test\r\n" + message("carol@c.test", "bob@b.test")

    def send_to_b():
        with smtplib.SMTP(b.addresses["smtp"].host, b.addresses["smtp"].port, timeout=10) as client:
            client.sendmail("carol@c.test", ["bob@b.test"], looped)

    with pytest.raises(smtplib.SMTPDataError) as refused:
        await run(send_to_b)
    assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.4.6 ")


async def test_a_dns_server_that_does_not_answer_gives_temperror_within_the_budget(tmp_path):
    silent = SilentServer()
    config = write_config(tmp_path / "c", "c.test", 0, {}, [silent.address], timeout=1)
    try:
        async with running_server(config) as server:
            account = await make_account(server.store, "bob@c.test")

            def send():
                with smtplib.SMTP(server.addresses["smtp"].host, server.addresses["smtp"].port, timeout=10) as client:
                    started = time.monotonic()
                    client.sendmail("alice@a.test", ["bob@c.test"], message("alice@a.test", "bob@c.test"))
                    return time.monotonic() - started

            elapsed = await run(send)
            [stored] = await inbox_messages(server.store, account)
    finally:
        silent.close()
    assert elapsed < 2.5
    header = header_of(stored)
    assert "spf=temperror" in header and "dmarc=temperror" in header


async def test_without_a_route_the_mx_record_is_looked_up(tmp_path):
    """No static route: A asks DNS for b.test's MX (mail.b.test, 127.0.0.1) and delivers there."""
    dns = ZoneServer()
    dns.mail_domain("a.test")
    dns.mail_domain("b.test")
    a_port, b_port = free_port(), free_port()
    config_a = write_config(tmp_path / "a", "a.test", a_port, {}, [dns.address])
    # Every MX listens on 25; here B's MX is on a free port, which A is told to use.
    config_a.config_file.write_text(config_a.config_file.read_text() + f"[smtp]\noutbound_port = {b_port}\n")
    config_a = load_config(config_a.config_file, environ={})
    config_b = write_config(tmp_path / "b", "b.test", b_port, {}, [dns.address])
    try:
        async with running_server(config_a) as a, running_server(config_b) as b:
            await make_account(a.store, "alice@a.test")
            bob = await make_account(b.store, "bob@b.test")
            await submit(a, "alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "Via MX"))
            [stored] = await wait_for_mail(b.store, bob)
            assert b"Subject: Via MX" in stored
            assert await queue_drained(a.store) == []
    finally:
        dns.stop()
