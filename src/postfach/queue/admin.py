"""What the operator does to the outbound queue (`postfach queue ...`): look, retry, remove, bounce.

Every change is refused while a worker holds the entry's lease (it is trying
the entry at that moment, see worker.py): that attempt decides what happens
next, and removing or bouncing the entry under it could deliver the message
and tell the sender it was not delivered. A bounce holds the lease itself
while it files the DSN, so no worker starts the entry meanwhile, and files the
DSN before the entry goes, as the worker does: a crash in between sends a
second DSN at worst, never none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from postfach.model import QueuedMessage
from postfach.provisioning import InvalidRequest
from postfach.queue.dsn import Failure, build_dsn
from postfach.queue.worker import LocalDelivery, process_owner, without_return_path
from postfach.store.base import StagedBlob, Store, StoreError

# Long enough to file one DSN; if the command dies holding it, a worker takes over after it.
BOUNCE_LEASE = 300.0
# RFC 3463 X.0.0: no more specific code says "the postmaster returned it".
BOUNCE_STATUS = "5.0.0"


class QueueAdmin:
    def __init__(self, store: Store, hostname: str, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._hostname = hostname
        self._clock = clock
        self.owner = process_owner()

    async def _run(self, operation):
        try:
            return await operation
        except StoreError as error:
            raise InvalidRequest(str(error)) from None

    async def enqueue(self, sender: str, recipients: Sequence[str], message: StagedBlob) -> None:
        """The pipeline's Outbound while a bounce is filed: a DSN for a sender elsewhere is
        queued, and the running server sends it."""
        await self._store.enqueue(sender, recipients, message)

    async def entries(self, limit: int) -> tuple[list[QueuedMessage], bool]:
        """The first `limit` entries, soonest attempt first, and whether there are more."""
        if limit < 1:
            raise InvalidRequest("the limit must be at least 1")
        found = await self._store.list_queue(limit=limit + 1)
        return found[:limit], len(found) > limit

    async def retry(self, queue_id: int | None) -> int:
        """Make an entry, or every entry no worker is trying, due now; returns how many."""
        return await self._run(self._store.retry_queued(self._clock(), queue_id))

    async def remove(self, queue_id: int) -> QueuedMessage:
        """Delete an entry without telling its sender; returns it as it was."""
        return await self._run(self._store.remove_queued(queue_id, self._clock()))

    async def bounce(self, queue_id: int, local: LocalDelivery) -> QueuedMessage:
        """Return an entry to its sender: one DSN for its pending recipients, filed through
        `local` (the delivery pipeline), then the entry goes; returns it as it was."""
        found = await self._store.get_queued(queue_id)
        if found is None:
            raise InvalidRequest(f"queue entry {queue_id} does not exist")
        if not found.sender:
            # RFC 3464 §2: a bounce is never bounced.
            raise InvalidRequest(
                f"queue entry {queue_id} is itself a bounce and has no sender to return it to;"
                f" remove it with 'postfach queue remove {queue_id}'"
            )
        now = self._clock()
        entry = await self._run(self._store.claim_queued(queue_id, self.owner, now, BOUNCE_LEASE))
        try:
            message = without_return_path(await self._store.read_blob(entry.blob.sha256))
            reason = f"550 {BOUNCE_STATUS} returned to the sender by the postmaster of {self._hostname}"
            failures = [Failure(recipient, BOUNCE_STATUS, reason) for recipient in entry.pending]
            await local.deliver_bounce(entry.sender, build_dsn(self._hostname, entry.sender, failures, message,
                                                               entry.created_at))
            outcomes = {recipient: ("failed", reason) for recipient in entry.pending}
            await self._store.record_attempt(entry.id, outcomes, now, reason, owner=self.owner)
        except Exception:
            # Free at once for the workers rather than after the lease.
            await self._store.release_queue_claims(self.owner, [entry.id])
            raise
        return entry
