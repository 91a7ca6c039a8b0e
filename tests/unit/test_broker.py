"""The supervisor's hub and the workers' links, over real socketpairs in one event loop."""

import asyncio
import socket

import pytest

from postfach.broker import BrokeredEventBus, BrokerLink, BrokerSlots, Hub
from postfach.connection_limits import ConnectionLimits
from postfach.store.changes import MessagesAdded


class Cluster:
    def __init__(self) -> None:
        self.ready: list[int] = []
        self.hub = Hub(self.ready.append)
        self.links: dict[int, BrokerLink] = {}
        self.tasks: list[asyncio.Task] = []
        self.lost: list[int] = []

    async def join(self, number: int) -> BrokerLink:
        hub_end, worker_end = socket.socketpair()
        self.tasks.append(asyncio.create_task(self.hub.serve(number, hub_end)))
        link = await BrokerLink.connect(worker_end)
        link.start(on_lost=lambda: self.lost.append(number))
        self.links[number] = link
        return link

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


@pytest.fixture
async def cluster():
    cluster = Cluster()
    yield cluster
    await cluster.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


async def test_an_event_reaches_the_other_workers_and_the_local_subscribers_once(cluster):
    buses = {number: BrokeredEventBus(await cluster.join(number)) for number in (1, 2, 3)}
    heard: dict[int, list] = {number: [] for number in buses}
    for number, bus in buses.items():
        bus.subscribe(7, heard[number].append)
    change = MessagesAdded(account_id=7, folder_id=3, uids=(1, 2), modseq=5)
    buses[1].publish(change)
    await settle()
    assert heard == {1: [change], 2: [change], 3: [change]}


async def test_slots_count_for_all_workers(cluster):
    first = BrokerSlots(await cluster.join(1))
    second = BrokerSlots(await cluster.join(2))
    assert await first.acquire("imap-address", "192.0.2.1", 2)
    assert await second.acquire("imap-address", "192.0.2.1", 2)
    assert not await first.acquire("imap-address", "192.0.2.1", 2)
    assert await first.acquire("imap-address", "192.0.2.9", 2)  # another key has its own count
    second.release("imap-address", "192.0.2.1")
    await settle()
    assert await first.acquire("imap-address", "192.0.2.1", 2)


async def test_connection_limits_on_broker_slots(cluster):
    limits = [ConnectionLimits("imap", 1, 1, slots=BrokerSlots(await cluster.join(n))) for n in (1, 2)]
    assert await limits[0].open("192.0.2.1") and not await limits[1].open("192.0.2.1")
    assert await limits[1].log_in(42) and not await limits[0].log_in(42)
    limits[1].log_out(42)
    await settle()
    assert await limits[0].log_in(42)


async def test_a_worker_that_goes_gives_back_what_it_held(cluster):
    leaving = await cluster.join(1)
    staying = BrokerSlots(await cluster.join(2))
    assert await BrokerSlots(leaving).acquire("pop3-maildrop", "5", 1)
    assert not await staying.acquire("pop3-maildrop", "5", 1)
    await leaving.close()
    del cluster.links[1]
    await settle()
    assert await staying.acquire("pop3-maildrop", "5", 1)


async def test_a_grant_for_a_caller_that_gave_up_is_given_back(cluster):
    link = await cluster.join(1)
    other = BrokerSlots(await cluster.join(2))
    waiting = asyncio.create_task(link.acquire("smtp-address", "192.0.2.1", 1))
    await asyncio.sleep(0)  # the request is on its way; the caller gives up before the answer
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await settle()
    assert await other.acquire("smtp-address", "192.0.2.1", 1)


async def test_a_lost_supervisor_refuses_waiting_requests_and_says_so(cluster):
    link = await cluster.join(1)
    for task in cluster.tasks:
        task.cancel()
    await asyncio.gather(*cluster.tasks, return_exceptions=True)
    cluster.tasks.clear()
    await settle()
    assert cluster.lost == [1]
    assert not await link.acquire("imap-address", "192.0.2.1", 5)


async def test_ready_is_reported_with_the_worker_number(cluster):
    (await cluster.join(4)).send(("ready",))
    await settle()
    assert cluster.ready == [4]


async def test_released_slots_leave_no_counts_behind(cluster):
    slots = BrokerSlots(await cluster.join(1))
    for number in range(50):
        assert await slots.acquire("smtp-address", f"192.0.2.{number}", 1)
        slots.release("smtp-address", f"192.0.2.{number}")
    slots.release("smtp-address", "198.51.100.1")  # never taken: ignored
    await settle()
    assert cluster.hub._held[1] == {}
