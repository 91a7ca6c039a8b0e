"""The storage seam: every door reads and writes mail through `Store` (base.py), never SQL.

`open_store` picks the implementation the configuration names; today that is
the embedded SQLite store with content-addressed message files (sqlite.py).
The invariants every implementation keeps are in base.py's docstring and in
the contract suite under tests/store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postfach.config import Config
    from postfach.store.events import LocalEventBus
    from postfach.store.sqlite import SqliteStore


async def open_store(config: Config, events: LocalEventBus | None = None) -> SqliteStore:
    """The configured store; `events` is the bus it publishes changes on (its own when None)."""
    from postfach.store.sqlite import SqliteStore

    return await SqliteStore.open(config.db_path, config.blob_dir, events=events)
