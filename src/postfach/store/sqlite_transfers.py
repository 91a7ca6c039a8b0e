"""The embedded store's IMAP message transfers and full-text search: COPY, MOVE, SEARCH BODY/TEXT.

COPY and MOVE are one transaction each (all or nothing; MOVE never shows a
message in both folders or in neither). The full-text index (migration 003)
holds case-folded text per blob; a phrase query on the trigram index is an
exact, case-insensitive substring match (GLOB for needles under three characters).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from postfach.store.base import Conflict
from postfach.store.changes import MessagesAdded
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import MESSAGE_COLUMNS, chunked, find_folder, marks

# SEARCH TEXT reads the folder's texts rather than the index when the needle has more hits
# on the whole server than this many per message of the folder (see _indexed_hits).
SCAN_RATIO = 4


class TransferTables:
    """Part of SqliteStore (see there)."""

    _readers: Readers

    async def _write(self, job): ...

    def _expunge_rows(self, tx: Tx, folder_id: int, wanted: list[int]) -> list[int]: ...

    def _index_texts(self, sha256: str, parsed: str) -> tuple[str, str]: ...

    async def copy_messages(
        self, source_folder_id: int, uids: Iterable[int], target_folder_id: int, *, enforce_quota: bool = True
    ) -> list[tuple[int, int]]:
        wanted = sorted(set(uids))

        def job(tx: Tx) -> list[tuple[int, int]]:
            rows = self._message_rows(tx, source_folder_id, wanted)
            total = sum(row[3] for row in rows)
            charged = tx.execute(
                "UPDATE accounts SET used_bytes = used_bytes + :size"
                " WHERE id = (SELECT account_id FROM folders WHERE id = :folder)"
                " AND (NOT :enforce OR used_bytes + :size <= quota_bytes) RETURNING id",
                {"size": total, "folder": target_folder_id, "enforce": enforce_quota},
            ).fetchone()
            if charged is None:
                from postfach.store.sqlite import _append_refusal

                raise _append_refusal(tx, target_folder_id, total)
            for row in rows:
                tx.execute("UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ?", (row[2],))
            return self._insert_copies(tx, charged[0], target_folder_id, rows)

        return await self._write(job)

    async def move_messages(
        self, source_folder_id: int, uids: Iterable[int], target_folder_id: int
    ) -> list[tuple[int, int]]:
        wanted = sorted(set(uids))

        def job(tx: Tx) -> list[tuple[int, int]]:
            source = find_folder(tx.conn, source_folder_id)
            target = find_folder(tx.conn, target_folder_id)
            if source.account_id != target.account_id:
                raise Conflict("messages move only between folders of one mailbox")
            rows = self._message_rows(tx, source_folder_id, wanted)
            # The blob reference and the quota charge go from the old row to the new one.
            pairs = self._insert_copies(tx, target.account_id, target_folder_id, rows)
            for row in rows:
                tx.execute("UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ?", (row[2],))
            tx.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?",
                       (sum(row[3] for row in rows), target.account_id))
            self._expunge_rows(tx, source_folder_id, [row[1] for row in rows])
            return pairs

        return await self._write(job)

    @staticmethod
    def _message_rows(tx: Tx, folder_id: int, uids: list[int]) -> list[tuple]:
        find_folder(tx.conn, folder_id)
        rows: list[tuple] = []
        for chunk in chunked(uids):
            rows.extend(tx.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid IN ({marks(chunk)})"
                " ORDER BY uid",
                (folder_id, *chunk),
            ).fetchall())
        return rows

    @staticmethod
    def _insert_copies(tx: Tx, account_id: int, folder_id: int, rows: list[tuple]) -> list[tuple[int, int]]:
        """New rows in `folder_id` for message rows of another folder; the caller counts blobs and quota."""
        if not rows:
            return []
        first, modseq = tx.execute(
            "UPDATE folders SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1"
            " WHERE id = ? RETURNING uidnext - ?, highestmodseq",
            (len(rows), folder_id, len(rows)),
        ).fetchone()
        pairs = []
        for offset, row in enumerate(rows):
            uid = first + offset
            tx.execute(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder_id, uid, *row[2:8], modseq),
            )
            pairs.append((row[1], uid))
        new_uids = tuple(new for _, new in pairs)
        flags = tuple(row[6] for row in rows)
        keywords = tuple((uid, frozenset(row[7].split())) for uid, row in zip(new_uids, rows) if row[7])
        tx.changes.append(MessagesAdded(account_id, folder_id, new_uids, modseq, flags, keywords))
        return pairs

    async def search_pending_count(self) -> int:
        """Messages not yet in the full-text index (SEARCH reads them directly meanwhile)."""
        return await self._readers.run(lambda conn: conn.execute("SELECT count(*) FROM search_pending").fetchone()[0])

    async def search_text(self, folder_id: int, needle: str, *, body_only: bool) -> list[int]:
        folded = needle.casefold()

        def query(conn: sqlite3.Connection) -> list[int]:
            hits = _indexed_hits(conn, folder_id, folded, body_only)
            # Messages the writer has not indexed yet are read as they are (few, unless under load).
            # From the pending ones to the folder, not the other way: no lookup per message of a
            # large folder when nothing is pending.
            pending = conn.execute(
                "SELECT m.uid, b.sha256, b.parsed FROM search_pending p"
                " CROSS JOIN messages m ON m.blob_sha256 = p.sha256 CROSS JOIN blobs b ON b.sha256 = p.sha256"
                " WHERE m.folder_id = ?",
                (folder_id,),
            ).fetchall()
            for uid, sha256, parsed in pending:
                head, body = self._index_texts(sha256, parsed)
                if folded in body or (not body_only and folded in head):
                    hits.append(uid)
            return sorted(set(hits)) if pending else sorted(hits)

        return await self._readers.run(query)


def _indexed_hits(conn: sqlite3.Connection, folder_id: int, folded: str, body_only: bool) -> list[int]:
    """UIDs in the folder whose indexed (case-folded) text contains `folded`.

    The index holds every message of the server, so a MATCH costs what the needle's hits
    in all mailboxes cost: a common word in a folder of 200 read the hits of 10,000 messages
    of 50 accounts (8 ms). So the MATCH stops after SCAN_RATIO hits per message the folder
    can hold, and then the folder's own texts are read instead, which costs what the folder
    holds (1 ms for 200); a rare word, or a folder with most of the server's mail, stays an
    index lookup. CROSS JOIN fixes the join order: left to the planner, MATCH in an IN
    subquery ran once per message of the folder (over five minutes for a common word in
    100,000). The uids come back as one text, not a row each (10 ms less for 30,000 hits), and
    each hit is one lookup in messages_doc (migration 011).
    """
    # A phrase of the trigram tokenizer is exactly a substring of three characters or more;
    # shorter needles have no trigram and are always looked for in the folder's texts.
    if len(folded) >= 3:
        phrase = '"' + folded.replace('"', '""') + '"'
        # uidnext - 1: at least the folder's messages, without counting them.
        folder = conn.execute("SELECT uidnext - 1 FROM folders WHERE id = ?", (folder_id,)).fetchone()
        bound = SCAN_RATIO * (folder[0] if folder else 0)
        hits, found = conn.execute(
            "SELECT count(*), group_concat(m.uid) FROM"
            " (SELECT rowid AS id FROM search_index WHERE search_index MATCH ? LIMIT ?) hit"
            " LEFT JOIN messages m ON m.doc_id = hit.id AND m.folder_id = ?",
            ("body : " + phrase if body_only else phrase, bound + 1, folder_id),
        ).fetchone()
        if hits <= bound:
            return list(map(int, found.split(","))) if found else []
    where = "instr(s.body, :needle)" if body_only else "(instr(s.body, :needle) OR instr(s.head, :needle))"
    found = conn.execute(
        "SELECT group_concat(m.uid) FROM messages m CROSS JOIN search_index s ON s.rowid = m.doc_id"
        f" WHERE m.folder_id = :folder AND {where}",
        {"folder": folder_id, "needle": folded},
    ).fetchone()[0]
    return list(map(int, found.split(","))) if found else []
