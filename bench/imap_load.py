"""IMAP load: N clients over TLS, each on its own account, running a realistic mix.

    .venv/bin/python bench/imap_load.py [--clients 50] [--seconds 30] [--messages 200]
    .venv/bin/python bench/imap_load.py --host 127.0.0.1 --port 993 --user-pattern 'u{n}@x.test' --password P

Without --port it starts `postfach serve` on a scratch data directory with
--clients accounts of --messages messages each. Every client logs in once
over TLS, selects INBOX, then loops over a weighted mix until the time is
up: FETCH of flags, of envelope+bodystructure, of a body part; STORE;
SEARCH; APPEND + EXPUNGE; IDLE entered and left (DONE); NOOP. Prints operations per second and p50/p99 latency per operation and
in total. The same mix runs against any IMAP server (bench/compare.sh).
"""

from __future__ import annotations

import argparse
import imaplib
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PASSWORD = "bench password 123"

# (operation, weight): roughly what a desktop client does after the initial sync.
MIX = [
    ("fetch_flags", 30),
    ("fetch_envelope", 15),
    ("fetch_body_part", 15),
    ("store", 12),
    ("search", 8),
    ("append_expunge", 6),
    ("idle", 4),
    ("noop", 10),
]


def message(number: int) -> bytes:
    body = b"Dear customer,\r\n" + b"this is a line of a realistic message body for the load test.\r\n" * 60
    return (
        f"From: Sender {number} <sender{number}@example.org>\r\nTo: user@bench.test\r\n"
        f"Subject: Load test message {number}\r\nMessage-ID: <{number}.{time.time_ns()}@bench>\r\n"
        "Date: Sun, 22 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body + b"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + body + b"</p>\r\n--b1--\r\n"


class Client:
    def __init__(self, host: str, port: int, user: str, password: str, seed: int) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=60)
        self.imap.login(user, password)
        self.count = int(self.imap.select("INBOX")[1][0])
        self.rng = random.Random(seed)

    def some(self) -> str:
        first = self.rng.randint(1, max(1, self.count))
        return f"{first}:{min(self.count, first + 20)}"

    def fetch_flags(self) -> None:
        self.imap.fetch("1:*", "(UID FLAGS)")

    def fetch_envelope(self) -> None:
        self.imap.fetch(self.some(), "(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)")

    def fetch_body_part(self) -> None:
        self.imap.fetch(str(self.rng.randint(1, self.count)), "(BODY.PEEK[1])")

    def store(self) -> None:
        self.imap.store(self.some(), self.rng.choice(["+FLAGS", "-FLAGS"]), "(\\Seen)")

    def search(self) -> None:
        self.imap.search(None, self.rng.choice(["UNSEEN", "FROM sender1", "SUBJECT message", "TEXT customer"]))

    def append_expunge(self) -> None:
        self.imap.append("INBOX", "(\\Deleted)", None, message(self.rng.randint(1, 10**6)))
        self.imap.expunge()

    def idle(self) -> None:
        # Enter IDLE and leave it at once: what a client does when it switches folders.
        tag = self.imap._new_tag()
        self.imap.send(tag + b" IDLE\r\n")
        self.imap.readline()  # "+ idling"
        self.imap.send(b"DONE\r\n")
        while not self.imap.readline().startswith(tag):
            pass

    def noop(self) -> None:
        self.imap.noop()

    def close(self) -> None:
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def run_clients(host: str, port: int, users: list[str], password: str, seconds: float) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[str] = []
    operations = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    start = threading.Barrier(len(users) + 1)
    deadline: list[float] = [0.0]

    def worker(index: int, user: str) -> None:
        try:
            client = Client(host, port, user, password, index)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{user}: {error}")
            start.abort()
            return
        local: dict[str, list[float]] = defaultdict(list)
        start.wait()
        while time.monotonic() < deadline[0]:
            name = client.rng.choices(operations, weights)[0]
            began = time.perf_counter()
            try:
                getattr(client, name)()
            except Exception as error:  # noqa: BLE001 - a failed operation is counted, not fatal
                errors.append(f"{user} {name}: {error}")
                continue
            local[name].append(time.perf_counter() - began)
        client.close()
        with lock:
            for name, values in local.items():
                latencies[name].extend(values)

    threads = [threading.Thread(target=worker, args=(n, user)) for n, user in enumerate(users)]
    for thread in threads:
        thread.start()
    start.wait()
    deadline[0] = time.monotonic() + seconds
    for thread in threads:
        thread.join()
    if errors:
        print(f"{len(errors)} errors, e.g.: {errors[:3]}")
    return latencies


def report(latencies: dict[str, list[float]], seconds: float, clients: int) -> None:
    def quantiles(values: list[float]) -> tuple[float, float]:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

    everything = [value for values in latencies.values() for value in values]
    print(f"{clients} clients, {seconds:.0f} s")
    print(f"{'operation':<16}{'ops':>8}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, _ in MIX:
        values = latencies.get(name, [])
        if values:
            p50, p99 = quantiles(values)
            print(f"{name:<16}{len(values):>8}{len(values) / seconds:>9.1f}{p50:>9.1f}{p99:>9.1f}")
    p50, p99 = quantiles(everything)
    print(f"{'total':<16}{len(everything):>8}{len(everything) / seconds:>9.1f}{p50:>9.1f}{p99:>9.1f}")
    print(f"mean latency {statistics.fmean(everything) * 1000:.1f} ms")


def start_postfach(clients: int, messages: int, scratch: Path) -> tuple[subprocess.Popen, int, list[str]]:
    """A scratch server with one account per client, filled before it starts."""
    import asyncio

    from postfach.config import load_config
    from postfach.store.sqlite import SqliteStore
    from tests.support.accounts import make_account
    from tests.support.config import write_config
    from tests.support.server import ServeProcess

    config_file = write_config(scratch, listeners=("imaps",))
    config = load_config(config_file, environ={})
    users = [f"user{n}@bench.test" for n in range(clients)]

    async def fill() -> None:
        store = await SqliteStore.open(config.db_path, config.blob_dir)
        for user in users:
            account = await make_account(store, user, PASSWORD, "10G")
            inbox = await store.get_folder(account.id, "INBOX")
            await asyncio.gather(*(store.append(inbox.id, message(n)) for n in range(messages)))
        await store.close()

    asyncio.run(fill())
    server = ServeProcess(["--config", str(config_file)])
    return server, server.addresses["imaps"].port, users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--messages", type=int, default=200, help="messages per account (own server only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an IMAPS server already running (else start Postfach)")
    parser.add_argument("--user-pattern", default="user{n}@bench.test", help="with --port: account names")
    parser.add_argument("--password", default=PASSWORD)
    options = parser.parse_args()
    if options.port:
        users = [options.user_pattern.format(n=n) for n in range(options.clients)]
        report(run_clients(options.host, options.port, users, options.password, options.seconds),
               options.seconds, options.clients)
        return
    with tempfile.TemporaryDirectory() as scratch:
        server, port, users = start_postfach(options.clients, options.messages, Path(scratch))
        try:
            report(run_clients("127.0.0.1", port, users, PASSWORD, options.seconds), options.seconds, options.clients)
        finally:
            server.stop(signal.SIGTERM)


if __name__ == "__main__":
    main()
