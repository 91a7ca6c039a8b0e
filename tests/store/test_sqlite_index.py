"""The embedded store's folder index for SELECT (store/sqlite_index.py, store/index_cache.py).

The index a process keeps in memory and the snapshot it keeps on disk must
equal the store's rows after every kind of change, whoever made it: this
store, another process whose events arrive (as through the broker), late,
out of order, or not at all.
"""

import random
import sqlite3

import pytest

from postfach.model import Flags, FolderIndex, SystemFlag
from postfach.store import sqlite_index
from postfach.store.base import FlagMode, NotFound
from postfach.store.changes import FlagsChanged, MessagesAdded
from postfach.store.sqlite import SqliteStore
from tests.support.messages import make_message

SEEN, FLAGGED, DELETED = SystemFlag.SEEN, SystemFlag.FLAGGED, SystemFlag.DELETED


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs", blob_grace_seconds=0)
    yield opened
    await opened.close()


@pytest.fixture
async def other(store, tmp_path):
    """Another process on the same data: its own cache, its own event bus."""
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs", blob_grace_seconds=0)
    yield opened
    await opened.close()


@pytest.fixture
async def account(store):
    await store.add_domain("example.com")
    return await store.add_account("alice@example.com", "not-a-real-hash", 1 << 40)


@pytest.fixture
async def inbox(store, account):
    return await store.get_folder(account.id, "INBOX")


def truth(tmp_path, folder_id: int) -> FolderIndex:
    """The folder's index as its rows say, read past every cache."""
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        uidvalidity, uidnext, highestmodseq = conn.execute(
            "SELECT uidvalidity, uidnext, highestmodseq FROM folders WHERE id = ?", (folder_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT uid, flags, modseq, keywords FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)
        ).fetchall()
    finally:
        conn.close()
    return FolderIndex(
        folder_id, uidvalidity, uidnext, highestmodseq,
        [row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows],
        {row[0]: frozenset(row[3].split()) for row in rows if row[3]},
    )


async def index_after_restart(tmp_path, folder_id: int) -> FolderIndex:
    """The folder's index as a process that starts anew loads it (from its snapshot, if any)."""
    restarted = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    try:
        return await restarted.load_index(folder_id)
    finally:
        await restarted.close()


def cached(store, folder_id: int, uidvalidity: int) -> FolderIndex | None:
    """What the process holds in memory now, without a load (so: what events made of it)."""
    entry = store._index_cache.copy_of(folder_id, uidvalidity)
    return None if entry is None else entry.folder_index(folder_id)


async def add(store, folder, flags=None):
    return await store.append(folder.id, await store.store_blob(make_message()), flags or Flags())


def bridge(source, target):
    """Carry `source`'s events to `target`'s bus, as the broker carries them between workers."""
    delivered = []

    def forward(change):
        delivered.append(change)
        target.events.publish(change)

    return forward, delivered


async def test_every_kind_of_change_keeps_the_cached_index_exact(store, account, inbox, tmp_path):
    archive = await store.get_folder(account.id, "Archive")
    for _ in range(5):
        await add(store, inbox)
    await add(store, inbox, Flags(SEEN, frozenset({"$Forwarded"})))
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)
    assert await store.load_index(archive.id) == truth(tmp_path, archive.id)
    uids = (await store.load_index(inbox.id)).uids

    async def changes():
        yield await add(store, inbox, Flags(FLAGGED, frozenset({"work", "$Junk"})))
        yield await store.set_flags(inbox.id, uids[:3], Flags(SEEN), FlagMode.ADD)
        yield await store.set_flags(inbox.id, uids[1:2], Flags(SEEN), FlagMode.REMOVE)
        yield await store.set_flags(inbox.id, uids[2:4], Flags(DELETED, frozenset({"later"})), FlagMode.REPLACE)
        yield await store.set_flags(inbox.id, uids[5:6], Flags(keywords=frozenset({"$Forwarded"})), FlagMode.REMOVE)
        yield await store.set_flags_if_unchanged(inbox.id, uids[:2], Flags(FLAGGED), FlagMode.ADD, 10**9)
        yield await store.expunge(inbox.id, [uids[0]])
        yield await store.expunge_deleted(inbox.id)
        yield await store.copy_messages(inbox.id, uids[4:6], archive.id)
        yield await store.move_messages(inbox.id, [uids[4]], archive.id)
        yield await store.move_messages(archive.id, (await store.load_index(archive.id)).uids[:1], inbox.id)
        yield await store.rename_folder(archive.id, "Old")
        yield await add(store, inbox)

    async for _ in changes():
        for folder in (inbox, archive):
            expected = truth(tmp_path, folder.id)
            # The events alone kept the memory exact, and a load gives the same.
            assert cached(store, folder.id, folder.uidvalidity) == expected
            assert await store.load_index(folder.id) == expected


async def test_deleting_a_folder_forgets_it_and_its_name_comes_back_with_a_new_uidvalidity(store, account, tmp_path):
    folder = await store.create_folder(account.id, "Projects")
    await add(store, folder)
    await store.load_index(folder.id)
    await store.delete_folder(folder.id)
    assert cached(store, folder.id, folder.uidvalidity) is None
    with pytest.raises(NotFound):
        await store.load_index(folder.id)
    again = await store.create_folder(account.id, "Projects")
    assert again.id != folder.id and again.uidvalidity > folder.uidvalidity
    assert await store.load_index(again.id) == truth(tmp_path, again.id)


async def test_a_changed_uidvalidity_is_never_answered_from_memory(store, inbox, tmp_path):
    await add(store, inbox)
    await store.load_index(inbox.id)
    conn = sqlite3.connect(tmp_path / "db.sqlite3")  # what a restore of another copy would do
    conn.execute("UPDATE folders SET uidvalidity = uidvalidity + 7 WHERE id = ?", (inbox.id,))
    conn.commit()
    conn.close()
    index = await store.load_index(inbox.id)
    assert index == truth(tmp_path, inbox.id) and index.uidvalidity == inbox.uidvalidity + 7


async def test_renaming_inbox_empties_it_in_memory_too(store, account, inbox, tmp_path):
    for _ in range(3):
        await add(store, inbox, Flags(SEEN))
    await store.load_index(inbox.id)
    moved = await store.rename_inbox(account.id, "Before")
    assert cached(store, inbox.id, inbox.uidvalidity) == truth(tmp_path, inbox.id)
    assert (await store.load_index(inbox.id)).uids == []
    assert await store.load_index(moved.id) == truth(tmp_path, moved.id)


async def test_changes_by_another_process_whose_events_arrive(store, other, account, inbox, tmp_path):
    for _ in range(4):
        await add(store, inbox)
    await store.load_index(inbox.id)
    forward, delivered = bridge(other, store)
    other.events.subscribe(account.id, forward)

    await add(other, inbox, Flags(SEEN, frozenset({"$Label1"})))
    await other.set_flags(inbox.id, [1, 2], Flags(FLAGGED), FlagMode.ADD)
    await other.expunge(inbox.id, [3])
    assert [type(change) for change in delivered] == [MessagesAdded, FlagsChanged, type(delivered[2])]
    # This process never read a row, yet holds what the other one did.
    assert cached(store, inbox.id, inbox.uidvalidity) == truth(tmp_path, inbox.id)
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)


async def test_changes_by_another_process_whose_events_are_late_lost_or_out_of_order(
    store, other, account, inbox, tmp_path
):
    for _ in range(4):
        await add(store, inbox)
    await store.load_index(inbox.id)
    held = []
    other.events.subscribe(account.id, held.append)  # the broker holds them back for now
    await other.set_flags(inbox.id, [1], Flags(SEEN), FlagMode.ADD)
    await add(other, inbox)
    await other.expunge(inbox.id, [2])
    # Nothing arrived: a load reads what changed after the modseq it holds.
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)
    # They arrive now, late and in the wrong order: old news, changing nothing.
    for change in reversed(held):
        store.events.publish(change)
    assert cached(store, inbox.id, inbox.uidvalidity) == truth(tmp_path, inbox.id)

    # A gap (an event lost): the next ones are not applied, and the next load fills the gap.
    held.clear()
    await other.set_flags(inbox.id, [1], Flags(FLAGGED), FlagMode.ADD)
    await other.set_flags(inbox.id, [4], Flags(FLAGGED), FlagMode.ADD)
    store.events.publish(held[1])
    assert cached(store, inbox.id, inbox.uidvalidity) != truth(tmp_path, inbox.id)
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)


async def test_events_without_flags_leave_the_index_to_the_next_load(store, account, inbox, tmp_path):
    await add(store, inbox)
    before = await store.load_index(inbox.id)
    # A change published by an older worker (no flags in it): it is not guessed at.
    store.events.publish(MessagesAdded(account.id, inbox.id, (99,), before.highestmodseq + 1))
    assert cached(store, inbox.id, inbox.uidvalidity) == before
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)


async def test_a_large_folder_is_loaded_from_its_snapshot_after_a_restart(store, other, inbox, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_MESSAGES", 5)
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_CHANGES", 3)
    for number in range(8):
        keywords = frozenset({"k"}) if number == 3 else frozenset()
        await add(store, inbox, Flags(SEEN if number % 2 else SystemFlag.NONE, keywords))
    await store.load_index(inbox.id)  # every row read: the snapshot is due, and written behind the SELECT
    await store.set_subscribed(inbox.id, True)  # any later write: the writer has run the snapshot's job
    assert _snapshot_modseq(tmp_path, inbox.id) == truth(tmp_path, inbox.id).highestmodseq

    # Another process changes the folder; then this one starts again with nothing in memory.
    await other.set_flags(inbox.id, [2, 3], Flags(FLAGGED), FlagMode.ADD)
    await other.expunge(inbox.id, [1])
    await add(other, inbox)
    restarted = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    try:
        def no_full_read(*args):
            raise AssertionError("every row was read although a snapshot is there")

        monkeypatch.setattr(sqlite_index, "_all_rows", no_full_read)
        assert await restarted.load_index(inbox.id) == truth(tmp_path, inbox.id)
        # Three changes since: a new snapshot is due and written.
        await restarted.set_subscribed(inbox.id, True)
        assert _snapshot_modseq(tmp_path, inbox.id) == truth(tmp_path, inbox.id).highestmodseq
    finally:
        await restarted.close()


async def test_a_snapshot_is_written_as_read_even_if_an_event_comes_first(
    store, other, account, inbox, tmp_path, monkeypatch
):
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_MESSAGES", 2)
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_CHANGES", 1)
    for _ in range(3):
        await add(store, inbox)
    await store.load_index(inbox.id)  # cached and watched from here on (and a first snapshot written)
    await add(other, inbox)  # a change whose event never comes: the next load reads it, and is due
    forward, delivered = bridge(other, store)
    other.events.subscribe(account.id, forward)
    read = store._readers.run

    async def read_then_change(query):
        result = await read(query)
        # Another process changes the folder, and its event reaches this one's cache, after
        # the read and before the snapshot (due: every row was read) is handed to the writer.
        await other.set_flags(inbox.id, [1], Flags(FLAGGED), FlagMode.ADD)
        return result

    monkeypatch.setattr(store._readers, "run", read_then_change)
    await store.load_index(inbox.id)
    monkeypatch.setattr(store._readers, "run", read)
    assert delivered and cached(store, inbox.id, inbox.uidvalidity) == truth(tmp_path, inbox.id)
    await store.set_subscribed(inbox.id, True)
    assert await index_after_restart(tmp_path, inbox.id) == truth(tmp_path, inbox.id)


async def test_a_snapshot_of_a_folder_filled_by_copies(store, other, account, inbox, tmp_path, monkeypatch):
    """uidnext far above modseq (one COPY: many uids, one modseq): neither is taken for the other."""
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_MESSAGES", 2)
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_CHANGES", 1)
    archive = await store.get_folder(account.id, "Archive")
    for _ in range(12):
        await add(store, inbox)
    await store.copy_messages(inbox.id, range(1, 13), archive.id)
    await store.load_index(archive.id)
    await store.set_subscribed(archive.id, True)
    assert _snapshot_modseq(tmp_path, archive.id) == 2
    await other.set_flags(archive.id, [5], Flags(SEEN), FlagMode.ADD)
    assert await index_after_restart(tmp_path, archive.id) == truth(tmp_path, archive.id)


async def test_a_damaged_snapshot_costs_a_full_read_not_a_wrong_index(store, inbox, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_MESSAGES", 2)
    monkeypatch.setattr(sqlite_index, "SNAPSHOT_MIN_CHANGES", 1)
    for _ in range(3):
        await add(store, inbox)
    await store.load_index(inbox.id)
    await store.set_subscribed(inbox.id, True)
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    conn.execute("UPDATE folder_snapshots SET uids = substr(uids, 1, 5) WHERE folder_id = ?", (inbox.id,))
    conn.commit()
    conn.close()
    assert await index_after_restart(tmp_path, inbox.id) == truth(tmp_path, inbox.id)


async def test_the_cache_keeps_to_its_size_and_forgets_the_least_recently_used(store, account, inbox, tmp_path):
    store._index_cache.max_messages = 5
    drafts = await store.get_folder(account.id, "Drafts")
    for _ in range(3):
        await add(store, inbox)
        await add(store, drafts)
    await store.load_index(inbox.id)
    await store.load_index(drafts.id)
    assert inbox.id not in store._index_cache and drafts.id in store._index_cache
    assert await store.load_index(inbox.id) == truth(tmp_path, inbox.id)


async def test_random_changes_from_two_processes(store, other, account, inbox, tmp_path):
    """Many changes of every kind from two processes, events carried or dropped at random."""
    rng = random.Random(20261123)
    archive = await store.get_folder(account.id, "Archive")
    folders = [inbox, archive]
    dropping = [False]

    def forward(change):
        if not dropping[0]:
            store.events.publish(change)

    other.events.subscribe(account.id, forward)
    for _ in range(10):
        await add(store, inbox)
    for step in range(120):
        actor = rng.choice([store, other])
        folder = rng.choice(folders)
        dropping[0] = rng.random() < 0.2
        uids = (await actor.load_index(folder.id)).uids
        some = rng.sample(uids, min(len(uids), rng.randint(1, 4))) if uids else []
        action = rng.choice(["add", "add", "flags", "flags", "expunge", "copy", "move"])
        if action == "add" or not some:
            flags = Flags(SystemFlag(rng.randrange(32)), frozenset(rng.sample(["a", "b", "$c"], rng.randint(0, 2))))
            await add(actor, folder, flags)
        elif action == "flags":
            mode = rng.choice(list(FlagMode))
            flags = Flags(SystemFlag(rng.randrange(32)), frozenset(rng.sample(["a", "b", "$c"], rng.randint(0, 2))))
            await actor.set_flags(folder.id, some, flags, mode)
        elif action == "expunge":
            await actor.expunge(folder.id, some)
        else:
            target = folders[1 - folders.index(folder)]
            transfer = actor.copy_messages if action == "copy" else actor.move_messages
            await transfer(folder.id, some, target.id)
        check = rng.choice(folders)
        if rng.random() < 0.5:
            assert await store.load_index(check.id) == truth(tmp_path, check.id), step
        memory = cached(store, check.id, check.uidvalidity)
        if memory is not None and memory.highestmodseq == truth(tmp_path, check.id).highestmodseq:
            assert memory == truth(tmp_path, check.id), step  # when it says it is current, it is
    for folder in folders:
        assert await store.load_index(folder.id) == truth(tmp_path, folder.id)
        assert await other.load_index(folder.id) == truth(tmp_path, folder.id)


def _snapshot_modseq(tmp_path, folder_id):
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        row = conn.execute("SELECT modseq FROM folder_snapshots WHERE folder_id = ?", (folder_id,)).fetchone()
    finally:
        conn.close()
    return row and row[0]
