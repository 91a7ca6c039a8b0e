"""The login audit is kept for `audit.retention_days`, and no longer.

The running server deletes older attempts when it starts and then every hour
(`AuditRetention.start`); `postfach audit --prune` does it at once. The
deleting is the store writer's work, in slices (Store.prune_login_attempts),
so neither the event loop nor the writes of other requests wait for it. With
several server processes each prunes; deleting what is gone already costs
one indexed lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from postfach.store.base import Store

log = logging.getLogger(__name__)

DAY = 86400
PRUNE_INTERVAL = 3600.0


class AuditRetention:
    def __init__(
        self,
        store: Store,
        days: int,
        *,
        interval: float = PRUNE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.days = days
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task | None = None

    async def prune(self) -> int:
        """Delete the attempts older than the retention now; returns how many went."""
        return await self._store.prune_login_attempts(self._clock() - self.days * DAY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                removed = await self.prune()
            except Exception:
                log.exception("pruning the login audit failed; trying again in %.0f s", self._interval)
            else:
                if removed:
                    log.info("login audit: deleted %d attempts older than %d days", removed, self.days)
            await asyncio.sleep(self._interval)
