"""Store figures (issue 2): durable appends per second and folder load time.

    .venv/bin/python bench/store_bench.py [--messages 2000] [--folder-size 100000]

Prints:
- durable appends/s of 10 KB messages with 1 writer and with 20 concurrent
  writers (each append: message file written and fsynced, row committed with
  synchronous=FULL, before it returns) — target: 20 writers >= 2,000/s;
- the time to load uid/flags/modseq of a folder of 100,000 messages (what
  SELECT needs) — target: under 150 ms (median of 5 loads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from postfach.model import Flags, SystemFlag  # noqa: E402
from postfach.store.sqlite import SqliteStore  # noqa: E402

MESSAGE_SIZE = 10 * 1024


def message(number: int) -> bytes:
    head = (
        f"From: Bench <bench@example.org>\r\nTo: user@example.com\r\nSubject: bench {number}\r\n"
        f"Message-ID: <{number}.{os.getpid()}@bench>\r\n\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    return head + line * ((MESSAGE_SIZE - len(head)) // len(line))


async def appends_per_second(store: SqliteStore, folder_id: int, writers: int, total: int) -> float:
    counter = iter(range(total))

    async def writer() -> None:
        for number in counter:
            await store.append(folder_id, message(number + writers * 1_000_000))

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return total / (time.perf_counter() - started)


async def fill(store: SqliteStore, folder_id: int, count: int) -> None:
    """Many messages fast: one shared message file, realistic flags, 50 writers."""
    blob = await store.store_blob(message(0))
    rng = random.Random(1)
    remaining = iter(range(count))

    async def writer() -> None:
        for _ in remaining:
            flags = SystemFlag.SEEN if rng.random() < 0.8 else SystemFlag.NONE
            keywords = frozenset({"$Forwarded"}) if rng.random() < 0.05 else frozenset()
            await store.append(folder_id, blob, Flags(flags, keywords))

    await asyncio.gather(*(writer() for _ in range(50)))


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=options.dir) as scratch:
        store = await SqliteStore.open(Path(scratch) / "db.sqlite3", Path(scratch) / "blobs")
        await store.add_domain("example.com")
        account = await store.add_account("user@example.com", "h", 1 << 50)
        inbox = await store.get_folder(account.id, "INBOX")

        one = await appends_per_second(store, inbox.id, 1, options.messages // 4)
        twenty = await appends_per_second(store, inbox.id, 20, options.messages)
        print(f"durable appends/s, 10 KB, 1 writer:   {one:8.0f}")
        print(f"durable appends/s, 10 KB, 20 writers: {twenty:8.0f}   (target >= 2000; {twenty / one:.1f}x one writer)")

        big = await store.create_folder(account.id, "Big")
        started = time.perf_counter()
        await fill(store, big.id, options.folder_size)
        print(f"filled a folder of {options.folder_size} messages in {time.perf_counter() - started:.1f} s")
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            index = await store.load_index(big.id)
            timings.append((time.perf_counter() - started) * 1000)
        assert len(index.uids) == options.folder_size
        print(
            f"load uid/flags/modseq of {options.folder_size} messages: median {statistics.median(timings):.0f} ms,"
            f" best {min(timings):.0f} ms   (target < 150 ms)"
        )
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000, help="appends for the 20-writer figure")
    parser.add_argument("--folder-size", type=int, default=100_000)
    parser.add_argument("--dir", help="where to put the scratch store (default: the system's temp dir)")
    asyncio.run(main(parser.parse_args()))
