"""Large messages over SMTP: DATA spooled to disk past 1 MiB, memory bounded, every rule kept.

The client is smtplib over a real socket; the data it sends is dot-stuffed before the
measurement starts (smtplib's own `data()` makes copies of the message, which would be
counted with the server's allocations: both run in this process).
"""

import asyncio
import contextlib
import hashlib
import os
import re
import tracemalloc

import pytest

from postfach.auth.passwords import Passwords
from postfach.config import load_config
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.smtp import PASSWORD, below_trace, inbox_messages, inbox_metas, run, smtp_client

HASH = Passwords().hash(PASSWORD)
MB = 1024 * 1024


def big_message(size: int, extra: bytes = b"") -> bytes:
    """A message of about `size` bytes whose body has dotted lines all the way through."""
    head = b"From: Sender <sender@remote.example>\r\nTo: alice@example.com\r\nSubject: big\r\n\r\n"
    block = b"".join(b"%s%06d %s\r\n" % (prefix, n, b"y" * 60) for n, prefix in enumerate((b"", b".", b"..", b"")))
    return head + block * (size // len(block)) + extra + b".\r\n" + b"last line\r\n"


def padding(size: int) -> bytes:
    """Lines of exactly `size` bytes in all (at least 3)."""
    full, rest = divmod(size, 80)
    if rest == 1:  # no line is one byte long: make the last full line one longer
        full, rest = full - 1, 81
    return (b"z" * 78 + b"\r\n") * full + (b"z" * (rest - 2) + b"\r\n" if rest else b"")


def wire(message: bytes) -> bytes:
    """DATA as sent (RFC 5321 §4.5.2): a leading dot doubled, the lone dot at the end."""
    return re.sub(rb"(?m)^\.", b"..", message) + b".\r\n"


def send_wire(client, recipients, data: bytes):
    """MAIL, RCPT and DATA with `data` sent as it is; the reply to the data."""
    client.mail("sender@remote.example")
    for recipient in recipients:
        assert client.rcpt(recipient)[0] == 250
    assert client.docmd("DATA")[0] == 354
    view = memoryview(data)
    for start in range(0, len(data), MB):  # the socket's time-out is per send: a megabyte at a time
        client.send(view[start:start + MB])
    return client.getreply()


@pytest.fixture
async def mx(tmp_path):
    config = load_config(write_config(tmp_path, listeners=("smtp",), extra="[smtp]\nmax_message_size = 52428800\n"),
                         environ={})
    async with running_server(config) as server:
        await server.store.add_domain("example.com")
        server.alice = await server.store.add_account("alice@example.com", HASH, 200 * MB)
        server.bob = await server.store.add_account("bob@example.com", HASH, 200 * MB)
        yield server


async def spool_in_use(server) -> list[str]:
    """Files in the spool directory and open descriptors of spool files (unlinked ones too),
    once the server has had up to two seconds to let go of them."""
    spool = server.config.data_dir / "spool"
    for _ in range(40):
        found = [path.name for path in spool.iterdir()]
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{spool}/"):
                    found.append(f"fd {fd}")
        if not found:
            break
        await asyncio.sleep(0.05)
    return found


async def test_a_40_mb_message_is_stored_byte_exact_in_bounded_memory(mx):
    message = big_message(40 * MB)
    data = wire(message)
    expected = hashlib.sha256(message).hexdigest()

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            return send_wire(client, ["alice@example.com", "bob@example.com"], data)

    tracemalloc.start()
    try:
        reply = await run(dialog)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply[0] == 250, reply
    # aiosmtpd's DATA alone held the message twice (its lines, then joined): 80 MB and more.
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MiB"
    [stored] = await inbox_messages(mx.store, mx.alice)
    assert hashlib.sha256(below_trace(stored)).hexdigest() == expected
    [alice], [bob] = await inbox_metas(mx.store, mx.alice), await inbox_metas(mx.store, mx.bob)
    assert alice.blob.sha256 == bob.blob.sha256  # one file for both
    assert await spool_in_use(mx) == []


async def test_size_is_enforced_while_streaming_and_the_connection_stays_usable(tmp_path):
    config = load_config(write_config(tmp_path, listeners=("smtp",), extra="[smtp]\nmax_message_size = 3145728\n"),
                         environ={})
    async with running_server(config) as server:
        await server.store.add_domain("example.com")
        alice = await server.store.add_account("alice@example.com", HASH, 200 * MB)
        too_big = wire(big_message(8 * MB))
        fits = big_message(3 * MB - 100_000)
        fits_data = wire(fits)

        def dialog():
            with smtp_client(server.addresses["smtp"]) as client:
                refused = send_wire(client, ["alice@example.com"], too_big)
                accepted = send_wire(client, ["alice@example.com"], fits_data)
                return refused, accepted

        tracemalloc.start()
        try:
            refused, accepted = await run(dialog)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert refused[0] == 552 and refused[1].startswith(b"5.3.4 "), refused
        assert accepted[0] == 250, accepted
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB"
        assert [below_trace(m) for m in await inbox_messages(server.store, alice)] == [fits]
        assert await spool_in_use(server) == []


async def test_exactly_the_size_limit_is_accepted_and_one_byte_more_is_not(tmp_path):
    limit = 2 * MB
    config = load_config(write_config(tmp_path, listeners=("smtp",), extra=f"[smtp]\nmax_message_size = {limit}\n"),
                         environ={})
    async with running_server(config) as server:
        await server.store.add_domain("example.com")
        alice = await server.store.add_account("alice@example.com", HASH, 200 * MB)
        base = big_message(limit - 200_000)
        # Dots doubled on the wire do not count (RFC 1870: the size of the message itself).
        exact = base + padding(limit - len(base))
        over = base + padding(limit + 1 - len(base))
        assert len(exact) == limit and len(over) == limit + 1

        def dialog():
            with smtp_client(server.addresses["smtp"]) as client:
                return send_wire(client, ["alice@example.com"], wire(over)), send_wire(
                    client, ["alice@example.com"], wire(exact))

        over_reply, exact_reply = await run(dialog)
        assert over_reply[0] == 552 and exact_reply[0] == 250
        assert [below_trace(m) for m in await inbox_messages(server.store, alice)] == [exact]


async def test_a_bare_lf_past_the_first_megabyte_is_refused(mx):
    message = big_message(3 * MB, extra=b"smuggled\n.\nMAIL FROM:<evil@example.com>\r\n")

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            reply = send_wire(client, ["alice@example.com"], wire(message))
            return reply, client.noop()

    reply, noop = await run(dialog)
    assert reply[0] == 554 and reply[1].startswith(b"5.6.0 "), reply
    assert noop[0] == 250
    assert await inbox_messages(mx.store, mx.alice) == []
    assert await spool_in_use(mx) == []


async def test_an_over_long_line_past_the_first_megabyte_is_refused(mx):
    message = big_message(3 * MB, extra=b"x" * 5000 + b"\r\n")

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            reply = send_wire(client, ["alice@example.com"], wire(message))
            return reply, send_wire(client, ["alice@example.com"], wire(b"Subject: after\r\n\r\nok\r\n"))

    reply, after = await run(dialog)
    assert reply[0] == 500 and reply[1].startswith(b"5.5.2 "), reply
    assert after[0] == 250
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [b"Subject: after\r\n\r\nok\r\n"]


async def test_a_client_that_hangs_up_in_a_large_message_leaves_nothing(mx):
    data = wire(big_message(5 * MB))

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("sender@remote.example")
            client.rcpt("alice@example.com")
            assert client.docmd("DATA")[0] == 354
            client.send(data[: 4 * MB])
            client.close()

    await run(dialog)
    assert await run(lambda: send_wire_fresh(mx, b"Subject: after\r\n\r\nok\r\n")) == 250
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [b"Subject: after\r\n\r\nok\r\n"]
    assert await spool_in_use(mx) == []


def send_wire_fresh(server, message: bytes) -> int:
    with smtp_client(server.addresses["smtp"]) as client:
        return send_wire(client, ["alice@example.com"], wire(message))[0]
