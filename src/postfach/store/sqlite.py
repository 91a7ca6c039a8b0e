"""The embedded store: SQLite for metadata, content-addressed files for message bytes.

Writes go through the writer thread (group commit, see sqlite_engine), reads
through the reader pool; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from postfach.content_cache import ContentCache
from postfach.mime import ParsedMessage, parse_message
from postfach.model import (
    INBOX,
    BlobRef,
    Flags,
    Folder,
    FolderStatus,
    MessageMeta,
    SpecialUse,
    SystemFlag,
)
from postfach.store.base import (
    AlreadyExists,
    Conflict,
    FlagMode,
    NotFound,
    QuotaExceeded,
    StagedBlob,
    StoreError,
)
from postfach.store.blobs import FileBlobStore
from postfach.store.changes import (
    Change,
    FlagsChanged,
    FolderDeleted,
    FolderRenamed,
    MessagesAdded,
    MessagesExpunged,
)
from postfach.store.events import LocalEventBus, Subscription
from postfach.store.index_cache import IndexCache
from postfach.store.search_text import index_texts
from postfach.store.sqlite_accounts import AccountTables
from postfach.store.sqlite_folders import FolderTables, claim_recent_job
from postfach.store.sqlite_index import IndexTables
from postfach.store.sqlite_transfers import TransferTables
from postfach.store.sqlite_queue import QueueTables
from postfach.store.sqlite_security import SecurityTables
from postfach.store.sqlite_engine import FileLanes, Readers, T, Tx, Writer, connect, migrate
from postfach.store.sqlite_rows import (
    FOLDER_COLUMNS,
    MESSAGE_COLUMNS,
    chunked,
    find_folder,
    folder_from_row,
    insert_folder,
    keywords_text,
    marks,
    message_from_row,
)

log = logging.getLogger(__name__)

# Spare files reused or written this recently: an append may be about to name them.
DEFAULT_BLOB_GRACE_SECONDS = 600
COLLECT_INTERVAL_SECONDS = 60
PARSED_CACHE_SIZE = 10_000  # parsed messages kept per process (a few KB each)
INDEX_SLICE = 4  # messages the writer indexes at a time when idle


class SqliteStore(AccountTables, FolderTables, IndexTables, QueueTables, SecurityTables, TransferTables):
    def __init__(
        self,
        db_path: Path,
        blob_dir: Path,
        *,
        events: LocalEventBus | None = None,
        blob_grace_seconds: float = DEFAULT_BLOB_GRACE_SECONDS,
    ) -> None:
        """Use `open`, which also prepares the schema."""
        self.events = events or LocalEventBus()
        self.blobs = FileBlobStore(blob_dir)
        self._blob_grace = blob_grace_seconds
        self._gc_wanted = False
        self._collected_at = -float("inf")
        self._writer = Writer(db_path, self._publish, self.blobs.sync, self._after_batch, self._index_pending)
        self._readers = Readers(db_path)
        self._files = FileLanes()
        # Folder indexes for SELECT, per process, kept current by events (sqlite_index.py).
        self._index_cache = IndexCache()
        # Parsed messages by sha256, least recently used first (parsed_messages).
        self._parsed: ContentCache[ParsedMessage] = ContentCache(PARSED_CACHE_SIZE)
        self._index_watches: dict[int, Subscription] = {}

    @classmethod
    async def open(cls, db_path: Path, blob_dir: Path, **options) -> SqliteStore:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(cls._prepare, db_path)
        return cls(db_path, blob_dir, **options)

    @staticmethod
    def _prepare(db_path: Path) -> None:
        # A lock file, so that a CLI command and the server starting at once migrate only once.
        with open(db_path.with_name(db_path.name + ".migrate-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            conn = connect(db_path)
            try:
                migrate(conn)
            finally:
                conn.close()

    async def close(self) -> None:
        # Staging first: what it stages goes on to the writer, which then finishes everything.
        await asyncio.to_thread(self._files.close)
        await asyncio.to_thread(self._writer.stop)
        self._close_index_watches()
        self._readers.close()
        self.blobs.close()

    async def check(self) -> None:
        """Raise StoreError unless the store can read and write."""
        if not self._writer.alive:
            raise StoreError("the store's writer has stopped")
        await self._readers.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # ------------------------------------------------------------------ plumbing

    async def _write(self, job):
        return await self._writer.submit(job)

    def _publish(self, changes: list[Change]) -> None:
        for change in changes:
            self.events.publish(change)

    # ------------------------------------------------------------------ folders

    async def list_folders(self, account_id: int) -> list[Folder]:
        rows = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {FOLDER_COLUMNS} FROM folders WHERE account_id = ? ORDER BY name", (account_id,)
            ).fetchall()
        )
        return [folder_from_row(row) for row in rows]

    async def get_folder(self, account_id: int, name: str) -> Folder | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {FOLDER_COLUMNS} FROM folders WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
        )
        return folder_from_row(row) if row else None

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        row = await self._readers.run(
            lambda conn: conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)).fetchone()
        )
        return folder_from_row(row) if row else None

    async def create_folder(self, account_id: int, name: str, special_use: SpecialUse | None = None) -> Folder:
        return await self._write(lambda tx: insert_folder(tx, account_id, name, special_use))

    async def rename_folder(self, folder_id: int, new_name: str) -> Folder:
        def job(tx: Tx) -> Folder:
            folder = find_folder(tx.conn, folder_id)
            if folder.name == INBOX:
                raise Conflict("INBOX cannot be renamed")
            if tx.execute(
                "SELECT 1 FROM folders WHERE account_id = ? AND name = ?", (folder.account_id, new_name)
            ).fetchone():
                raise AlreadyExists(f"a folder {new_name} exists already")
            # The folder's children move with it: their names start with "old/".
            children = tx.execute(
                "SELECT id, name FROM folders WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (folder.account_id, len(folder.name) + 1, folder.name + "/"),
            ).fetchall()
            for moved_id, old_name in [(folder.id, folder.name), *children]:
                moved_name = new_name + old_name[len(folder.name) :]
                tx.execute("UPDATE folders SET name = ? WHERE id = ?", (moved_name, moved_id))
                tx.changes.append(FolderRenamed(folder.account_id, moved_id, old_name, moved_name))
            return find_folder(tx.conn, folder_id)

        return await self._write(job)

    async def delete_folder(self, folder_id: int) -> None:
        def job(tx: Tx) -> None:
            folder = find_folder(tx.conn, folder_id)
            if folder.name == INBOX:
                raise Conflict("INBOX cannot be deleted")
            self._release_folder_messages(tx, folder_id)
            tx.execute("DELETE FROM folders WHERE id = ?", (folder_id,))
            tx.changes.append(FolderDeleted(folder.account_id, folder_id, folder.name))

        await self._write(job)

    async def set_subscribed(self, folder_id: int, subscribed: bool) -> None:
        def job(tx: Tx) -> None:
            if tx.execute("UPDATE folders SET subscribed = ? WHERE id = ?", (int(subscribed), folder_id)).rowcount == 0:
                raise NotFound("the folder does not exist")

        await self._write(job)

    async def folder_status(self, folder_id: int) -> FolderStatus:
        def query(conn: sqlite3.Connection) -> FolderStatus:
            folder = find_folder(conn, folder_id)
            messages, unseen, size = conn.execute(
                "SELECT count(*), coalesce(sum((flags & ?) = 0), 0), coalesce(sum(size), 0)"
                " FROM messages WHERE folder_id = ?",
                (int(SystemFlag.SEEN), folder_id),
            ).fetchone()
            return FolderStatus(messages, unseen, size, folder.uidnext, folder.uidvalidity, folder.highestmodseq)

        return await self._readers.run(query)

    # ------------------------------------------------------------------ messages

    async def store_blob(self, data: bytes | BinaryIO) -> StagedBlob:
        return await self._files.run(lambda: self._stage(data), _size_of(data))

    def _stage(self, data: bytes | BinaryIO) -> StagedBlob:
        """Write the message file and parse it once (blocking: an I/O thread runs it)."""
        ref = self.blobs.write(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return StagedBlob(ref, parse_message(data).to_json())
        with self.blobs.mapped(ref.sha256) as content:
            return StagedBlob(ref, parse_message(content).to_json())

    async def append(
        self,
        folder_id: int,
        message: bytes | StagedBlob | BlobRef,
        flags: Flags = Flags(),
        internal_date: datetime | None = None,
        *,
        enforce_quota: bool = True,
    ) -> MessageMeta:
        message_meta, _ = await self._append(folder_id, message, flags, internal_date, enforce_quota, None)
        return message_meta

    async def append_claiming_recent(
        self, folder_id: int, message: bytes | StagedBlob, flags: Flags = Flags(), internal_date: datetime | None = None
    ) -> tuple[MessageMeta, list[int]]:
        message_meta, claimed = await self._append(
            folder_id, message, flags, internal_date, True, claim_recent_job(folder_id)
        )
        assert claimed is not None
        return message_meta, claimed

    async def _append(
        self,
        folder_id: int,
        message: bytes | StagedBlob | BlobRef,
        flags: Flags,
        internal_date: datetime | None,
        enforce_quota: bool,
        then: Callable[[Tx], T] | None,
    ) -> tuple[MessageMeta, T | None]:
        """One append; `then` runs in its transaction once it succeeded."""
        if not isinstance(message, (bytes, bytearray, memoryview)):
            append = self._append_job(folder_id, message, flags, internal_date, enforce_quota)
            return await self._write(lambda tx: (append(tx), then(tx) if then is not None else None))
        _, (outcome,), done = await self._stage_then_append(message, [folder_id], flags, internal_date,
                                                            enforce_quota, then)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome, done

    async def file_message(self, data: bytes | BinaryIO,
                           folder_ids: Sequence[int]) -> tuple[StagedBlob, list[MessageMeta | StoreError]]:
        """Store the bytes once and append them to each folder (delivery: each recipient's INBOX;
        none when it only goes to the outbound queue). Each append stands alone: one that fails
        (QuotaExceeded, NotFound) is returned in its place and the others are filed; failing to
        store the bytes raises."""
        staged, outcomes, _ = await self._stage_then_append(data, folder_ids, Flags(), None, True)
        return staged, outcomes

    async def _stage_then_append(
        self,
        data: bytes | BinaryIO,
        folder_ids: Sequence[int],
        flags: Flags,
        internal_date: datetime | None,
        enforce_quota: bool,
        then: Callable[[Tx], T] | None = None,
    ) -> tuple[StagedBlob, list[MessageMeta | StoreError], T | None]:
        """The message's file written, then filed in each folder; `then` runs in the same
        transaction once every append succeeded."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def prepare() -> Callable[[Tx], tuple[StagedBlob, list[MessageMeta | StoreError], T | None]]:
            staged = self._stage(data)
            jobs = [
                self._append_job(folder_id, staged, flags, internal_date, enforce_quota) for folder_id in folder_ids
            ]

            def run(tx: Tx) -> tuple[StagedBlob, list[MessageMeta | StoreError], T | None]:
                outcomes = [_on_its_own(tx, job) for job in jobs]
                filed = not any(isinstance(outcome, StoreError) for outcome in outcomes)
                return staged, outcomes, then(tx) if then is not None and filed else None

            return run

        size = _size_of(data)
        if size is not None and size <= FileLanes.SMALL:
            # The writer writes a small file itself: one thread hop for the whole delivery.
            self._writer.enqueue_prepared(prepare, future, loop)
        else:
            # A large one is written in a file lane (the writer must not wait for 50 MB), which
            # hands the appends straight to the writer: the event loop wakes once, at the end.
            def stage_then_append() -> None:
                try:
                    run = prepare()
                except Exception as error:
                    loop.call_soon_threadsafe(_fail, future, error)
                else:
                    self._writer.enqueue(run, future, loop)

            self._files.start(stage_then_append, size)
        return await future

    def _append_job(
        self,
        folder_id: int,
        blob: StagedBlob | BlobRef,
        flags: Flags,
        internal_date: datetime | None,
        enforce_quota: bool,
    ) -> Callable[[Tx], MessageMeta]:
        ref = blob.ref if isinstance(blob, StagedBlob) else blob
        when = internal_date or datetime.now(timezone.utc).astimezone()
        if when.tzinfo is None:
            when = when.astimezone()
        offset = when.utcoffset() or timedelta(0)
        zone_minutes = int(offset.total_seconds() // 60)
        stamp = int(when.timestamp())

        def job(tx: Tx) -> MessageMeta:
            charged = tx.execute(
                "UPDATE accounts SET used_bytes = used_bytes + :size"
                " WHERE id = (SELECT account_id FROM folders WHERE id = :folder)"
                " AND (NOT :enforce OR used_bytes + :size <= quota_bytes) RETURNING id",
                {"size": ref.size, "folder": folder_id, "enforce": enforce_quota},
            ).fetchone()
            if charged is None:
                raise _append_refusal(tx, folder_id, ref.size)
            account_id = charged[0]
            self._reference_blob(tx, blob)
            uid, modseq = tx.execute(
                "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
                " WHERE id = ? RETURNING uidnext - 1, highestmodseq",
                (folder_id,),
            ).fetchone()
            tx.execute(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder_id, uid, ref.sha256, ref.size, stamp, zone_minutes, int(flags.system),
                 keywords_text(flags.keywords), modseq),
            )
            keywords = ((uid, flags.keywords),) if flags.keywords else ()
            tx.changes.append(MessagesAdded(account_id, folder_id, (uid,), modseq, (int(flags.system),), keywords))
            return MessageMeta(folder_id, uid, ref, flags, datetime.fromtimestamp(stamp, when.tzinfo), modseq)

        return job

    def _reference_blob(self, tx: Tx, blob: StagedBlob | BlobRef) -> None:
        """Count one more reference to the message file; the file must be there."""
        if isinstance(blob, BlobRef):
            # A message already stored (COPY): its row holds a reference while it exists.
            if not tx.execute(
                "UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ? AND refcount > 0", (blob.sha256,)
            ).rowcount:
                raise NotFound("the message no longer exists")
            return
        # Garbage collection spares files used within the grace period, and store_blob just
        # used this one. Only a blob staged long ago needs a look (under the write lock, which
        # collection holds too).
        if time.monotonic() - blob.staged_at >= self._blob_grace / 2 and not self.blobs.exists(blob.ref.sha256):
            raise StoreError(f"the message file {blob.ref.sha256} is missing; store it again")
        tx.execute(
            "INSERT INTO blobs (sha256, size, refcount, parsed) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (sha256) DO UPDATE SET refcount = refcount + 1",
            (blob.ref.sha256, blob.ref.size, blob.parsed),
        )
        # Indexed for full-text search later, when the writer is idle (_index_pending).
        tx.execute("INSERT INTO search_pending (sha256) VALUES (?) ON CONFLICT DO NOTHING", (blob.ref.sha256,))

    def _release_folder_messages(self, tx: Tx, folder_id: int) -> None:
        """Drop a folder's messages: blob references and quota usage go with them."""
        tx.execute(
            "UPDATE blobs SET refcount = refcount - m.n FROM"
            " (SELECT blob_sha256, count(*) AS n FROM messages WHERE folder_id = ? GROUP BY blob_sha256) AS m"
            " WHERE blobs.sha256 = m.blob_sha256",
            (folder_id,),
        )
        tx.execute(
            "UPDATE accounts SET used_bytes = used_bytes -"
            " (SELECT coalesce(sum(size), 0) FROM messages WHERE folder_id = ?)"
            " WHERE id = (SELECT account_id FROM folders WHERE id = ?)",
            (folder_id, folder_id),
        )
        if tx.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,)).rowcount:
            self._gc_wanted = True

    async def get_messages(self, folder_id: int, uids: Iterable[int]) -> list[MessageMeta]:
        wanted = sorted(set(uids))

        def query(conn: sqlite3.Connection) -> list[MessageMeta]:
            found: list[MessageMeta] = []
            for chunk in chunked(wanted):
                rows = conn.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid IN ({marks(chunk)})"
                    " ORDER BY uid",
                    (folder_id, *chunk),
                ).fetchall()
                found.extend(message_from_row(row) for row in rows)
            return found

        return await self._readers.run(query)

    async def set_flags(self, folder_id: int, uids: Iterable[int], flags: Flags, mode: FlagMode) -> list[MessageMeta]:
        return await self._write(self._set_flags_job(folder_id, sorted(set(uids)), flags, mode))

    def _set_flags_job(
        self,
        folder_id: int,
        wanted: list[int],
        flags: Flags,
        mode: FlagMode,
        unchanged_since: int | None = None,
        failed: list[int] | None = None,
    ) -> Callable[[Tx], list[MessageMeta]]:
        def new_flags(old: Flags) -> Flags:
            if mode is FlagMode.ADD:
                return Flags(old.system | flags.system, old.keywords | flags.keywords)
            if mode is FlagMode.REMOVE:
                return Flags(old.system & ~flags.system, old.keywords - flags.keywords)
            return flags

        def job(tx: Tx) -> list[MessageMeta]:
            folder = find_folder(tx.conn, folder_id)
            modseq = folder.highestmodseq + 1
            changed: list[MessageMeta] = []
            for chunk in chunked(wanted):
                rows = tx.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid IN ({marks(chunk)})"
                    " ORDER BY uid",
                    (folder_id, *chunk),
                ).fetchall()
                for row in rows:
                    message = message_from_row(row)
                    if unchanged_since is not None and message.modseq > unchanged_since:
                        assert failed is not None
                        failed.append(message.uid)
                        continue
                    updated = new_flags(message.flags)
                    if updated == message.flags:
                        continue
                    tx.execute(
                        "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE folder_id = ? AND uid = ?",
                        (int(updated.system), keywords_text(updated.keywords), modseq, folder_id, message.uid),
                    )
                    changed.append(
                        MessageMeta(folder_id, message.uid, message.blob, updated, message.internal_date, modseq)
                    )
            if changed:
                # RFC 7162 §3.1: messages changed by one operation may share one mod-sequence.
                tx.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, folder_id))
                uids_changed = tuple(message.uid for message in changed)
                tx.changes.append(FlagsChanged(
                    folder.account_id, folder_id, uids_changed, modseq,
                    tuple(int(message.flags.system) for message in changed),
                    tuple((message.uid, message.flags.keywords) for message in changed if message.flags.keywords),
                ))
            return changed

        return job

    async def expunge(self, folder_id: int, uids: Iterable[int]) -> list[int]:
        wanted = sorted(set(uids))
        return await self._write(lambda tx: self._expunge_rows(tx, folder_id, wanted))

    def _expunge_rows(self, tx: Tx, folder_id: int, wanted: list[int]) -> list[int]:
        folder = find_folder(tx.conn, folder_id)
        modseq = folder.highestmodseq + 1
        gone: list[int] = []
        freed = 0
        for chunk in chunked(wanted):
            rows = tx.execute(
                f"DELETE FROM messages WHERE folder_id = ? AND uid IN ({marks(chunk)})"
                " RETURNING uid, blob_sha256, size",
                (folder_id, *chunk),
            ).fetchall()
            for uid, sha256, size in rows:
                gone.append(uid)
                freed += size
                tx.execute("UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ?", (sha256,))
        if not gone:
            return gone
        gone.sort()
        tx.conn.executemany(
            "INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)",
            [(folder_id, uid, modseq) for uid in gone],
        )
        tx.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, folder_id))
        tx.execute("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", (freed, folder.account_id))
        tx.changes.append(MessagesExpunged(folder.account_id, folder_id, tuple(gone), modseq))
        self._gc_wanted = True
        return gone

    async def expunge_deleted(self, folder_id: int, uids: Iterable[int] | None = None) -> list[int]:
        def job(tx: Tx) -> list[int]:
            query = "SELECT uid FROM messages WHERE folder_id = ? AND flags & ? ORDER BY uid"
            deleted = [row[0] for row in tx.execute(query, (folder_id, int(SystemFlag.DELETED)))]
            if uids is not None:
                deleted = sorted(set(deleted) & wanted)
            return self._expunge_rows(tx, folder_id, deleted)

        wanted = None if uids is None else set(uids)
        return await self._write(job)

    async def set_flags_if_unchanged(
        self, folder_id: int, uids: Iterable[int], flags: Flags, mode: FlagMode, unchanged_since: int
    ) -> tuple[list[MessageMeta], list[int]]:
        wanted = sorted(set(uids))
        failed: list[int] = []
        inner = self._set_flags_job(folder_id, wanted, flags, mode, unchanged_since, failed)
        changed = await self._write(inner)
        return changed, failed

    async def message_files(self, folder_id: int) -> tuple[list[int], list[int], list[str]]:
        """Every message's uid, size and sha256, in uid order (POP3's maildrop)."""
        uids, sizes, shas = await self._message_columns(folder_id, "uid, size, blob_sha256")
        return uids, sizes, shas

    async def message_sizes(self, folder_id: int) -> tuple[list[int], list[int]]:
        """Every message's uid and size, in uid order (STATUS SIZE)."""
        uids, sizes = await self._message_columns(folder_id, "uid, size")
        return uids, sizes

    async def _message_columns(self, folder_id: int, columns: str) -> list[list]:
        """`columns` of every message of the folder in uid order, a list per column."""

        def query(conn: sqlite3.Connection) -> list[list]:
            rows = conn.execute(
                f"SELECT {columns} FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)
            ).fetchall()
            return [list(column) for column in zip(*rows)] if rows else [[] for _ in columns.split(",")]

        return await self._readers.run(query)

    async def read_blob_range(self, sha256: str, start: int, end: int) -> bytes:
        """Bytes start..end of a message file (a chunk of a large message, a partial FETCH).

        From the page cache on the event loop when all of it is there: a trip to a reader
        thread and back costs more than the read itself (POP3 RETR of a small message: half
        its time)."""
        cached = self.blobs.read_range_if_cached(sha256, start, end)
        if cached is not None:
            return cached
        return (await self.read_blob_ranges([(sha256, start, end)]))[0]

    async def read_blob_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Several (sha256, start, end) ranges in one trip to a reader thread (SEARCH on headers)."""

        return await self._readers.run_without_database(
            lambda: [self.blobs.read_range(sha256, start, end) for sha256, start, end in ranges]
        )

    async def read_blob(self, sha256: str) -> bytes:
        return await self._readers.run_without_database(lambda: self.blobs.read(sha256))

    async def parsed_messages(self, sha256s: Iterable[str]) -> dict[str, ParsedMessage]:
        """The parses of many messages, from this process's cache or else one query; gone ones
        are missing from the answer. A parse belongs to the bytes (the sha256), so a cached
        one never goes stale."""
        cache = self._parsed
        found: dict[str, ParsedMessage] = {}
        missing: list[str] = []
        for sha256 in sha256s:
            parsed = cache.get(sha256)
            if parsed is None:
                missing.append(sha256)
            else:
                found[sha256] = parsed
        if missing:
            for sha256, text in (await self.get_parsed_many(missing)).items():
                found[sha256] = ParsedMessage.from_json(text)
                cache.put(sha256, found[sha256])
        return found

    async def get_parsed(self, sha256: str) -> str:
        found = await self.get_parsed_many([sha256])
        if sha256 not in found:
            raise NotFound("the message no longer exists")
        return found[sha256]

    async def get_parsed_many(self, sha256s: Iterable[str]) -> dict[str, str]:
        """The cached parses of many messages in one query; gone ones are missing from the answer."""
        wanted = sorted(set(sha256s))

        def query(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in chunked(wanted):
                found.update(
                    conn.execute(f"SELECT sha256, parsed FROM blobs WHERE sha256 IN ({marks(chunk)})", chunk)
                )
            return found

        return await self._readers.run(query)

    # ------------------------------------------------------------------ full-text indexing

    def _index_pending(self, conn: sqlite3.Connection) -> bool:
        """In the writer thread, between writes: index a few new messages; True if more wait.

        A slice is a few messages (a 10 KB message costs the trigram index about 1.5 ms),
        so an append that arrives meanwhile waits little; under steady load the index
        lags and SEARCH reads the pending messages themselves (TransferTables.search_text).
        """
        rows = conn.execute(
            "SELECT p.sha256, b.parsed FROM search_pending p JOIN blobs b ON b.sha256 = p.sha256 LIMIT ?",
            (INDEX_SLICE,),
        ).fetchall()
        if not rows:
            return False
        texts = [(sha256, self._index_texts(sha256, parsed)) for sha256, parsed in rows]
        # Not synced at its COMMIT (WAL: the next synced commit syncs it too). Lost to a power
        # failure, the transaction is lost whole, and its messages are still pending: indexing
        # them again is all it costs. A sync per slice made indexing up to three times slower (with
        # other writes on the disk), and the time after a bulk delivery in which SEARCH reads the
        # pending messages one by one as long.
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._writer.turn:  # the texts are made: the other processes wait only for this
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sha256, text in texts:
                        conn.execute("DELETE FROM search_pending WHERE sha256 = ?", (sha256,))
                        doc = conn.execute(
                            "INSERT INTO search_docs (sha256) VALUES (?) ON CONFLICT (sha256) DO NOTHING RETURNING id",
                            (sha256,),
                        ).fetchone()
                        if doc is not None:
                            conn.execute("INSERT INTO search_index (rowid, head, body) VALUES (?, ?, ?)",
                                         (doc[0], *text))
                    conn.execute("COMMIT")
                except Exception:
                    conn.execute("ROLLBACK")
                    raise
        finally:
            conn.execute("PRAGMA synchronous = FULL")  # every other write: durable when acknowledged
        return len(rows) == INDEX_SLICE

    def _index_texts(self, sha256: str, parsed: str) -> tuple[str, str]:
        try:
            # Mapped, not read: the index takes a bounded part of each text part, and a large
            # message must not be copied into memory for that.
            with self.blobs.mapped(sha256) as data:
                return index_texts(data, ParsedMessage.from_json(parsed))
        except FileNotFoundError:
            return "", ""

    # ------------------------------------------------------------------ garbage collection

    def _after_batch(self, conn: sqlite3.Connection) -> None:
        """In the writer thread, after a commit that dropped references: remove unreferenced
        files, at most every COLLECT_INTERVAL_SECONDS (a tenth of the grace period when that is
        shorter). A file becomes removable only a grace period after its last use, and each
        pass looks at every unreferenced one: after every EXPUNGE, that was most of the work."""
        interval = min(COLLECT_INTERVAL_SECONDS, self._blob_grace / 10)
        if self._gc_wanted and time.monotonic() - self._collected_at >= interval:
            self._gc_wanted = False
            self._collected_at = time.monotonic()
            self._collect(conn)

    def _collect(self, conn: sqlite3.Connection) -> int:
        removed = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self.blobs.lock:
                for (sha256,) in conn.execute("SELECT sha256 FROM blobs WHERE refcount = 0").fetchall():
                    if self.blobs.remove_if_stale(sha256, self._blob_grace):
                        conn.execute("DELETE FROM blobs WHERE sha256 = ? AND refcount = 0", (sha256,))
                        removed += 1
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        return removed

    async def collect_garbage(self) -> int:
        """Remove unreferenced files past the grace period, and files no row names (crash leftovers)."""
        removed = await self._writer.submit_maintenance(self._collect)
        known = await self._readers.run(lambda conn: {row[0] for row in conn.execute("SELECT sha256 FROM blobs")})
        return removed + await self._files.run(lambda: self._remove_orphans(known))

    def _remove_orphans(self, known: set[str]) -> int:
        """Files without a row: written by an append that crashed before its commit."""
        removed = 0
        cutoff = time.time() - self._blob_grace
        for sha256, mtime in list(self.blobs.all_names()):
            if sha256 not in known and mtime < cutoff:
                with self.blobs.lock:
                    if self.blobs.remove_if_stale(sha256, self._blob_grace):
                        removed += 1
        for leftover in self.blobs.stale_temporaries(self._blob_grace):
            leftover.unlink(missing_ok=True)
        return removed


def _append_refusal(tx: Tx, folder_id: int, size: int) -> StoreError:
    """Why an append charged no account: the folder is gone, or the mailbox is full."""
    row = tx.execute(
        "SELECT a.address, a.used_bytes, a.quota_bytes FROM folders f JOIN accounts a ON a.id = f.account_id"
        " WHERE f.id = ?",
        (folder_id,),
    ).fetchone()
    if row is None:
        return NotFound("the folder does not exist")
    return QuotaExceeded(row[0], row[1], row[2], size)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _on_its_own(tx: Tx, job: Callable[[Tx], MessageMeta]) -> MessageMeta | StoreError:
    """One append of several in a job: refused (quota, folder gone) alone; any other error fails
    them all."""
    tx.execute("SAVEPOINT copy")
    changes = len(tx.changes)
    try:
        result = job(tx)
    except StoreError as error:
        tx.execute("ROLLBACK TO copy")
        tx.execute("RELEASE copy")
        del tx.changes[changes:]
        return error
    tx.execute("RELEASE copy")
    return result


def _size_of(data: bytes | BinaryIO) -> int | None:
    return len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
