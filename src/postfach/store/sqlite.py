"""The embedded store: SQLite for metadata, content-addressed files for message bytes.

Writes go through the writer thread (group commit, see sqlite_engine), reads
through the reader pool; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from postfach.address import display_address, display_domain, domain_of
from postfach.mime import parse_message
from postfach.model import (
    DEFAULT_FOLDERS,
    INBOX,
    Account,
    Alias,
    BlobRef,
    Domain,
    Flags,
    Folder,
    FolderIndex,
    FolderStatus,
    Forwarding,
    MessageMeta,
    SpecialUse,
    SystemFlag,
    Vacation,
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
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    MessagesAdded,
    MessagesExpunged,
)
from postfach.store.events import LocalEventBus
from postfach.store.sqlite_engine import Readers, Tx, Writer, connect, migrate

log = logging.getLogger(__name__)

# Spare files reused or written this recently: an append may be about to name them.
DEFAULT_BLOB_GRACE_SECONDS = 600
_IN_CHUNK = 500  # SQLite's default limit on bound parameters is far above this


def _chunked(values: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


def _timestamp(value: int) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


def _keywords_text(keywords: frozenset[str]) -> str | None:
    return " ".join(sorted(keywords)) or None


def _flags(system: int, keywords: str | None) -> Flags:
    return Flags(SystemFlag(system), frozenset(keywords.split()) if keywords else frozenset())


_ACCOUNT_COLUMNS = "id, address, domain_id, password_hash, quota_bytes, used_bytes, enabled, created_at"
_FOLDER_COLUMNS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed"
_MESSAGE_COLUMNS = "folder_id, uid, blob_sha256, size, internal_date, internal_tz, flags, keywords, modseq"


def _account(row: tuple) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), _timestamp(row[7]))


def _folder(row: tuple) -> Folder:
    special_use = SpecialUse(row[6]) if row[6] else None
    return Folder(row[0], row[1], row[2], row[3], row[4], row[5], special_use, bool(row[7]))


def _message(row: tuple) -> MessageMeta:
    zone = timezone(timedelta(minutes=row[5]))
    return MessageMeta(
        folder_id=row[0],
        uid=row[1],
        blob=BlobRef(row[2], row[3]),
        flags=_flags(row[6], row[7]),
        internal_date=datetime.fromtimestamp(row[4], zone),
        modseq=row[8],
    )


class SqliteStore:
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
        self._loop = asyncio.get_running_loop()
        self._gc_wanted = False
        self._writer = Writer(db_path, self._publish_from_writer, self._after_batch)
        self._readers = Readers(db_path)

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
        await asyncio.to_thread(self._writer.stop)
        self._readers.close()

    async def check(self) -> None:
        """Raise StoreError unless the store can read and write."""
        if not self._writer.alive:
            raise StoreError("the store's writer has stopped")
        await self._readers.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # ------------------------------------------------------------------ plumbing

    async def _write(self, job):
        return await asyncio.wrap_future(self._writer.submit(job))

    def _publish_from_writer(self, changes: list[Change]) -> None:
        def publish() -> None:
            for change in changes:
                self.events.publish(change)

        try:
            self._loop.call_soon_threadsafe(publish)
        except RuntimeError:
            log.debug("event loop closed; %d changes not published", len(changes))

    # ------------------------------------------------------------------ domains

    async def add_domain(self, name: str) -> Domain:
        def job(tx: Tx) -> Domain:
            now = int(time.time())
            try:
                cursor = tx.execute("INSERT INTO domains (name, created_at) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"the domain {display_domain(name)} exists already") from None
            return Domain(cursor.lastrowid, name, _timestamp(now))

        return await self._write(job)

    async def get_domain(self, name: str) -> Domain | None:
        row = await self._readers.run(
            lambda conn: conn.execute("SELECT id, name, created_at FROM domains WHERE name = ?", (name,)).fetchone()
        )
        return Domain(row[0], row[1], _timestamp(row[2])) if row else None

    async def list_domains(self) -> list[Domain]:
        rows = await self._readers.run(
            lambda conn: conn.execute("SELECT id, name, created_at FROM domains ORDER BY name").fetchall()
        )
        return [Domain(row[0], row[1], _timestamp(row[2])) for row in rows]

    async def remove_domain(self, name: str) -> None:
        def job(tx: Tx) -> None:
            domain_id = _domain_id(tx.conn, name)
            mailboxes = tx.execute("SELECT count(*) FROM accounts WHERE domain_id = ?", (domain_id,)).fetchone()[0]
            if mailboxes:
                raise Conflict(
                    f"the domain {display_domain(name)} still has {mailboxes} mailbox(es); remove them first"
                )
            tx.execute("DELETE FROM aliases WHERE domain_id = ?", (domain_id,))
            tx.execute("DELETE FROM domains WHERE id = ?", (domain_id,))

        await self._write(job)

    # ------------------------------------------------------------------ accounts

    async def add_account(self, address: str, password_hash: str, quota_bytes: int) -> Account:
        def job(tx: Tx) -> Account:
            domain_id = _domain_id(tx.conn, domain_of(address))
            if tx.execute("SELECT 1 FROM aliases WHERE source = ?", (address,)).fetchone():
                raise Conflict(f"{display_address(address)} is an alias; remove the alias first")
            now = int(time.time())
            try:
                cursor = tx.execute(
                    "INSERT INTO accounts (domain_id, address, password_hash, quota_bytes, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (domain_id, address, password_hash, quota_bytes, now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"the mailbox {display_address(address)} exists already") from None
            account_id = cursor.lastrowid
            for name, special_use in DEFAULT_FOLDERS:
                _insert_folder(tx, account_id, name, special_use)
            return Account(account_id, address, domain_id, password_hash, quota_bytes, 0, True, _timestamp(now))

        return await self._write(job)

    async def get_account(self, address: str) -> Account | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)
            ).fetchone()
        )
        return _account(row) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
        )
        return _account(row) if row else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            if domain is None:
                return conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address").fetchall()
            domain_id = _domain_id(conn, domain)
            return conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE domain_id = ? ORDER BY address", (domain_id,)
            ).fetchall()

        return [_account(row) for row in await self._readers.run(query)]

    async def remove_account(self, address: str) -> None:
        def job(tx: Tx) -> None:
            account_id = _account_id(tx.conn, address)
            folders = tx.execute("SELECT id, name FROM folders WHERE account_id = ?", (account_id,)).fetchall()
            for folder_id, _ in folders:
                self._release_folder_messages(tx, folder_id)
            tx.execute("DELETE FROM aliases WHERE target = ?", (address,))
            tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            tx.changes.extend(FolderDeleted(account_id, folder_id, name) for folder_id, name in folders)

        await self._write(job)

    async def _update_account(self, address: str, sql: str, value: object) -> None:
        def job(tx: Tx) -> None:
            if tx.execute(sql, (value, address)).rowcount == 0:
                raise NotFound(f"there is no mailbox {display_address(address)}")

        await self._write(job)

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        await self._update_account(address, "UPDATE accounts SET password_hash = ? WHERE address = ?", password_hash)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        await self._update_account(address, "UPDATE accounts SET quota_bytes = ? WHERE address = ?", quota_bytes)

    async def set_enabled(self, address: str, enabled: bool) -> None:
        await self._update_account(address, "UPDATE accounts SET enabled = ? WHERE address = ?", int(enabled))

    # ------------------------------------------------------------------ aliases, forwarding, vacation

    async def add_alias(self, source: str, target: str) -> Alias:
        def job(tx: Tx) -> Alias:
            domain_id = _domain_id(tx.conn, domain_of(source))
            if tx.execute("SELECT 1 FROM accounts WHERE address = ?", (source,)).fetchone():
                raise Conflict(f"{display_address(source)} is a mailbox; an alias cannot have the same address")
            try:
                tx.execute(
                    "INSERT INTO aliases (domain_id, source, target) VALUES (?, ?, ?)", (domain_id, source, target)
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"the alias {display_address(source)} -> {display_address(target)} exists already"
                ) from None
            return Alias(source, target)

        return await self._write(job)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            if domain is None:
                return conn.execute("SELECT source, target FROM aliases ORDER BY source, target").fetchall()
            return conn.execute(
                "SELECT source, target FROM aliases WHERE domain_id = ? ORDER BY source, target",
                (_domain_id(conn, domain),),
            ).fetchall()

        return [Alias(source, target) for source, target in await self._readers.run(query)]

    async def remove_alias(self, source: str, target: str) -> None:
        def job(tx: Tx) -> None:
            if tx.execute("DELETE FROM aliases WHERE source = ? AND target = ?", (source, target)).rowcount == 0:
                raise NotFound(f"there is no alias {display_address(source)} -> {display_address(target)}")

        await self._write(job)

    async def set_forwarding(self, address: str, forwarding: Forwarding | None) -> None:
        def job(tx: Tx) -> None:
            account_id = _account_id(tx.conn, address)
            tx.execute("DELETE FROM forwardings WHERE account_id = ?", (account_id,))
            if forwarding is not None:
                tx.execute(
                    "INSERT INTO forwardings (account_id, targets, keep_copy) VALUES (?, ?, ?)",
                    (account_id, json.dumps(list(forwarding.targets)), int(forwarding.keep_copy)),
                )

        await self._write(job)

    async def get_forwarding(self, address: str) -> Forwarding | None:
        return (await self.list_forwardings(address)).get(address)

    async def list_forwardings(self, address: str | None = None) -> dict[str, Forwarding]:
        sql = "SELECT a.address, f.targets, f.keep_copy FROM forwardings f JOIN accounts a ON a.id = f.account_id"
        params: tuple = ()
        if address is not None:
            sql += " WHERE a.address = ?"
            params = (address,)
        rows = await self._readers.run(lambda conn: conn.execute(sql, params).fetchall())
        return {row[0]: Forwarding(tuple(json.loads(row[1])), bool(row[2])) for row in rows}

    async def set_vacation(self, address: str, vacation: Vacation | None) -> None:
        def job(tx: Tx) -> None:
            account_id = _account_id(tx.conn, address)
            tx.execute("DELETE FROM vacations WHERE account_id = ?", (account_id,))
            if vacation is not None:
                tx.execute(
                    "INSERT INTO vacations (account_id, start_date, end_date, subject, body) VALUES (?, ?, ?, ?, ?)",
                    (account_id, vacation.start.isoformat(), vacation.end.isoformat(), vacation.subject, vacation.body),
                )

        await self._write(job)

    async def get_vacation(self, address: str) -> Vacation | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT v.start_date, v.end_date, v.subject, v.body FROM vacations v"
                " JOIN accounts a ON a.id = v.account_id WHERE a.address = ?",
                (address,),
            ).fetchone()
        )
        if row is None:
            return None
        return Vacation(date.fromisoformat(row[0]), date.fromisoformat(row[1]), row[2], row[3])

    # ------------------------------------------------------------------ folders

    async def list_folders(self, account_id: int) -> list[Folder]:
        rows = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = ? ORDER BY name", (account_id,)
            ).fetchall()
        )
        return [_folder(row) for row in rows]

    async def get_folder(self, account_id: int, name: str) -> Folder | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
        )
        return _folder(row) if row else None

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        row = await self._readers.run(
            lambda conn: conn.execute(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)).fetchone()
        )
        return _folder(row) if row else None

    async def create_folder(self, account_id: int, name: str, special_use: SpecialUse | None = None) -> Folder:
        return await self._write(lambda tx: _insert_folder(tx, account_id, name, special_use))

    async def rename_folder(self, folder_id: int, new_name: str) -> Folder:
        def job(tx: Tx) -> Folder:
            folder = _folder_row(tx.conn, folder_id)
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
            return _folder_row(tx.conn, folder_id)

        return await self._write(job)

    async def delete_folder(self, folder_id: int) -> None:
        def job(tx: Tx) -> None:
            folder = _folder_row(tx.conn, folder_id)
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
            folder = _folder_row(conn, folder_id)
            messages, unseen, size = conn.execute(
                "SELECT count(*), coalesce(sum((flags & ?) = 0), 0), coalesce(sum(size), 0)"
                " FROM messages WHERE folder_id = ?",
                (int(SystemFlag.SEEN), folder_id),
            ).fetchone()
            return FolderStatus(messages, unseen, size, folder.uidnext, folder.uidvalidity, folder.highestmodseq)

        return await self._readers.run(query)

    # ------------------------------------------------------------------ messages

    async def store_blob(self, data: bytes | BinaryIO) -> StagedBlob:
        def write_and_parse() -> StagedBlob:
            ref = self.blobs.write(data)
            if isinstance(data, (bytes, bytearray, memoryview)):
                return StagedBlob(ref, parse_message(data).to_json())
            with self.blobs.mapped(ref.sha256) as content:
                return StagedBlob(ref, parse_message(content).to_json())

        return await self._readers.run_io(write_and_parse)

    async def append(
        self,
        folder_id: int,
        blob: StagedBlob | BlobRef,
        flags: Flags = Flags(),
        internal_date: datetime | None = None,
        *,
        enforce_quota: bool = True,
    ) -> MessageMeta:
        ref = blob.ref if isinstance(blob, StagedBlob) else blob
        parsed = blob.parsed if isinstance(blob, StagedBlob) else None
        when = internal_date or datetime.now(timezone.utc).astimezone()
        if when.tzinfo is None:
            when = when.astimezone()
        offset = when.utcoffset() or timedelta(0)
        zone_minutes = int(offset.total_seconds() // 60)
        stamp = int(when.timestamp())

        def job(tx: Tx) -> MessageMeta:
            row = tx.execute(
                "SELECT a.id, a.address, a.used_bytes, a.quota_bytes FROM folders f"
                " JOIN accounts a ON a.id = f.account_id WHERE f.id = ?",
                (folder_id,),
            ).fetchone()
            if row is None:
                raise NotFound("the folder does not exist")
            account_id, address, used, quota = row
            if enforce_quota and used + ref.size > quota:
                raise QuotaExceeded(address, used, quota, ref.size)
            self._reference_blob(tx, ref, parsed)
            uid, modseq = tx.execute(
                "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
                " WHERE id = ? RETURNING uidnext - 1, highestmodseq",
                (folder_id,),
            ).fetchone()
            tx.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder_id, uid, ref.sha256, ref.size, stamp, zone_minutes, int(flags.system),
                 _keywords_text(flags.keywords), modseq),
            )
            tx.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (ref.size, account_id))
            tx.changes.append(MessagesAdded(account_id, folder_id, (uid,), modseq))
            return MessageMeta(folder_id, uid, ref, flags, datetime.fromtimestamp(stamp, when.tzinfo), modseq)

        return await self._write(job)

    def _reference_blob(self, tx: Tx, ref: BlobRef, parsed: str | None) -> None:
        updated = tx.execute("UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ?", (ref.sha256,)).rowcount
        if updated:
            return
        if parsed is None:
            raise NotFound("the message no longer exists")
        # Under the write lock, and garbage collection runs under it too: the file is there.
        if not self.blobs.exists(ref.sha256):
            raise StoreError(f"the message file {ref.sha256} is missing")
        tx.execute(
            "INSERT INTO blobs (sha256, size, refcount, parsed) VALUES (?, ?, 1, ?)", (ref.sha256, ref.size, parsed)
        )

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

    async def load_index(self, folder_id: int) -> FolderIndex:
        def query(conn: sqlite3.Connection) -> FolderIndex:
            folder = _folder_row(conn, folder_id)
            index = FolderIndex(folder_id, folder.uidvalidity, folder.uidnext, folder.highestmodseq)
            rows = conn.execute(
                "SELECT uid, flags, modseq, keywords FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)
            ).fetchall()
            if rows:
                uids, system_flags, modseqs, keywords = zip(*rows)
                index.uids = list(uids)
                index.system_flags = list(system_flags)
                index.modseqs = list(modseqs)
                index.keywords = {
                    uid: frozenset(text.split()) for uid, text in zip(uids, keywords) if text is not None
                }
            return index

        return await self._readers.run(query)

    async def get_messages(self, folder_id: int, uids: Iterable[int]) -> list[MessageMeta]:
        wanted = sorted(set(uids))

        def query(conn: sqlite3.Connection) -> list[MessageMeta]:
            found: list[MessageMeta] = []
            for chunk in _chunked(wanted):
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid IN ({_marks(chunk)})"
                    " ORDER BY uid",
                    (folder_id, *chunk),
                ).fetchall()
                found.extend(_message(row) for row in rows)
            return found

        return await self._readers.run(query)

    async def set_flags(self, folder_id: int, uids: Iterable[int], flags: Flags, mode: FlagMode) -> list[MessageMeta]:
        wanted = sorted(set(uids))

        def new_flags(old: Flags) -> Flags:
            if mode is FlagMode.ADD:
                return Flags(old.system | flags.system, old.keywords | flags.keywords)
            if mode is FlagMode.REMOVE:
                return Flags(old.system & ~flags.system, old.keywords - flags.keywords)
            return flags

        def job(tx: Tx) -> list[MessageMeta]:
            folder = _folder_row(tx.conn, folder_id)
            modseq = folder.highestmodseq + 1
            changed: list[MessageMeta] = []
            for chunk in _chunked(wanted):
                rows = tx.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid IN ({_marks(chunk)})",
                    (folder_id, *chunk),
                ).fetchall()
                for row in rows:
                    message = _message(row)
                    updated = new_flags(message.flags)
                    if updated == message.flags:
                        continue
                    tx.execute(
                        "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE folder_id = ? AND uid = ?",
                        (int(updated.system), _keywords_text(updated.keywords), modseq, folder_id, message.uid),
                    )
                    changed.append(
                        MessageMeta(folder_id, message.uid, message.blob, updated, message.internal_date, modseq)
                    )
            if changed:
                # RFC 7162 §3.1: messages changed by one operation may share one mod-sequence.
                tx.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, folder_id))
                uids_changed = tuple(message.uid for message in changed)
                tx.changes.append(FlagsChanged(folder.account_id, folder_id, uids_changed, modseq))
            return changed

        return await self._write(job)

    async def expunge(self, folder_id: int, uids: Iterable[int]) -> list[int]:
        wanted = sorted(set(uids))

        def job(tx: Tx) -> list[int]:
            folder = _folder_row(tx.conn, folder_id)
            modseq = folder.highestmodseq + 1
            gone: list[int] = []
            freed = 0
            for chunk in _chunked(wanted):
                rows = tx.execute(
                    f"DELETE FROM messages WHERE folder_id = ? AND uid IN ({_marks(chunk)})"
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

        return await self._write(job)

    async def read_blob(self, sha256: str) -> bytes:
        return await self._readers.run_io(lambda: self.blobs.read(sha256))

    async def get_parsed(self, sha256: str) -> str:
        row = await self._readers.run(
            lambda conn: conn.execute("SELECT parsed FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        )
        if row is None:
            raise NotFound("the message no longer exists")
        return row[0]

    # ------------------------------------------------------------------ garbage collection

    def _after_batch(self, conn: sqlite3.Connection) -> None:
        """In the writer thread, after a commit that dropped references: remove unreferenced files."""
        if self._gc_wanted:
            self._gc_wanted = False
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
        removed = await asyncio.wrap_future(self._writer.submit_maintenance(self._collect))
        known = await self._readers.run(lambda conn: {row[0] for row in conn.execute("SELECT sha256 FROM blobs")})
        return removed + await self._readers.run_io(lambda: self._remove_orphans(known))

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


def _insert_folder(tx: Tx, account_id: int, name: str, special_use: SpecialUse | None) -> Folder:
    uidvalidity = tx.execute(
        "UPDATE accounts SET last_uidvalidity = max(last_uidvalidity + 1, unixepoch()) WHERE id = ?"
        " RETURNING last_uidvalidity",
        (account_id,),
    ).fetchone()
    if uidvalidity is None:
        raise NotFound("the account does not exist")
    try:
        cursor = tx.execute(
            "INSERT INTO folders (account_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
            (account_id, name, uidvalidity[0], special_use.value if special_use else None),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"a folder {name} exists already") from None
    tx.changes.append(FolderCreated(account_id, cursor.lastrowid, name))
    return Folder(cursor.lastrowid, account_id, name, uidvalidity[0], 1, 1, special_use, True)


def _domain_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"the domain {display_domain(name)} is not hosted here")
    return row[0]


def _account_id(conn: sqlite3.Connection, address: str) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        raise NotFound(f"there is no mailbox {display_address(address)}")
    return row[0]


def _folder_row(conn: sqlite3.Connection, folder_id: int) -> Folder:
    row = conn.execute(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)).fetchone()
    if row is None:
        raise NotFound("the folder does not exist")
    return _folder(row)
