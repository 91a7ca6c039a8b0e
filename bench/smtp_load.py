"""SMTP figures (issue 5): messages per second the MX accepts and durably delivers.

    .venv/bin/python bench/smtp_load.py [--connections 20] [--messages 5000] [--size 10240] [--starttls]
    .venv/bin/python bench/smtp_load.py --port 25 --imaps-port 993 --user-format 'smtp{n}@example.test' \\
        --password P --starttls

Without --port it starts `postfach serve` in a subprocess (smtp on 127.0.0.1,
a scratch data directory, a DNS server of its own on loopback so SPF/DKIM/DMARC
lookups are real but do not leave the machine) with --mailboxes mailboxes, then
opens `--connections` SMTP connections at once, each sending its share of
`--messages` messages of `--size` bytes to a local mailbox, one transaction
after the other (PIPELINING of MAIL/RCPT/DATA), over STARTTLS with --starttls.
A 250 after DATA means the message is durable (fsynced file, committed row),
so accepted = durably delivered; the script checks that afterwards by counting
the rows in the store.

With --port it sends to a running server. A server that queues first (Postfix)
has only accepted a message at 250; with --imaps-port the script logs in to
every recipient mailbox over IMAPS beforehand and, after the last 250, asks
STATUS until the mailboxes hold every message: "delivered" is that moment, and
the same check runs against Postfach. 200 warm-up messages go first, and are
waited for, in both modes. Prints messages/s accepted and delivered and
p50/p99 latency of a transaction.

KEEP: on ext4 without a journal (this project's benchmark machines) the
kernel skips inodes freed in the last minute or so when it allocates one
(fs/ext4/ialloc.c, recently_deleted), and each new file costs a walk over
them: right after a run removed its 12,000 message files, the next run
spends a third of the machine's CPU in that walk (`perf record -a`) and
accepts about a fifth fewer messages. With --keep a run removes nothing; remove
the directories after the last run. For the same reason, wait a few minutes
after anything that deleted many files (a test suite run) before measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
    add_target_options,
    client_tls_context,
    postfach_serve_args,
    quantile,
    tls_description,
    write_json,
)

READY = re.compile(r"postfach ready: .*smtp 127\.0\.0\.1:(\d+)")
SENDER = "sender@bench.test"
WARM_UP = 200


def message(size: int, number: int, recipient: str) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: {recipient}\r\n"
        f"Subject: load {number}\r\nMessage-ID: <{number}.{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    line = await reply(reader)
    if not line.startswith(code):
        raise RuntimeError(line)


async def connection(host: str, port: int, numbers: list[int], recipients: list[str], size: int,
                     starttls: bool, latencies: list[float], tls: list[str]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    await expect(reader, b"220")
    writer.write(b"EHLO bench.test\r\n")
    await expect(reader, b"250")
    if starttls:
        writer.write(b"STARTTLS\r\n")
        await expect(reader, b"220")
        await writer.start_tls(client_tls_context())
        tls.append(tls_description(writer.get_extra_info("ssl_object")))
        writer.write(b"EHLO bench.test\r\n")
        await expect(reader, b"250")
    done = 0
    for number in numbers:
        recipient = recipients[number % len(recipients)]
        started = time.perf_counter()
        writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        for code in (b"250", b"250", b"354"):
            await expect(reader, code)
        writer.write(message(size, number, recipient) + b".\r\n")
        await expect(reader, b"250")
        latencies.append(time.perf_counter() - started)
        done += 1
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return done


async def drive(host: str, port: int, connections: int, messages: int, recipients: list[str], size: int,
                starttls: bool, tls: list[str]) -> tuple[int, list[float]]:
    latencies: list[float] = []
    shares = [list(range(i, messages, connections)) for i in range(connections)]
    counts = await asyncio.gather(
        *(connection(host, port, share, recipients, size, starttls, latencies, tls) for share in shares)
    )
    return sum(counts), latencies


class Mailboxes:
    """IMAPS sessions on every recipient mailbox, logged in before the load, to count what arrived."""

    def __init__(self, host: str, port: int, users: list[str], password: str) -> None:
        self.sessions = []
        for user in users:
            session = imaplib.IMAP4_SSL(host, port, ssl_context=client_tls_context(), timeout=60)
            session.login(user, password)
            self.sessions.append(session)

    def counts(self) -> list[int]:
        return [self._count(session) for session in self.sessions]

    @staticmethod
    def _count(session: imaplib.IMAP4_SSL) -> int:
        status = session.status("INBOX", "(MESSAGES)")[1][0].decode()
        return int(re.search(r"MESSAGES (\d+)", status)[1])

    def wait_for(self, expected: list[int], timeout: float) -> list[int]:
        """Poll until every mailbox holds what it should (or the time is up); returns what they hold.

        One mailbox at a time, the last one sent to first: the load's last
        messages arrive last, so this asks about 20 STATUS a second while it
        waits, not a flood that would slow the server's own deliveries.
        """
        deadline = time.perf_counter() + timeout
        held = [0] * len(self.sessions)
        for index in reversed(range(len(self.sessions))):
            while (count := self._count(self.sessions[index])) < expected[index] and time.perf_counter() < deadline:
                time.sleep(0.05)
            held[index] = count
        return held

    def close(self) -> None:
        for session in self.sessions:
            try:
                session.logout()
            except (imaplib.IMAP4.error, OSError):
                pass


def run(host: str, port: int, options: argparse.Namespace, recipients: list[str],
        mailboxes: Mailboxes | None) -> dict:
    """Warm-up, then the measured load; with `mailboxes`, waits for delivery after each."""
    tls: list[str] = []

    def load(messages: int) -> tuple[int, float, float, list[float], int | None]:
        before = mailboxes.counts() if mailboxes else []
        started = time.perf_counter()
        sent, latencies = asyncio.run(drive(host, port, options.connections, messages, recipients,
                                            options.size, options.starttls, tls))
        accepted = time.perf_counter() - started
        if mailboxes is None:
            return sent, accepted, accepted, latencies, None
        # The load sends message n to recipients[n % len(recipients)], the last ones to the last mailboxes.
        expected = [held + len(range(index, messages, len(recipients))) for index, held in enumerate(before)]
        arrived = sum(mailboxes.wait_for(expected, options.delivery_timeout)) - sum(before)
        return sent, accepted, time.perf_counter() - started, latencies, arrived

    load(min(WARM_UP, options.messages))
    sent, accepted, delivered, latencies, arrived = load(options.messages)
    latencies.sort()
    print(f"{options.connections} connections, {sent} messages of {options.size} bytes"
          f"{' over STARTTLS' if options.starttls else ''}")
    print(f"accepted (250): {sent / accepted:.0f} messages/s ({accepted:.2f} s)")
    if arrived is not None:
        print(f"delivered (in the mailboxes, IMAP STATUS): {arrived / delivered:.0f} messages/s"
              f" ({delivered:.2f} s; {arrived} of {sent} arrived)")
    p50, p99 = quantile(latencies, 0.5) * 1000, quantile(latencies, 0.99) * 1000
    print(f"latency per transaction: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return {"connections": options.connections, "size": options.size, "sent": sent, "tls": tls[0] if tls else None,
            "accepted_per_s": sent / accepted, "delivered_per_s": (arrived if arrived is not None else sent)
            / delivered, "arrived": arrived, "p50_ms": p50, "p99_ms": p99, "starttls": options.starttls}


def own_server(options: argparse.Namespace) -> int:
    from tests.support.dns import ZoneServer

    recipients = [f"user{n}@example.test" for n in range(options.mailboxes)]
    dns = ZoneServer()
    dns.add("bench.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns.add("_dmarc.bench.test", "TXT", "v=DMARC1; p=none")
    prefix = "postfach-smtp-bench-"
    with (nullcontext(tempfile.mkdtemp(prefix=prefix)) if options.keep
          else tempfile.TemporaryDirectory(prefix=prefix)) as scratch:
        config = Path(scratch) / "postfach.toml"
        config.write_text(
            'data_dir = "data"\nhostname = "mail.example.test"\n[listen]\nsmtp = "127.0.0.1:0"\n'
            f'[dns]\nnameservers = ["127.0.0.1:{dns.address.port}"]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFACH_")}
        env["PYTHONPATH"] = str(REPO / "src")

        def cli(*words: str) -> None:
            subprocess.run([sys.executable, "-m", "postfach", "--config", str(config), *words], env=env,
                           check=True, capture_output=True, input=f"{options.password}\n", text=True)

        cli("domain", "add", "example.test")
        for recipient in recipients:
            cli("mailbox", "add", recipient, "--password-stdin")
        server = subprocess.Popen([sys.executable, "-m", "postfach", "--config", str(config), "serve",
                                   *postfach_serve_args(options.workers)],
                                  env=env, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            for line in server.stderr:
                match = READY.search(line)
                if match:
                    port = int(match[1])
                    break
            if port is None:
                raise RuntimeError("postfach serve did not start")
            # Keep reading its log (one line per delivery), or the pipe fills and the server stops.
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            result = run("127.0.0.1", port, options, recipients, None)
        finally:
            server.terminate()
            server.wait(timeout=30)
            dns.stop()
        db = sqlite3.connect(Path(scratch) / "data" / "postfach.sqlite3")
        stored = db.execute("SELECT count(*) FROM messages").fetchone()[0] - min(WARM_UP, options.messages)
        db.close()
    print(f"in the store afterwards: {stored}" + (f" (kept in {scratch})" if options.keep else ""))
    write_json(options.json, {**result, "arrived": stored})
    return 0 if stored == result["sent"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--mailboxes", type=int, default=20, help="recipients, {n} = 0.. in --user-format")
    parser.add_argument("--starttls", action="store_true", help="STARTTLS on every connection")
    parser.add_argument("--imaps-port", type=int, help="with --port: count deliveries over IMAPS on this port")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch data directory: see KEEP in the module docstring")
    parser.add_argument("--delivery-timeout", type=float, default=600, help="seconds to wait for delivery")
    add_target_options(parser, "SMTP", "user{n}@example.test")
    options = parser.parse_args()
    if not options.port:
        return own_server(options)
    recipients = [options.user_format.format(n=n) for n in range(options.mailboxes)]
    mailboxes = (Mailboxes(options.host, options.imaps_port, recipients, options.password)
                 if options.imaps_port else None)
    try:
        result = run(options.host, options.port, options, recipients, mailboxes)
    finally:
        if mailboxes:
            mailboxes.close()
    write_json(options.json, result)
    return 0 if result["arrived"] in (None, result["sent"]) else 1


if __name__ == "__main__":
    sys.exit(main())
