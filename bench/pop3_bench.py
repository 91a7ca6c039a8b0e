"""POP3 figures (issue 4): listing a big INBOX, and RETR throughput.

    .venv/bin/python bench/pop3_bench.py [--messages 50000] [--big-mb 50] [--rounds 5]

Starts a real server (pop3s on 127.0.0.1, port 0) on a scratch directory and
drives it over TLS with a small blocking client in a thread. Prints:
- the login time (authentication plus the maildrop snapshot) of an INBOX of
  `--messages` messages;
- the time for STAT + UIDL + LIST of that INBOX, each answer read in full
  before the next command — target: under 300 ms for 50,000 messages;
- RETR throughput of one `--big-mb` MB message in MB/s, and how much the
  process's peak memory grew while serving it (streamed in ~1 MB chunks, it
  must stay far below the message size).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PASSWORD, Pop3Client  # noqa: E402
from store_bench import fill  # noqa: E402

from postfach.auth.passwords import Passwords  # noqa: E402
from postfach.config import load_config  # noqa: E402
from postfach.provisioning import Provisioning  # noqa: E402
from postfach.server import Server  # noqa: E402


def time_listing(host: str, port: int, address: str, rounds: int) -> tuple[float, list[float]]:
    client = Pop3Client(host, port)
    client.command(f"USER {address}")
    started = time.perf_counter()
    client.command(f"PASS {PASSWORD}")
    login = time.perf_counter() - started
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.command("STAT")
        client.multiline("UIDL")
        client.multiline("LIST")
        timings.append(time.perf_counter() - started)
    client.close()
    return login, timings


def time_retr(host: str, port: int, address: str, rounds: int) -> list[tuple[int, float]]:
    client = Pop3Client(host, port)
    client.command(f"USER {address}")
    client.command(f"PASS {PASSWORD}")
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        octets = client.multiline("RETR 1")
        results.append((octets, time.perf_counter() - started))
    client.close()
    return results


def big_message(megabytes: int) -> bytes:
    head = b"From: bench@example.org\r\nTo: big@example.com\r\nSubject: big\r\n\r\n"
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n"
    return head + line * (megabytes * 1024 * 1024 // len(line))


def rss_mb() -> float:
    """The process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """The highest resident memory seen while it runs (ru_maxrss would include building the message)."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=options.dir) as scratch:
        config_file = Path(scratch) / "postfach.toml"
        config_file.write_text('data_dir = "data"\nhostname = "localhost"\n[listen]\npop3s = "127.0.0.1:0"\n')
        server = Server(load_config(config_file, environ={}))
        await server.start()
        try:
            provisioning = Provisioning(server.store, Passwords())
            await provisioning.add_domain("example.com")
            user = await provisioning.add_mailbox("user@example.com", PASSWORD, quota="100G")
            big = await provisioning.add_mailbox("big@example.com", PASSWORD, quota="100G")
            inbox = await server.store.get_folder(user.id, "INBOX")
            started = time.perf_counter()
            await fill(server.store, inbox.id, options.messages)
            print(f"filled an INBOX of {options.messages} messages in {time.perf_counter() - started:.1f} s")
            address = server.addresses["pop3s"]

            login, timings = await asyncio.to_thread(
                time_listing, address.host, address.port, "user@example.com", options.rounds
            )
            print(f"login (auth + snapshot of {options.messages} messages): {login * 1000:.0f} ms")
            print(
                f"STAT + UIDL + LIST of {options.messages} messages over TLS: median "
                f"{statistics.median(timings) * 1000:.0f} ms, best {min(timings) * 1000:.0f} ms   (target < 300 ms)"
            )

            message = big_message(options.big_mb)
            big_inbox = await server.store.get_folder(big.id, "INBOX")
            await server.store.append(big_inbox.id, message)
            del message
            gc.collect()
            before = rss_mb()
            with RssSampler() as sampler:
                results = await asyncio.to_thread(
                    time_retr, address.host, address.port, "big@example.com", options.rounds
                )
            rates = [octets / seconds / 1e6 for octets, seconds in results]
            print(
                f"RETR of a {options.big_mb} MB message over TLS: median {statistics.median(rates):.0f} MB/s,"
                f" best {max(rates):.0f} MB/s; resident memory rose by at most {sampler.peak - before:.0f} MB"
            )
        finally:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where to put the scratch server (default: the system's temp dir)")
    asyncio.run(main(parser.parse_args()))
