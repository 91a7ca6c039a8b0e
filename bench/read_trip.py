"""The cost of one trip from the event loop to a store reader thread and back.

    .venv/bin/python bench/read_trip.py [--trips 20000]

Every store read of an IMAP command or POP3 login makes this trip. Compares
asyncio's run_in_executor on a ThreadPoolExecutor with the store's own reader
threads (store/sqlite_engine._ReadThreads), one caller at a time and 20 at once,
as wall time and CPU per trip (the call itself does nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from postfach.store.sqlite_engine import _ReadThreads  # noqa: E402

THREADS = 4  # as the store's Readers
CALLERS = 20


def nothing(value: int) -> int:
    return value


async def measure(trips: int) -> None:
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(THREADS)
    readers = _ReadThreads(THREADS)
    ways = {
        "run_in_executor": lambda: loop.run_in_executor(executor, nothing, 1),
        "store reader threads": lambda: readers.run(nothing, 1),
    }
    try:
        for name, trip in ways.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(trips):
                await trip()
            alone = ((time.perf_counter() - wall) / trips * 1e6, (time.process_time() - cpu) / trips * 1e6)

            async def caller() -> None:
                for _ in range(trips // CALLERS):
                    await trip()

            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            together = ((time.perf_counter() - wall) / trips * 1e6, (time.process_time() - cpu) / trips * 1e6)
            print(f"{name:22s} one caller: {alone[0]:5.1f} µs wall, {alone[1]:5.1f} µs CPU per trip;"
                  f" {CALLERS} at once: {together[0]:5.1f} µs wall, {together[1]:5.1f} µs CPU")
    finally:
        readers.close()
        executor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trips", type=int, default=20_000)
    asyncio.run(measure(parser.parse_args().trips))


if __name__ == "__main__":
    main()
