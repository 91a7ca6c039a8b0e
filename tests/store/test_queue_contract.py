"""The store contract for queue leases: one process at a time tries an entry; a dead one's lease runs out.

`second_store` is another instance on the same data, as a second process opens it.
"""

import asyncio
from datetime import datetime, timezone

import pytest

from postfach.store.base import Conflict, LeaseLost, NotFound
from tests.support.messages import make_message

T = 1_000_000.0  # "now" in these tests: leases are judged by the time the caller gives


def blob_files(store):
    return sorted(path.name for path in store.blobs.root.glob("??/*"))


async def queue(store, count, next_attempt=T, sender="alice@example.com"):
    staged = await store.store_blob(make_message(50))
    return [await store.enqueue(sender, [f"r{n}@remote.example"], staged, next_attempt) for n in range(count)]


async def test_two_stores_claiming_at_once_never_take_one_entry_twice(store, second_store):
    entries = await queue(store, 60)
    claims = await asyncio.gather(
        *(
            instance.claim_queue(owner, T, 60, limit=3)
            for _ in range(15)
            for instance, owner in ((store, "one"), (second_store, "two"))
        )
    )
    claimed = [(entry.id, entry.claimed_by) for batch in claims for entry in batch]
    ids = [queue_id for queue_id, _ in claimed]
    assert len(ids) == len(set(ids)) == 60
    assert set(ids) == {entry.id for entry in entries}
    # Each claim says who holds the entry, and the store agrees.
    for queue_id, owner in claimed:
        assert (await second_store.get_queued(queue_id)).claimed_by == owner
    assert {owner for _, owner in claimed} == {"one", "two"}
    assert await store.claim_queue("one", T + 59, 60) == []
    assert await second_store.claim_queue("three", T + 59, 60) == []


async def test_a_lease_that_ran_out_is_claimed_again_and_its_old_holder_records_nothing(store, second_store):
    [entry] = await queue(store, 1)
    [claimed] = await store.claim_queue("one", T, 30)
    assert claimed.id == entry.id and claimed.claimed_by == "one"
    assert claimed.claimed_until == datetime.fromtimestamp(T + 30, timezone.utc)
    assert claimed.held_at(datetime.fromtimestamp(T + 29, timezone.utc))
    assert await second_store.claim_queue("two", T + 29.9, 30) == []
    assert await second_store.next_queue_attempt() == T + 30  # when someone may take it over

    # "one" died: its lease runs out and "two" takes the entry over.
    [taken] = await second_store.claim_queue("two", T + 30, 30)
    assert taken.claimed_by == "two" and taken.pending == entry.pending
    assert await store.renew_queue_leases("one", [entry.id], T + 100) == []
    with pytest.raises(LeaseLost):
        await store.record_attempt(entry.id, {"r0@remote.example": ("delivered", None)}, T + 40, owner="one")
    unchanged = await store.get_queued(entry.id)
    assert (unchanged.pending, unchanged.attempts, unchanged.claimed_by) == (entry.pending, 0, "two")

    # "two" gets a 4xx: the entry is due again later, and nobody holds it.
    after = await second_store.record_attempt(
        entry.id, {"r0@remote.example": ("pending", "451 later")}, T + 90, "451 later", owner="two"
    )
    assert (after.attempts, after.claimed_by, after.claimed_until) == (1, None, None)
    assert after.next_attempt.timestamp() == T + 90
    assert await store.claim_queue("one", T + 89, 30) == []
    assert [e.id for e in await store.claim_queue("one", T + 90, 30)] == [entry.id]


async def test_renewing_keeps_an_entry_and_releasing_frees_it_at_once(store, second_store):
    [entry] = await queue(store, 1)
    await store.claim_queue("one", T, 10)
    assert await store.renew_queue_leases("one", [entry.id, 12345], T + 25) == [entry.id]
    assert await second_store.claim_queue("two", T + 20, 10) == []  # past the first lease, not the renewed one
    assert await store.release_queue_claims("two") == 0  # only the holder releases
    assert await store.release_queue_claims("one", [entry.id]) == 1
    assert await store.renew_queue_leases("one", [entry.id], T + 50) == []
    assert [e.claimed_by for e in await second_store.claim_queue("two", T + 20, 10)] == ["two"]


async def test_only_due_entries_are_claimed_soonest_first_up_to_the_limit(store):
    due = {when: (await queue(store, 1, next_attempt=when))[0].id for when in (T + 3, T + 1, T + 2, T + 5)}
    assert [e.id for e in await store.claim_queue("one", T + 3.5, 60, limit=2)] == [due[T + 1], due[T + 2]]
    assert [e.id for e in await store.claim_queue("one", T + 3.5, 60, limit=5)] == [due[T + 3]]
    assert await store.claim_queue("one", T + 4, 60) == []
    assert await store.next_queue_attempt() == T + 5


async def test_a_delivered_entry_goes_with_its_lease_and_file(store):
    [entry] = await queue(store, 1)
    await store.claim_queue("one", T, 60)
    assert await store.record_attempt(entry.id, {"r0@remote.example": ("delivered", None)}, T, owner="one") is None
    assert await store.get_queued(entry.id) is None
    await store.collect_garbage()
    assert blob_files(store) == []


async def test_the_operator_cannot_change_an_entry_a_process_holds(store):
    held, free = await queue(store, 2, next_attempt=T + 500)
    waiting = (await queue(store, 1, next_attempt=T + 900))[0]
    await store.claim_queued(held.id, "worker", T, 60)  # due or not: the operator's bounce claims like this
    for operation in (
        store.retry_queued(T + 1, held.id),
        store.remove_queued(held.id, T + 1),
        store.claim_queued(held.id, "operator", T + 1, 60),
    ):
        with pytest.raises(Conflict, match=f"queue entry {held.id} is being delivered right now"):
            await operation
    for operation in (store.retry_queued(T + 1, 999), store.remove_queued(999, T + 1),
                      store.claim_queued(999, "operator", T + 1, 60)):
        with pytest.raises(NotFound, match="queue entry 999 does not exist"):
            await operation
    assert (await store.get_queued(held.id)).next_attempt.timestamp() == T + 500

    # Every entry nobody holds is due at once; the held one is left alone.
    assert await store.retry_queued(T + 1) == 2
    assert {e.id for e in await store.list_queue(due_before=T + 1)} == {free.id, waiting.id}
    assert await store.retry_queued(T + 2, free.id) == 1

    # After the holder's lease ran out the operator may remove it; its file goes.
    removed = await store.remove_queued(held.id, T + 60)
    assert removed.id == held.id and removed.pending == held.pending
    assert await store.get_queued(held.id) is None
    for entry in (free, waiting):
        await store.remove_queued(entry.id, T + 60)
    await store.collect_garbage()
    assert blob_files(store) == []
