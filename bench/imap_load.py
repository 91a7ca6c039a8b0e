"""IMAP load: N clients over TLS, each on its own account, running a realistic mix.

    .venv/bin/python bench/imap_load.py [--clients 50] [--seconds 30] [--messages 200] [--workers N]
    .venv/bin/python bench/imap_load.py --port 993 --user-format 'user{n}@example.test' --password P

Without --port it starts `postfach serve` on a scratch data directory with
--clients accounts of --messages messages each. Every client logs in once
over TLS (IMAPS), selects INBOX, then loops over a weighted mix until the
time is up: FETCH of flags, of envelope+bodystructure, of a body part; STORE;
SEARCH; APPEND + EXPUNGE; IDLE entered and left (DONE); NOOP. With --warmup
the mix runs that many seconds first, unmeasured (a server that builds its
caches on first access gets to build them). Prints operations per second and
p50/p99 latency per operation and in total, and the load generator's own CPU
use (it shares the machine with the server). The same mix runs against any
IMAP server (bench/compare.sh).
"""

from __future__ import annotations

import argparse
import imaplib
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ProcessCpu,
    add_target_options,
    client_tls_context,
    mix_message,
    quantile,
    start_postfach,
    tls_description,
    unique_tag,
    write_json,
)

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


class Client:
    def __init__(self, host: str, port: int, user: str, password: str, seed: int) -> None:
        self.imap = imaplib.IMAP4_SSL(host, port, ssl_context=client_tls_context(), timeout=60)
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
        self.imap.append("INBOX", "(\\Deleted)", None, mix_message(self.rng.randint(1, 10**6), unique_tag()))
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


def run_clients(host: str, port: int, users: list[str], password: str, seconds: float,
                warmup: float = 0.0) -> tuple[dict[str, list[float]], list[str], float, str]:
    """Latencies per operation of the measured period, the errors, the generator's CPU share, the TLS used."""
    latencies: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[str] = []
    tls: list[str] = []
    operations = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    measure_from: list[float] = [0.0]
    deadline: list[float] = [0.0]

    def set_clock() -> None:  # run by the barrier before it lets any thread go
        measure_from[0] = time.perf_counter() + warmup
        deadline[0] = measure_from[0] + seconds

    start = threading.Barrier(len(users) + 1, action=set_clock)

    def worker(index: int, user: str) -> None:
        try:
            client = Client(host, port, user, password, index)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{user}: {error}")
            start.abort()
            return
        local: dict[str, list[float]] = defaultdict(list)
        tls.append(tls_description(client.imap.sock))
        try:
            start.wait()
        except threading.BrokenBarrierError:
            client.close()
            return
        while (began := time.perf_counter()) < deadline[0]:
            name = client.rng.choices(operations, weights)[0]
            try:
                getattr(client, name)()
            except Exception as error:  # noqa: BLE001 - a failed operation is counted, not fatal
                if began >= measure_from[0]:
                    errors.append(f"{user} {name}: {error}")
                continue
            if began >= measure_from[0]:
                local[name].append(time.perf_counter() - began)
        client.close()
        with lock:
            for name, values in local.items():
                latencies[name].extend(values)

    threads = [threading.Thread(target=worker, args=(n, user)) for n, user in enumerate(users)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        for thread in threads:
            thread.join()
        raise SystemExit(f"not every client could log in: {errors[:3]}") from None
    time.sleep(warmup)
    with ProcessCpu() as cpu:
        for thread in threads:
            thread.join()
    if errors:
        print(f"{len(errors)} errors, e.g.: {errors[:3]}")
    return latencies, errors, cpu.share, tls[0]


def report(latencies: dict[str, list[float]], seconds: float, clients: int) -> dict:
    everything = sorted(value for values in latencies.values() for value in values)
    print(f"{clients} clients, {seconds:.0f} s")
    print(f"{'operation':<16}{'ops':>8}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    per_operation = {}
    for name, _ in MIX:
        values = sorted(latencies.get(name, []))
        if values:
            p50, p99 = quantile(values, 0.5) * 1000, quantile(values, 0.99) * 1000
            per_operation[name] = {"ops": len(values), "p50_ms": p50, "p99_ms": p99}
            print(f"{name:<16}{len(values):>8}{len(values) / seconds:>9.1f}{p50:>9.1f}{p99:>9.1f}")
    p50, p99 = quantile(everything, 0.5) * 1000, quantile(everything, 0.99) * 1000
    print(f"{'total':<16}{len(everything):>8}{len(everything) / seconds:>9.1f}{p50:>9.1f}{p99:>9.1f}")
    print(f"mean latency {statistics.fmean(everything) * 1000:.1f} ms")
    return {"clients": clients, "seconds": seconds, "ops": len(everything), "ops_per_s": len(everything) / seconds,
            "p50_ms": p50, "p99_ms": p99, "per_operation": per_operation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=0, help="seconds of the mix before measuring")
    parser.add_argument("--messages", type=int, default=200, help="messages per account (own server only)")
    add_target_options(parser, "IMAPS", "user{n}@bench.test")
    options = parser.parse_args()
    users = [options.user_format.format(n=n) for n in range(options.clients)]

    def measure(port: int, password: str) -> None:
        latencies, errors, cpu, tls = run_clients(options.host, port, users, password, options.seconds,
                                                  options.warmup)
        result = report(latencies, options.seconds, options.clients)
        print(f"load generator CPU: {cpu:.0%} of one core; {tls}")
        write_json(options.json, {**result, "errors": len(errors), "generator_cpu": cpu, "tls": tls})

    if options.port:
        measure(options.port, options.password)
        return
    with tempfile.TemporaryDirectory() as scratch:
        mailboxes = {user: [mix_message(n, user) for n in range(options.messages)] for user in users}
        server = start_postfach(Path(scratch), ("imaps",), mailboxes, options.workers)
        try:
            measure(server.addresses["imaps"].port, options.password)
        finally:
            server.stop(signal.SIGTERM)


if __name__ == "__main__":
    main()
