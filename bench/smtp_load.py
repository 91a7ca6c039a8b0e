"""SMTP figures (issue 5): messages per second the MX accepts and durably delivers.

    .venv/bin/python bench/smtp_load.py [--connections 20] [--messages 5000] [--size 10240]

Starts `postfach serve` in a subprocess (smtp on 127.0.0.1, a scratch data
directory, a DNS server of its own on loopback so SPF/DKIM/DMARC lookups are
real but do not leave the machine) with 20 mailboxes, then opens
`--connections` SMTP connections at once, each sending its share of
`--messages` messages of `--size` bytes to a local mailbox, one transaction
after the other (PIPELINING of MAIL/RCPT/DATA). A 250 after DATA means the
message is durable (fsynced file, committed row), so accepted = durably
delivered; the script checks that afterwards by counting the rows in the store.
Prints messages/s and p50/p99 latency of a transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.support.dns import ZoneServer  # noqa: E402

READY = re.compile(r"postfach ready: .*smtp 127\.0\.0\.1:(\d+)")
MAILBOXES = 20


def message(size: int, number: int) -> bytes:
    head = (
        f"From: sender@bench.test\r\nTo: user{number % MAILBOXES}@example.test\r\n"
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


async def connection(port: int, numbers: list[int], size: int, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.test\r\n")
    await reply(reader)
    done = 0
    for number in numbers:
        started = time.perf_counter()
        writer.write(
            b"MAIL FROM:<sender@bench.test>\r\n"
            + f"RCPT TO:<user{number % MAILBOXES}@example.test>\r\n".encode()
            + b"DATA\r\n"
        )
        for expected in (b"250", b"250", b"354"):
            line = await reply(reader)
            if not line.startswith(expected):
                raise RuntimeError(line)
        writer.write(message(size, number) + b".\r\n")
        line = await reply(reader)
        if not line.startswith(b"250"):
            raise RuntimeError(line)
        latencies.append(time.perf_counter() - started)
        done += 1
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return done


async def drive(port: int, connections: int, messages: int, size: int) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    shares = [list(range(i, messages, connections)) for i in range(connections)]
    started = time.perf_counter()
    counts = await asyncio.gather(*(connection(port, share, size, latencies) for share in shares))
    return sum(counts), time.perf_counter() - started, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    args = parser.parse_args()

    dns = ZoneServer()
    dns.add("bench.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns.add("_dmarc.bench.test", "TXT", "v=DMARC1; p=none")
    with tempfile.TemporaryDirectory(prefix="postfach-smtp-bench-") as scratch:
        config = Path(scratch) / "postfach.toml"
        config.write_text(
            'data_dir = "data"\nhostname = "mail.example.test"\n[listen]\nsmtp = "127.0.0.1:0"\n'
            f'[dns]\nnameservers = ["127.0.0.1:{dns.address.port}"]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFACH_")}
        env["PYTHONPATH"] = str(ROOT / "src")

        def cli(*words: str) -> None:
            subprocess.run([sys.executable, "-m", "postfach", "--config", str(config), *words], env=env,
                           check=True, capture_output=True, input="bench password 123\n", text=True)

        cli("domain", "add", "example.test")
        for n in range(MAILBOXES):
            cli("mailbox", "add", f"user{n}@example.test", "--password-stdin")
        server = subprocess.Popen([sys.executable, "-m", "postfach", "--config", str(config), "serve"],
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
            asyncio.run(drive(port, args.connections, min(200, args.messages), args.size))  # warm-up
            sent, elapsed, latencies = asyncio.run(drive(port, args.connections, args.messages, args.size))
        finally:
            server.terminate()
            server.wait(timeout=30)
            dns.stop()
        db = sqlite3.connect(Path(scratch) / "data" / "postfach.sqlite3")
        stored = db.execute("SELECT count(*) FROM messages").fetchone()[0] - min(200, args.messages)
        db.close()
    latencies.sort()
    print(f"{args.connections} connections, {sent} messages of {args.size} bytes in {elapsed:.2f} s")
    print(f"accepted (250, durable): {sent / elapsed:.0f} messages/s; in the store afterwards: {stored}")
    print(f"latency per transaction: p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    return 0 if stored == sent else 1


if __name__ == "__main__":
    sys.exit(main())
