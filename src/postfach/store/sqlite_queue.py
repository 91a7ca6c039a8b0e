"""The embedded store's outbound tables: the queue, DKIM keys, quota warning state.

A queued message holds one reference to its blob, as a message in a folder
does, taken in the transaction that inserts the queue entry and dropped in the
one that finishes its last recipient, so the file is there for every attempt.

Leases: a claim is one UPDATE in a write job, and every write job of every
process runs under SQLite's one write lock (BEGIN IMMEDIATE), so two processes
never claim the same entry. An entry is held while its `claimed_until` is in
the future; what the operator changes (retry, remove, bounce) must not be held.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from postfach.model import BlobRef, DkimKey, QueuedMessage, QueuedRecipient
from postfach.store.base import Conflict, LeaseLost, NotFound, StagedBlob
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import chunked, find_domain_id, marks, timestamp

QUEUE_STATES = frozenset({"pending", "delivered", "failed"})
_QUEUE_COLUMNS = (
    "q.id, q.sender, q.blob_sha256, b.size, q.created_at, q.next_attempt, q.attempts, q.last_error,"
    " q.claimed_by, q.claimed_until"
)
# Nobody holds the entry at :now: never claimed, released, or its holder's lease ran out.
_UNHELD = "(claimed_until IS NULL OR claimed_until <= :now)"


def _queued(conn: sqlite3.Connection, row: tuple) -> QueuedMessage:
    recipients = conn.execute(
        "SELECT address, state, last_error FROM queue_recipients WHERE message_id = ? ORDER BY address", (row[0],)
    ).fetchall()
    return QueuedMessage(
        row[0], row[1], BlobRef(row[2], row[3]), timestamp(row[4]), timestamp(row[5]), row[6], row[7],
        tuple(QueuedRecipient(*recipient) for recipient in recipients),
        row[8], None if row[9] is None else datetime.fromtimestamp(row[9], timezone.utc),
    )


def _held_refusal(conn: sqlite3.Connection, queue_id: int) -> Conflict | NotFound:
    """Why an operation on an unheld entry matched nothing: it is gone, or someone holds it."""
    row = conn.execute("SELECT claimed_by FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
    if row is None:
        return NotFound(f"queue entry {queue_id} does not exist")
    return Conflict(
        f"queue entry {queue_id} is being delivered right now ({row[0]}); try again when that attempt is over"
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
        """When the soonest queued message can be claimed (Unix seconds): due, and its lease, if
        any, run out. None when the queue is empty."""
        row = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT min(max(next_attempt, coalesce(claimed_until, 0))) FROM queue_messages"
            ).fetchone()
        )
        return None if row[0] is None else float(row[0])

    # ------------------------------------------------------------------ leases

    async def claim_queue(self, owner: str, now: float, lease: float, limit: int = 100) -> list[QueuedMessage]:
        """Up to `limit` due entries nobody holds, soonest first, now held by `owner` until
        now + lease."""

        def job(tx: Tx) -> list[QueuedMessage]:
            claimed = tx.execute(
                "UPDATE queue_messages SET claimed_by = :owner, claimed_until = :until WHERE id IN"
                f" (SELECT id FROM queue_messages WHERE next_attempt <= :now AND {_UNHELD}"
                "  ORDER BY next_attempt, id LIMIT :limit) RETURNING id",
                {"owner": owner, "until": now + lease, "now": now, "limit": limit},
            ).fetchall()
            entries = [self._queued_by_id(tx.conn, queue_id) for (queue_id,) in claimed]
            return sorted(entries, key=lambda entry: (entry.next_attempt, entry.id))

        return await self._write(job)

    async def claim_queued(self, queue_id: int, owner: str, now: float, lease: float) -> QueuedMessage:
        """One entry, due or not, held by `owner` until now + lease; Conflict while another holds it."""

        def job(tx: Tx) -> QueuedMessage:
            if tx.execute(
                f"UPDATE queue_messages SET claimed_by = :owner, claimed_until = :until WHERE id = :id AND {_UNHELD}",
                {"owner": owner, "until": now + lease, "id": queue_id, "now": now},
            ).rowcount == 0:
                raise _held_refusal(tx.conn, queue_id)
            return self._queued_by_id(tx.conn, queue_id)

        return await self._write(job)

    async def renew_queue_leases(self, owner: str, queue_ids: Sequence[int], until: float) -> list[int]:
        """Extend `owner`'s leases to `until`; returns the entries it still holds (one that
        another process took over after the lease ran out is left out)."""
        wanted = sorted(set(queue_ids))

        def job(tx: Tx) -> list[int]:
            held: list[int] = []
            for chunk in chunked(wanted):
                held.extend(
                    row[0] for row in tx.execute(
                        f"UPDATE queue_messages SET claimed_until = ? WHERE claimed_by = ? AND id IN ({marks(chunk)})"
                        " RETURNING id",
                        (until, owner, *chunk),
                    )
                )
            return sorted(held)

        return await self._write(job)

    async def release_queue_claims(self, owner: str, queue_ids: Sequence[int] | None = None) -> int:
        """Give up `owner`'s leases (of `queue_ids`, or all): the entries are free at once."""
        wanted = None if queue_ids is None else sorted(set(queue_ids))

        def job(tx: Tx) -> int:
            release = "UPDATE queue_messages SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?"
            if wanted is None:
                return tx.execute(release, (owner,)).rowcount
            return sum(
                tx.execute(f"{release} AND id IN ({marks(chunk)})", (owner, *chunk)).rowcount
                for chunk in chunked(wanted)
            )

        return await self._write(job)

    # ------------------------------------------------------------------ what the operator does

    async def retry_queued(self, now: float, queue_id: int | None = None) -> int:
        """Make an entry (or every entry nobody holds) due at `now`; returns how many. NotFound
        or Conflict (held) for a single entry."""

        def job(tx: Tx) -> int:
            params = {"now": now, "due": int(now), "id": queue_id}
            which = "" if queue_id is None else " AND id = :id"
            count = tx.execute(
                "UPDATE queue_messages SET next_attempt = :due, claimed_by = NULL, claimed_until = NULL"
                f" WHERE {_UNHELD}{which}",
                params,
            ).rowcount
            if queue_id is not None and count == 0:
                raise _held_refusal(tx.conn, queue_id)
            return count

        return await self._write(job)

    async def remove_queued(self, queue_id: int, now: float) -> QueuedMessage:
        """Delete an entry nobody holds, with its file reference; returns it as it was."""

        def job(tx: Tx) -> QueuedMessage:
            row = tx.execute(
                f"SELECT id FROM queue_messages WHERE id = :id AND {_UNHELD}", {"id": queue_id, "now": now}
            ).fetchone()
            if row is None:
                raise _held_refusal(tx.conn, queue_id)
            entry = self._queued_by_id(tx.conn, queue_id)
            self._drop_queued(tx, queue_id, entry.blob.sha256)
            return entry

        return await self._write(job)

    def _drop_queued(self, tx: Tx, queue_id: int, sha256: str) -> None:
        tx.execute("DELETE FROM queue_messages WHERE id = ?", (queue_id,))
        tx.execute("UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ?", (sha256,))
        self._gc_wanted = True

    async def record_attempt(
        self,
        queue_id: int,
        outcomes: Mapping[str, tuple[str, str | None]],
        next_attempt: float,
        error: str | None = None,
        *,
        owner: str | None = None,
    ) -> QueuedMessage | None:
        """Record one attempt: each named recipient's new state and error; the entry is due again at
        `next_attempt`, and its lease is released. When no recipient is pending any more the entry
        goes, with its blob reference, and None is returned. With `owner`, LeaseLost (and nothing
        recorded) unless the entry is still held by `owner`."""
        for state, _ in outcomes.values():
            if state not in QUEUE_STATES:
                raise ValueError(f"unknown queue state {state!r}")

        def job(tx: Tx) -> QueuedMessage | None:
            row = tx.execute("SELECT blob_sha256, claimed_by FROM queue_messages WHERE id = ?", (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"queue entry {queue_id} does not exist")
            if owner is not None and row[1] != owner:
                # Our lease ran out and the entry was taken over (or made free by the operator):
                # the new holder's attempt is the one that counts.
                raise LeaseLost(f"queue entry {queue_id} is no longer held by {owner}")
            tx.conn.executemany(
                "UPDATE queue_recipients SET state = ?, last_error = ? WHERE message_id = ? AND address = ?",
                [(state, text, queue_id, address) for address, (state, text) in outcomes.items()],
            )
            pending = tx.execute(
                "SELECT count(*) FROM queue_recipients WHERE message_id = ? AND state = 'pending'", (queue_id,)
            ).fetchone()[0]
            if not pending:
                self._drop_queued(tx, queue_id, row[0])
                return None
            tx.execute(
                "UPDATE queue_messages SET attempts = attempts + 1, next_attempt = ?, last_error = ?,"
                " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
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
