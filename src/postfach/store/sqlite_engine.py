"""SQLite off the event loop: one writer thread with group commit, a pool of readers.

Every write is a job, a function of one connection. The writer takes all the
jobs waiting, runs each in its own SAVEPOINT (a failing job rolls back alone),
and commits them in one transaction: with 20 concurrent writers the fsync of
one COMMIT is shared by up to 20 appends. Readers use WAL snapshots and never
wait for the writer. Changes a job emits are handed to the event loop only
after its COMMIT.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from postfach.store.changes import Change

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 512
BACKGROUND_SHARE = 0.25  # of the writer's time, at most, for background work while writes come
BUSY_TIMEOUT_MS = 30_000


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a COMMIT is on disk when it returns, so an acknowledged message survives power loss too.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the schema files newer than the database's user_version, each in one transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    scripts = sorted(
        (int(entry.name.split("_", 1)[0]), entry)
        for entry in resources.files("postfach.store.sql").joinpath("sqlite").iterdir()
        if entry.name.endswith(".sql")
    )
    for version, entry in scripts:
        if version > current:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{entry.read_text()}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
            log.info("store schema migrated to version %d", version)


class WriteTurn:
    """Whose turn it is to write the database, among every process that opens it.

    SQLite lets one writer in at a time and makes the others retry: its busy handler sleeps
    1, 2, 5, 10 ... up to 100 ms between tries, so with two worker processes delivering at
    once a batch often waited far longer than the other's commit took. An flock on a file
    beside the database is handed over by the kernel the moment it is released.
    """

    def __init__(self, db_path: Path) -> None:
        path = db_path.with_name(db_path.name + ".write-turn")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def take(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def give_back(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __enter__(self) -> None:
        self.take()

    def __exit__(self, *exc_info: object) -> None:
        self.give_back()

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class Tx:
    """What a write job gets: the connection, and a place to put the changes it makes."""

    conn: sqlite3.Connection
    changes: list[Change] = field(default_factory=list)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


@dataclass
class _Job:
    run: Callable[[Tx], Any] | None
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    # Work before the transaction (writing a message file) that gives `run`, when run is None.
    prepare: Callable[[], Callable[[Tx], Any]] | None = None


@dataclass
class _Maintenance:
    """Work that manages its own transactions, run between batches."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()

# (future, result, error) for every job of a batch, handed to the event loop at once.
_Outcome = tuple[asyncio.Future, Any, BaseException | None]


class Writer:
    """The one thread that writes; `when_idle` does background work between writes.

    `make_durable` runs before every batch's transaction, after the jobs' preparation: the
    files they name must be on disk before a committed row names them. It runs before this
    process takes its write turn, so another process commits meanwhile.
    `after_batch` runs in it after every commit, before anyone hears of the batch.
    The callers of a batch hear of it all at once, in one wake-up of their event
    loop, and only after its changes were handed to `publish` there.
    """

    def __init__(
        self,
        path: Path,
        publish: Callable[[list[Change]], None],
        make_durable: Callable[[], None],
        after_batch: Callable[[sqlite3.Connection], None],
        when_idle: Callable[[sqlite3.Connection], bool] = lambda conn: False,
    ) -> None:
        self._path = path
        self._publish = publish
        self._make_durable = make_durable
        self._after_batch = after_batch
        self._when_idle = when_idle
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # Taken around every transaction of this thread; background work (`when_idle`)
        # takes it itself, for its transaction only.
        self.turn = WriteTurn(path)
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, run: Callable[[Tx], T]) -> asyncio.Future:
        """Run `run` in the next batch; the future (of the running loop) gets its result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.enqueue(run, future, loop)
        return future

    def enqueue(self, run: Callable[[Tx], Any], future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        """`submit` from any thread: `future` belongs to `loop`, and is resolved there."""
        self._jobs.put(_Job(run, future, loop))

    def enqueue_prepared(self, prepare: Callable[[], Callable[[Tx], Any]], future: asyncio.Future,
                         loop: asyncio.AbstractEventLoop) -> None:
        """Like `enqueue`, for a job that needs blocking work first: the writer calls `prepare`
        before it opens the batch's transaction (so the lock is held for rows only), and the
        function `prepare` returns inside it. A `prepare` that raises fails its job alone.
        For short work: the thread hop it saves is worth more than the time it takes."""
        self._jobs.put(_Job(None, future, loop, prepare))

    def submit_maintenance(self, run: Callable[[sqlite3.Connection], T]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Maintenance(run, future, loop))
        return future

    def stop(self) -> None:
        """Finish every job already submitted, then close."""
        self._jobs.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        conn = connect(self._path)
        try:
            idle_work = True  # work left from before this process, perhaps
            wrote = False  # a batch ran since the last slice of background work
            writes_until = 0.0  # while writes come, background work waits until then
            while True:
                if idle_work:
                    # Background work takes its turn when no write waits; while writes keep
                    # coming, it gets at most BACKGROUND_SHARE of this thread's time, so a
                    # burst of deliveries is not slowed much by indexing it.
                    wait = max(0.0, writes_until - time.monotonic()) if wrote else 0.0
                    try:
                        item = self._jobs.get(timeout=wait) if wait else self._jobs.get_nowait()
                    except queue.Empty:
                        started = time.monotonic()
                        idle_work = self._run_when_idle(conn)
                        ended = time.monotonic()
                        writes_until = ended + (ended - started) * (1 - BACKGROUND_SHARE) / BACKGROUND_SHARE
                        wrote = False
                        continue
                else:
                    item = self._jobs.get()
                if item is _STOP:
                    return
                if isinstance(item, _Maintenance):
                    with self.turn:
                        self._run_maintenance(conn, item)
                    continue
                batch = [item]
                # Everything that queued up while the last COMMIT was syncing joins this one.
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(item, _Job):
                        self._jobs.put(item)  # back in the queue: it runs after this batch
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
                idle_work = wrote = True
        finally:
            conn.close()
            self.turn.close()

    def _run_when_idle(self, conn: sqlite3.Connection) -> bool:
        """Background work between batches; True while some is left."""
        try:
            return self._when_idle(conn)
        except Exception:
            log.exception("store background work failed; it is tried again after the next write")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False

    def _run_maintenance(self, conn: sqlite3.Connection, item: _Maintenance) -> None:
        try:
            outcome = (item.future, item.run(conn), None)
        except Exception as error:
            outcome = (item.future, None, error)
        _hand_over(item.loop, [outcome], [], self._publish)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # A caller that gave up before its job started changes nothing. (One that gives up
        # later may still see its write committed: as with any database, cancelling a
        # COMMIT in flight does not undo it.)
        started = [job for job in batch if not job.future.cancelled()]
        runs = [_prepared(job) for job in started]
        outcomes: list[_Outcome] = []
        changes: list[Change] = []
        try:
            self._make_durable()
        except Exception as error:
            log.exception("store write batch failed: its files could not be made durable")
            self._report(started, [(job.future, None, error) for job in started], [])
            return
        turn = self.turn
        turn.take()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, run in zip(started, runs):
                if isinstance(run, BaseException):
                    outcomes.append((job.future, None, run))
                    continue
                tx = Tx(conn)
                conn.execute("SAVEPOINT job")
                try:
                    result = run(tx)
                except Exception as error:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job.future, None, error))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job.future, result, None))
                    changes.extend(tx.changes)
            conn.execute("COMMIT")
        except Exception as error:
            log.exception("store write batch failed; nothing of it was committed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(job.future, None, error) for job in started]
            changes = []
        else:
            try:
                self._after_batch(conn)
            except Exception:
                log.exception("store maintenance after a commit failed; the commit stands")
        finally:
            turn.give_back()
        self._report(started, outcomes, changes)

    def _report(self, started: list[_Job], outcomes: list[_Outcome], changes: list[Change]) -> None:
        if started:
            # One event loop in practice; a store shared by several loops hands each its own.
            by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
            for job, outcome in zip(started, outcomes):
                by_loop.setdefault(job.loop, []).append(outcome)
            for index, (loop, loop_outcomes) in enumerate(by_loop.items()):
                _hand_over(loop, loop_outcomes, changes if index == 0 else [], self._publish)


def _prepared(job: _Job) -> Callable[[Tx], Any] | BaseException:
    if job.run is not None:
        return job.run
    assert job.prepare is not None
    try:
        return job.prepare()
    except Exception as error:
        return error


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    outcomes: list[_Outcome],
    changes: list[Change],
    publish: Callable[[list[Change]], None],
) -> None:
    def resolve() -> None:
        if changes:
            publish(changes)
        for outcome in outcomes:
            _settle(*outcome)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        log.warning("event loop closed; %d store results not delivered", len(outcomes))


class FileLanes:
    """Threads for message file work, in two lanes by size.

    Storing a message is mostly CPU (hashing, parsing) under the GIL, so more
    threads only contend with the writer: small messages get one thread. Large
    ones (and streams of unknown size) get their own lane, so a 50 MB upload
    never holds up a stream of small deliveries.
    """

    SMALL = 1 << 20

    def __init__(self, large_threads: int = 2) -> None:
        self._small = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-file")
        self._large = concurrent.futures.ThreadPoolExecutor(large_threads, thread_name_prefix="store-file-large")

    def _lane(self, size: int | None) -> concurrent.futures.ThreadPoolExecutor:
        return self._small if size is not None and size <= self.SMALL else self._large

    async def run(self, work: Callable[[], T], size: int | None = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._lane(size), work)

    def start(self, work: Callable[[], None], size: int | None = None) -> None:
        """Work that reports its own outcome (it hands its result on to the writer)."""
        self._lane(size).submit(work)

    def close(self) -> None:
        self._small.shutdown(wait=True)
        self._large.shutdown(wait=True)


class _ReadThreads:
    """Threads that run calls for the event loop and hand each result straight to its future.

    What run_in_executor does, less its layers (a concurrent Future chained to an asyncio
    one, a semaphore per call): the trip to a reader and back is paid by every store read
    of every IMAP command, and those layers were most of its cost on the loop's side.
    """

    def __init__(self, count: int) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"store-read-{n}", daemon=True) for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, function, args))
        return future

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, function, args = call
            try:
                result = function(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller, as an executor does
                outcome = (future, None, error)
            else:
                outcome = (future, result, None)
            try:
                loop.call_soon_threadsafe(_settle, *outcome)
            except RuntimeError:
                log.warning("event loop closed; a store read's result was not delivered")

    def close(self) -> None:
        """Finish the calls already made, then stop."""
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled) meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Readers:
    """A few threads, each with its own read connection (WAL: readers never wait for the writer)."""

    def __init__(self, path: Path, threads: int = 4) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = _ReadThreads(threads)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        # One snapshot for the whole query function, so what it reads is consistent.
        conn.execute("BEGIN")
        try:
            return query(conn)
        finally:
            conn.execute("COMMIT")

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        return await self._pool.run(self._run, query)

    async def run_without_database(self, work: Callable[[], T]) -> T:
        """File reads on these threads, with no transaction around them."""
        return await self._pool.run(work)

    def _fetch_one(self, sql: str, params: Any) -> Any:
        return self._connection().execute(sql, params).fetchone()

    async def fetch_one(self, sql: str, params: Any = ()) -> Any:
        """The first row of one statement: a statement alone reads one snapshot, so this needs
        no transaction around it (which `run` opens, for several statements)."""
        return await self._pool.run(self._fetch_one, sql, params)

    def close(self) -> None:
        self._pool.close()
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
