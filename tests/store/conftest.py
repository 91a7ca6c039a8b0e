"""The store contract suite runs against every store implementation.

STORE_BACKENDS (comma-separated) picks which; the embedded SQLite store is
always available. The PostgreSQL store joins when it exists.
"""

import os

import pytest

from postfach.store.sqlite import SqliteStore

BACKENDS = os.environ.get("STORE_BACKENDS", "sqlite").split(",")


async def _open(backend: str, tmp_path):
    if backend != "sqlite":
        pytest.fail(f"unknown store backend {backend!r} in STORE_BACKENDS")
    return await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs", blob_grace_seconds=0)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
async def store(backend, tmp_path):
    opened = await _open(backend, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
async def second_store(backend, store, tmp_path):
    """Another instance on the same data, as a second process (or node) opens it."""
    opened = await _open(backend, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
async def account(store):
    await store.add_domain("example.com")
    return await store.add_account("alice@example.com", "not-a-real-hash", 50 * 1024 * 1024)


@pytest.fixture
async def inbox(store, account):
    return await store.get_folder(account.id, "INBOX")
