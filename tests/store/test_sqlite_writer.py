"""sqlite_engine.Writer: group commit, jobs prepared before the transaction, background work in pauses."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from postfach.store.sqlite_engine import QUIET_SECONDS, Writer, connect


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "writer.sqlite3"
    conn = connect(path)
    conn.execute("CREATE TABLE notes (text TEXT NOT NULL)")
    conn.close()
    return path


def _writer(path, when_idle=lambda conn: False) -> Writer:
    return Writer(path, lambda changes: None, lambda: None, lambda conn: None, when_idle)


def _notes(path) -> list[str]:
    conn = connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT text FROM notes ORDER BY rowid")]
    finally:
        conn.close()


def _insert(text: str):
    return lambda tx: tx.execute("INSERT INTO notes (text) VALUES (?)", (text,)).lastrowid


async def _prepared(writer: Writer, prepare) -> asyncio.Future:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    writer.enqueue_prepared(prepare, future, loop)
    return future


async def test_a_prepared_job_runs_its_preparation_outside_the_transaction_and_fails_alone(database):
    writer = _writer(database)
    lock_free: list[bool] = []

    def prepare_first():
        other = sqlite3.connect(database, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails while the writer's transaction holds the lock
            other.execute("ROLLBACK")
            lock_free.append(True)
        except sqlite3.OperationalError:
            lock_free.append(False)
        finally:
            other.close()
        return _insert("first")

    def prepare_broken():
        raise OSError("the disk is full")

    try:
        first = await _prepared(writer, prepare_first)
        broken = await _prepared(writer, prepare_broken)
        last = writer.submit(_insert("last"))
        assert await first and await last
        with pytest.raises(OSError, match="the disk is full"):
            await broken
    finally:
        writer.stop()
    assert _notes(database) == ["first", "last"]
    assert lock_free == [True]


async def test_background_work_waits_for_a_pause_in_the_writes(database):
    calls: list[float] = []

    def index_a_little(conn) -> bool:
        calls.append(time.monotonic())
        return True  # always more to do, like a long indexing backlog

    writer = _writer(database, index_a_little)
    try:
        await asyncio.sleep(0.6)
        idle_calls = len(calls)
        # Writes 5 ms apart, well inside the quiet time: background work keeps out of the way
        # (at most its guaranteed turn, and a stray pause on a busy machine).
        started = time.monotonic()
        while time.monotonic() - started < 0.6:
            await writer.submit(_insert("busy"))
            await asyncio.sleep(0.005)
        busy_calls = len([moment for moment in calls if moment >= started])
    finally:
        writer.stop()
    assert idle_calls >= 0.6 / QUIET_SECONDS / 3
    assert busy_calls <= 2 < idle_calls
