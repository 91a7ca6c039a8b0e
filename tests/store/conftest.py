"""The store contract suite runs against every store implementation.

STORE_BACKENDS (comma-separated) picks which; the embedded SQLite store is
always available. The PostgreSQL store joins when it exists.
"""

import os

import pytest

from postfach.store.sqlite import SqliteStore

BACKENDS = os.environ.get("STORE_BACKENDS", "sqlite").split(",")


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    if request.param != "sqlite":
        pytest.fail(f"unknown store backend {request.param!r} in STORE_BACKENDS")
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs", blob_grace_seconds=0)
    yield opened
    await opened.close()


@pytest.fixture
async def account(store):
    await store.add_domain("example.com")
    return await store.add_account("alice@example.com", "not-a-real-hash", 50 * 1024 * 1024)


@pytest.fixture
async def inbox(store, account):
    return await store.get_folder(account.id, "INBOX")
