"""The embedded store's per-folder IMAP state: \\Recent, the expunge log, renaming INBOX."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from postfach.model import INBOX, Folder
from postfach.store.base import NotFound
from postfach.store.changes import MessagesAdded, MessagesExpunged
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import find_folder, insert_folder


class FolderTables:
    """Part of SqliteStore (see there)."""

    _readers: Readers

    async def _write(self, job): ...

    async def claim_recent(self, folder_id: int) -> list[int]:
        return await self._write(claim_recent_job(folder_id))

    async def count_recent(self, folder_id: int) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT recent_uid FROM folders WHERE id = ?", (folder_id,)).fetchone()
            if row is None:
                raise NotFound("the folder does not exist")
            return conn.execute(
                "SELECT count(*) FROM messages WHERE folder_id = ? AND uid >= ?", (folder_id, row[0])
            ).fetchone()[0]

        return await self._readers.run(query)

    async def expunged_since(self, folder_id: int, modseq: int) -> list[int]:
        return await self._readers.run(
            lambda conn: [
                uid
                for (uid,) in conn.execute(
                    "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid", (folder_id, modseq)
                )
            ]
        )

    async def rename_inbox(self, account_id: int, new_name: str) -> Folder:
        def job(tx: Tx) -> Folder:
            row = tx.execute("SELECT id FROM folders WHERE account_id = ? AND name = ?", (account_id, INBOX)).fetchone()
            if row is None:
                raise NotFound("the account has no INBOX")
            inbox = find_folder(tx.conn, row[0])
            target = insert_folder(tx, account_id, new_name, None)
            rows = tx.execute(
                "SELECT uid, blob_sha256, size, internal_date, internal_tz, flags, keywords"
                " FROM messages WHERE folder_id = ? ORDER BY uid",
                (inbox.id,),
            ).fetchall()
            if not rows:
                return target
            # The messages change folder; their files and the quota they use stay as they are.
            modseq = target.highestmodseq + 1
            new_uids = tuple(range(1, len(rows) + 1))
            tx.conn.executemany(
                "INSERT INTO messages (folder_id, uid, blob_sha256, size, internal_date, internal_tz, flags,"
                " keywords, modseq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(target.id, uid, *old[1:], modseq) for uid, old in zip(new_uids, rows)],
            )
            uidnext = len(rows) + 1
            tx.execute(
                "UPDATE folders SET uidnext = ?, highestmodseq = ?, recent_uid = ? WHERE id = ?",
                (uidnext, modseq, uidnext, target.id),
            )
            old_uids = tuple(old[0] for old in rows)
            gone_modseq = inbox.highestmodseq + 1
            tx.execute("DELETE FROM messages WHERE folder_id = ?", (inbox.id,))
            tx.conn.executemany(
                "INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)",
                [(inbox.id, uid, gone_modseq) for uid in old_uids],
            )
            tx.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (gone_modseq, inbox.id))
            keywords = tuple((uid, frozenset(old[6].split())) for uid, old in zip(new_uids, rows) if old[6])
            flags = tuple(old[5] for old in rows)
            tx.changes.append(MessagesAdded(account_id, target.id, new_uids, modseq, flags, keywords))
            tx.changes.append(MessagesExpunged(account_id, inbox.id, old_uids, gone_modseq))
            return find_folder(tx.conn, target.id)

        return await self._write(job)


def claim_recent_job(folder_id: int) -> Callable[[Tx], list[int]]:
    """The uids of the folder no session has claimed as \\Recent yet, claimed (a write job)."""

    def job(tx: Tx) -> list[int]:
        row = tx.execute("SELECT recent_uid, uidnext FROM folders WHERE id = ?", (folder_id,)).fetchone()
        if row is None:
            raise NotFound("the folder does not exist")
        recent_uid, uidnext = row
        if recent_uid >= uidnext:
            return []
        uids = [
            uid
            for (uid,) in tx.execute(
                "SELECT uid FROM messages WHERE folder_id = ? AND uid >= ? ORDER BY uid", (folder_id, recent_uid)
            )
        ]
        tx.execute("UPDATE folders SET recent_uid = ? WHERE id = ?", (uidnext, folder_id))
        return uids

    return job
