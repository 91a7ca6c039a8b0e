"""The embedded store's folder index for SELECT: the process's cache, the snapshot on disk, and the changes since.

`load_index` answers from one read snapshot of the database:

1. the folder's row: uidvalidity, uidnext, highestmodseq H;
2. a base: this process's cached entry (index_cache.py), else the folder's
   snapshot on disk (migration 008: one row of packed arrays, written when a
   large folder was loaded and has changed enough since), else every row;
3. if the base is older than H: the messages with a modseq above the base's,
   and the uids expunged since (both by index; usually none).

So a warm SELECT of a 100,000-message folder reads one row of `folders`, and
the first SELECT after a restart reads one snapshot row and what changed since
it; neither reads 100,000 rows. The cache is then kept current by the events
of the accounts it holds folders of, in every worker process.

Step 3 relies on the store's invariants (base.py): every change to a folder's
messages stamps the rows it touches, or their `expunged` rows, with the new
highestmodseq; and expunged uids are kept for good (QRESYNC needs them too).
Whatever prunes `expunged` one day must drop the snapshots older than it.
"""

from __future__ import annotations

import logging
import sqlite3

from postfach.model import FolderIndex
from postfach.store.base import NotFound
from postfach.store.events import LocalEventBus, Subscription
from postfach.store.index_cache import IndexCache, IndexEntry
from postfach.store.sqlite_engine import Readers, Tx, Writer
from postfach.store.sqlite_rows import find_folder

log = logging.getLogger(__name__)

# Folders smaller than this load from their rows in a few milliseconds: no snapshot on disk.
SNAPSHOT_MIN_MESSAGES = 5_000
# A new snapshot once this many messages (or a tenth of the folder) changed since the last one.
SNAPSHOT_MIN_CHANGES = 2_000


class IndexTables:
    """Part of SqliteStore (see there)."""

    _readers: Readers
    _writer: Writer
    events: LocalEventBus
    _index_cache: IndexCache
    _index_watches: dict[int, Subscription]

    async def load_index(self, folder_id: int) -> FolderIndex:
        index, account_id, saving = await self._readers.run(lambda conn: self._read_index(conn, folder_id))
        self._watch_index_accounts(account_id)
        if saving is not None:
            self._save_index_snapshot(folder_id, saving)
        return index

    def _read_index(self, conn: sqlite3.Connection, folder_id: int) -> tuple[FolderIndex, int, tuple | None]:
        """In a reader thread, in one read snapshot: the index, its account, and a snapshot to save (if due)."""
        try:
            folder = find_folder(conn, folder_id)
        except NotFound:
            self._index_cache.forget(folder_id)
            raise
        entry = self._index_cache.copy_of(folder_id, folder.uidvalidity)
        if entry is None:
            entry = _stored_snapshot(conn, folder_id, folder.account_id, folder.uidvalidity, folder.highestmodseq)
        if entry is None:
            entry = _all_rows(conn, folder_id, folder.account_id, folder.uidvalidity, folder.highestmodseq)
        if entry.modseq < folder.highestmodseq:
            _catch_up(conn, folder_id, entry)
        # (An entry newer than this snapshot is possible: an event applied after the snapshot began.)
        if entry.modseq <= folder.highestmodseq:
            entry.modseq, entry.uidnext = folder.highestmodseq, folder.uidnext
        index = entry.folder_index(folder_id)
        saving = None
        if len(entry) >= SNAPSHOT_MIN_MESSAGES and entry.unsaved >= max(SNAPSHOT_MIN_CHANGES, len(entry) // 10):
            # Taken here, before the cache (and its events) can change the entry. If the write
            # fails, the next snapshot is due after as many changes again.
            saving = (entry.uidvalidity, entry.modseq, entry.uidnext, *entry.packed())
            entry.unsaved = 0
        self._index_cache.install(folder_id, entry)
        return index, entry.account_id, saving

    def _watch_index_accounts(self, account_id: int) -> None:
        """Hear of every change to the accounts whose folders are cached (on the event loop)."""
        if account_id not in self._index_watches:
            self._index_watches[account_id] = self.events.subscribe(account_id, self._index_cache.apply)
        if len(self._index_watches) > 2 * len(self._index_cache) + 16:  # folders >= accounts: cheap test
            cached = self._index_cache.accounts()
            for account in [account for account in self._index_watches if account not in cached]:
                self._index_watches.pop(account).close()

    def _close_index_watches(self) -> None:
        for subscription in self._index_watches.values():
            subscription.close()
        self._index_watches.clear()

    def _save_index_snapshot(self, folder_id: int, saving: tuple) -> None:
        """Write (uidvalidity, modseq, uidnext, uids, flags, modseqs, keywords) in the background:
        the SELECT that found it due does not wait for it."""
        uidvalidity = saving[0]

        def job(tx: Tx) -> None:
            # A newer snapshot written meanwhile (by another process) stays; one of a folder
            # deleted meanwhile is not written (the folder row is gone).
            tx.execute(
                "INSERT INTO folder_snapshots (folder_id, uidvalidity, modseq, uidnext, uids, flags, modseqs, keywords)"
                " SELECT id, ?, ?, ?, ?, ?, ?, ? FROM folders WHERE id = ? AND uidvalidity = ?"
                " ON CONFLICT (folder_id) DO UPDATE SET uidvalidity = excluded.uidvalidity, modseq = excluded.modseq,"
                " uidnext = excluded.uidnext, uids = excluded.uids, flags = excluded.flags,"
                " modseqs = excluded.modseqs, keywords = excluded.keywords"
                " WHERE excluded.modseq > folder_snapshots.modseq"
                " OR excluded.uidvalidity != folder_snapshots.uidvalidity",
                (*saving, folder_id, uidvalidity),
            )

        future = self._writer.submit(job)
        future.add_done_callback(_log_failure)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("the folder index snapshot was not saved: %s", future.exception())


def _stored_snapshot(
    conn: sqlite3.Connection, folder_id: int, account_id: int, uidvalidity: int, highestmodseq: int
) -> IndexEntry | None:
    row = conn.execute(
        "SELECT uidvalidity, modseq, uidnext, uids, flags, modseqs, keywords FROM folder_snapshots WHERE folder_id = ?",
        (folder_id,),
    ).fetchone()
    if row is None or row[0] != uidvalidity or row[1] > highestmodseq:
        return None
    _, modseq, uidnext, uids, flags, modseqs, keywords = row
    return IndexEntry.unpacked(
        account_id, uidvalidity=uidvalidity, uidnext=uidnext, modseq=modseq,
        uids=uids, flags=flags, modseqs=modseqs, keywords=keywords,
    )


def _all_rows(
    conn: sqlite3.Connection, folder_id: int, account_id: int, uidvalidity: int, highestmodseq: int
) -> IndexEntry:
    """Every message row, as of the read snapshot (whose highestmodseq the caller read)."""
    entry = IndexEntry(account_id, uidvalidity, 1, highestmodseq)
    rows = conn.execute(
        "SELECT uid, flags, modseq FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)
    ).fetchall()
    if rows:
        uids, flags, modseqs = zip(*rows)
        entry.uids.extend(uids)
        entry.flags.extend(flags)
        entry.modseqs.extend(modseqs)
        entry.keywords = {
            uid: frozenset(text.split())
            for uid, text in conn.execute(
                "SELECT uid, keywords FROM messages WHERE folder_id = ? AND keywords IS NOT NULL", (folder_id,)
            )
        }
    entry.unsaved = len(rows)
    return entry


def _catch_up(conn: sqlite3.Connection, folder_id: int, entry: IndexEntry) -> None:
    """Apply what changed after the entry's modseq: rows with a higher modseq, and the expunges since."""
    since = entry.modseq
    gone = [uid for (uid,) in conn.execute(
        "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ?", (folder_id, since)
    )]
    if gone:
        entry.remove(gone)
    changed = conn.execute(
        "SELECT uid, flags, modseq, keywords FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid",
        (folder_id, since),
    ).fetchall()
    for uid, flags, modseq, keywords in changed:
        entry.put(uid, flags, modseq, frozenset(keywords.split()) if keywords else frozenset())
    entry.unsaved += len(gone) + len(changed)

