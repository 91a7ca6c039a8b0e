"""sqlite_engine.Writer: group commit, jobs prepared before the transaction, background work in pauses."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from postfach.store.sqlite_engine import BACKGROUND_SHARE, Writer, WriteTurn, connect


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "writer.sqlite3"
    conn = connect(path)
    conn.execute("CREATE TABLE notes (text TEXT NOT NULL)")
    conn.close()
    return path


def _writer(path, when_idle=lambda conn: False, make_durable=lambda: None) -> Writer:
    return Writer(path, lambda changes: None, make_durable, lambda conn: None, when_idle)


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


async def test_background_work_takes_a_share_of_the_writer_while_writes_keep_coming(database):
    slices: list[tuple[float, float]] = []

    def index_a_little(conn) -> bool:
        started = time.monotonic()
        time.sleep(0.01)  # a slice of indexing
        slices.append((started, time.monotonic()))
        return True  # always more to do, like a long indexing backlog

    def busy_share(since: float, until: float) -> float:
        return sum(min(end, until) - max(start, since) for start, end in slices if end > since and start < until) / (
            until - since
        )

    writer = _writer(database, index_a_little)
    try:
        idle_from = time.monotonic()
        await asyncio.sleep(0.5)
        idle_until = writes_from = time.monotonic()
        while time.monotonic() - writes_from < 0.8:  # writes 2 ms apart, each waited for
            await writer.submit(_insert("busy"))
            await asyncio.sleep(0.002)
        writes_until = time.monotonic()
    finally:
        writer.stop()
    # Without writes the work runs back to back; with them it gets about BACKGROUND_SHARE.
    assert busy_share(idle_from, idle_until) > 0.7
    assert 0.05 < busy_share(writes_from, writes_until) < BACKGROUND_SHARE + 0.15


def test_one_process_at_a_time_has_the_write_turn(database):
    # Each WriteTurn opens the lock file anew, as another process does.
    first, second = WriteTurn(database), WriteTurn(database)
    taken = threading.Event()
    first.take()
    waiting = threading.Thread(target=lambda: (second.take(), taken.set()))
    waiting.start()
    try:
        assert not taken.wait(0.2)
        first.give_back()
        assert taken.wait(5)
    finally:
        waiting.join()
        second.give_back()
        first.close()
        second.close()


async def test_files_that_cannot_be_made_durable_fail_their_batch_and_the_writer_goes_on(database):
    failures = [OSError("syncfs failed: I/O error")]

    def make_durable():
        if failures:
            raise failures.pop()

    writer = _writer(database, make_durable=make_durable)
    try:
        with pytest.raises(OSError, match="I/O error"):
            await writer.submit(_insert("lost"))
        assert await writer.submit(_insert("kept"))
    finally:
        writer.stop()
    assert _notes(database) == ["kept"]
