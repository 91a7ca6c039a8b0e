"""The embedded store's outbound tables: the queue, DKIM keys, quota warning state.

A queued message holds one reference to its blob, as a message in a folder
does, taken in the transaction that inserts the queue entry and dropped in the
one that finishes its last recipient, so the file is there for every attempt.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence

from postfach.model import BlobRef, DkimKey, QueuedMessage, QueuedRecipient
from postfach.store.base import NotFound, StagedBlob
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import find_domain_id, timestamp

QUEUE_STATES = frozenset({"pending", "delivered", "failed"})
_QUEUE_COLUMNS = "q.id, q.sender, q.blob_sha256, b.size, q.created_at, q.next_attempt, q.attempts, q.last_error"


def _queued(conn: sqlite3.Connection, row: tuple) -> QueuedMessage:
    recipients = conn.execute(
        "SELECT address, state, last_error FROM queue_recipients WHERE message_id = ? ORDER BY address", (row[0],)
    ).fetchall()
    return QueuedMessage(
        row[0], row[1], BlobRef(row[2], row[3]), timestamp(row[4]), timestamp(row[5]), row[6], row[7],
        tuple(QueuedRecipient(*recipient) for recipient in recipients),
    )


class QueueTables:
    """Part of SqliteStore (see there)."""

    _readers: Readers
    _gc_wanted: bool

    async def _write(self, job): ...

    def _reference_blob(self, tx: Tx, blob: StagedBlob | BlobRef) -> None: ...

    # ------------------------------------------------------------------ the queue

    async def enqueue(
        self, sender: str, recipients: Sequence[str], message: StagedBlob, next_attempt: float | None = None
    ) -> QueuedMessage:
        wanted = list(dict.fromkeys(recipients))
        if not wanted:
            raise ValueError("a queued message needs at least one recipient")

        def job(tx: Tx) -> QueuedMessage:
            now = int(time.time())
            self._reference_blob(tx, message)
            queue_id = tx.execute(
                "INSERT INTO queue_messages (sender, blob_sha256, created_at, next_attempt) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (sender, message.ref.sha256, now, int(next_attempt if next_attempt is not None else now)),
            ).fetchone()[0]
            tx.conn.executemany(
                "INSERT INTO queue_recipients (message_id, address) VALUES (?, ?)", [(queue_id, a) for a in wanted]
            )
            return self._queued_by_id(tx.conn, queue_id)

        return await self._write(job)

    @staticmethod
    def _queued_by_id(conn: sqlite3.Connection, queue_id: int) -> QueuedMessage:
        row = conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM queue_messages q JOIN blobs b ON b.sha256 = q.blob_sha256 WHERE q.id = ?",
            (queue_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"queue entry {queue_id} does not exist")
        return _queued(conn, row)

    async def get_queued(self, queue_id: int) -> QueuedMessage | None:
        def query(conn: sqlite3.Connection) -> QueuedMessage | None:
            try:
                return self._queued_by_id(conn, queue_id)
            except NotFound:
                return None

        return await self._readers.run(query)

    async def list_queue(self, due_before: float | None = None, limit: int = 1000) -> list[QueuedMessage]:
        """Queued messages, soonest first; only those due at `due_before` when given."""

        def query(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(
                f"SELECT {_QUEUE_COLUMNS} FROM queue_messages q JOIN blobs b ON b.sha256 = q.blob_sha256"
                " WHERE ? IS NULL OR q.next_attempt <= ? ORDER BY q.next_attempt, q.id LIMIT ?",
                (due_before, due_before, limit),
            ).fetchall()
            return [_queued(conn, row) for row in rows]

        return await self._readers.run(query)

    async def next_queue_attempt(self) -> float | None:
        """When the soonest queued message is due (Unix seconds), None when the queue is empty."""
        row = await self._readers.run(lambda conn: conn.execute("SELECT min(next_attempt) FROM queue_messages").fetchone())
        return None if row[0] is None else float(row[0])

    async def record_attempt(
        self,
        queue_id: int,
        outcomes: Mapping[str, tuple[str, str | None]],
        next_attempt: float,
        error: str | None = None,
    ) -> QueuedMessage | None:
        """Record one attempt: each named recipient's new state and error; the entry is due again at
        `next_attempt`. When no recipient is pending any more the entry goes, with its blob
        reference, and None is returned."""
        for state, _ in outcomes.values():
            if state not in QUEUE_STATES:
                raise ValueError(f"unknown queue state {state!r}")

        def job(tx: Tx) -> QueuedMessage | None:
            row = tx.execute("SELECT blob_sha256 FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"queue entry {queue_id} does not exist")
            tx.conn.executemany(
                "UPDATE queue_recipients SET state = ?, last_error = ? WHERE message_id = ? AND address = ?",
                [(state, text, queue_id, address) for address, (state, text) in outcomes.items()],
            )
            pending = tx.execute(
                "SELECT count(*) FROM queue_recipients WHERE message_id = ? AND state = 'pending'", (queue_id,)
            ).fetchone()[0]
            if not pending:
                tx.execute("DELETE FROM queue_messages WHERE id = ?", (queue_id,))
                tx.execute("UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ?", (row[0],))
                self._gc_wanted = True
                return None
            tx.execute(
                "UPDATE queue_messages SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?",
                (int(next_attempt), error, queue_id),
            )
            return self._queued_by_id(tx.conn, queue_id)

        return await self._write(job)

    # ------------------------------------------------------------------ DKIM keys

    async def set_dkim_key(self, domain: str, selector: str, private_key: str) -> DkimKey:
        def job(tx: Tx) -> DkimKey:
            domain_id = find_domain_id(tx.conn, domain)
            tx.execute(
                "INSERT INTO dkim_keys (domain_id, selector, private_key, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (domain_id) DO UPDATE SET selector = excluded.selector,"
                " private_key = excluded.private_key, created_at = excluded.created_at",
                (domain_id, selector, private_key, int(time.time())),
            )
            return DkimKey(domain, selector, private_key)

        return await self._write(job)

    async def get_dkim_key(self, domain: str) -> DkimKey | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT k.selector, k.private_key FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
                " WHERE d.name = ?",
                (domain,),
            ).fetchone()
        )
        return DkimKey(domain, row[0], row[1]) if row else None

    # ------------------------------------------------------------------ quota warnings

    async def get_quota_warning(self, account_id: int) -> int:
        """The highest quota warning (percent) sent since usage was last below it; 0 for none."""
        row = await self._readers.run(
            lambda conn: conn.execute("SELECT level FROM quota_warnings WHERE account_id = ?", (account_id,)).fetchone()
        )
        return row[0] if row else 0

    async def set_quota_warning(self, account_id: int, level: int, *, only_if: int | None = None) -> bool:
        """Set the warning level; with `only_if`, only when it is still that (so one warning is
        sent once when two deliveries cross at the same time). Returns whether it changed."""

        def job(tx: Tx) -> bool:
            current = tx.execute("SELECT level FROM quota_warnings WHERE account_id = ?", (account_id,)).fetchone()
            if only_if is not None and (current[0] if current else 0) != only_if:
                return False
            tx.execute(
                "INSERT INTO quota_warnings (account_id, level) VALUES (?, ?)"
                " ON CONFLICT (account_id) DO UPDATE SET level = excluded.level",
                (account_id, level),
            )
            return True

        return await self._write(job)
