"""An outbound queue worker in a process of its own, for tests that kill it mid-delivery.

    python -m tests.support.queue_worker DATA_DIR PORT HELO LEASE

Mail for sink.test goes to 127.0.0.1:PORT. Prints its lease owner once the
worker runs, then runs until it is killed.
"""

import asyncio
import sys
from pathlib import Path

from postfach.config import ListenAddress
from postfach.dns import DnsResolver
from postfach.queue.routes import Routes
from postfach.queue.worker import OutboundQueue
from postfach.store.sqlite import SqliteStore


class NoBounces:
    async def deliver_bounce(self, recipient: str, message: bytes) -> None:
        raise AssertionError(f"the test expects no bounce, but one went to <{recipient}>")


async def main(data_dir: Path, port: int, helo: str, lease: float) -> None:
    store = await SqliteStore.open(data_dir / "db.sqlite3", data_dir / "blobs")
    routes = Routes(DnsResolver(), static={"sink.test": ListenAddress("127.0.0.1", port)})
    queue = OutboundQueue(store, routes, helo, lease=lease)
    queue.start(NoBounces())
    print(queue.owner, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
