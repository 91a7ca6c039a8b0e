"""Several queue workers on one store, as `serve --workers N` and several nodes run them.

Each worker has a store instance of its own on the same data (as a process
has) and sends to one SMTP sink on loopback through a static route. The sink
counts what it accepted by Message-ID, and knows each sender by its HELO name.
"""

import asyncio
import email
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP

from postfach.config import ListenAddress
from postfach.dns import DnsResolver
from postfach.queue.routes import Routes
from postfach.queue.worker import OutboundQueue
from postfach.store.sqlite import SqliteStore
from tests.support.queue_worker import NoBounces

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]


class Sink:
    """The MX of sink.test. DATA from a HELO name in `stall` waits until `release` is set."""

    def __init__(self, delay: float = 0.0, stall: frozenset[str] = frozenset()) -> None:
        self.delay = delay
        self.stall = stall
        self.release = asyncio.Event()
        self.begun: list[str] = []  # the HELO name of every DATA begun
        self.accepted: list[tuple[str, str, float]] = []  # (Message-ID, HELO name, when)
        self.server: asyncio.Server | None = None

    async def handle_DATA(self, server, session, envelope):
        self.begun.append(session.host_name)
        if session.host_name in self.stall:
            await self.release.wait()
            return "451 4.3.0 stalled by the test"
        await asyncio.sleep(self.delay)
        message_id = email.message_from_bytes(envelope.content)["Message-ID"]
        self.accepted.append((message_id, session.host_name, time.time()))
        return "250 2.0.0 OK"

    async def start(self) -> ListenAddress:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, hostname="sink.test"), "127.0.0.1", 0)
        return ListenAddress("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.release.set()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def sink():
    started = Sink(delay=0.05, stall=frozenset({"crashing.test"}))
    address = await started.start()
    yield started, address
    await started.stop()


@pytest.fixture
async def stores(tmp_path):
    """Two store instances on the same data, as two processes open it."""
    opened = [await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs") for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


def worker(store, address, helo, **options):
    routes = Routes(DnsResolver(), static={"sink.test": address})
    return OutboundQueue(store, routes, helo, send_timeout=20, **options)


async def enqueue(store, count):
    message_ids = []
    for number in range(count):
        message_id = f"<{number}.{time.monotonic_ns()}@a.test>"
        data = f"From: alice@a.test\r\nTo: bob@sink.test\r\nMessage-ID: {message_id}\r\nSubject: {number}\r\n\r\nHi\r\n"
        await store.enqueue("alice@a.test", ["bob@sink.test"], await store.store_blob(data.encode()))
        message_ids.append(message_id)
    return message_ids


async def until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_two_workers_deliver_every_message_exactly_once(sink, stores):
    mx, address = sink
    message_ids = await enqueue(stores[0], 40)
    queues = [
        worker(store, address, helo, concurrency=4, lease=5) for store, helo in zip(stores, ("one.test", "two.test"))
    ]
    bounces = NoBounces()
    for queue in queues:
        queue.start(bounces)
    try:
        async def done():
            return len(mx.accepted) >= 40 and await stores[1].list_queue() == []

        await until(done)
        await asyncio.sleep(0.3)  # a second copy on its way would arrive now
    finally:
        for queue in queues:
            await queue.stop()
    assert Counter(message_id for message_id, _, _ in mx.accepted) == Counter(message_ids)
    # Both took part: the sink's delay keeps each worker's four slots busy for a while.
    assert {helo for _, helo, _ in mx.accepted} == {"one.test", "two.test"}


async def test_the_lease_of_a_worker_killed_mid_delivery_runs_out_and_another_delivers(sink, stores, tmp_path):
    mx, address = sink
    [message_id] = await enqueue(stores[0], 1)
    [entry] = await stores[0].list_queue()
    crashing = subprocess.Popen(
        [sys.executable, "-m", "tests.support.queue_worker", str(tmp_path), str(address.port), "crashing.test", "2"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        owner = (await asyncio.to_thread(crashing.stdout.readline)).strip()

        async def sending():
            return "crashing.test" in mx.begun

        await until(sending)
        assert (await stores[0].get_queued(entry.id)).claimed_by == owner
        os.kill(crashing.pid, signal.SIGKILL)
    finally:
        crashing.kill()
        crashing.wait()
    held = await stores[0].get_queued(entry.id)
    assert held.claimed_by == owner and held.attempts == 0  # the dead worker recorded nothing

    survivor = worker(stores[1], address, "survivor.test", lease=2)
    survivor.start(NoBounces())
    try:
        async def delivered():
            return await stores[1].list_queue() == []

        await until(delivered)
    finally:
        await survivor.stop()
    [(accepted_id, helo, when)] = mx.accepted
    assert (accepted_id, helo) == (message_id, "survivor.test")
    assert when >= held.claimed_until.timestamp()  # not taken over while the lease held
    assert mx.begun == ["crashing.test", "survivor.test"]
