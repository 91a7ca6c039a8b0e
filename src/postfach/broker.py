"""What the worker processes of one server share through their supervisor (issue 7 point 1).

`postfach serve --workers N` runs N processes on the same listeners and store
(supervisor.py). Two things cannot live in one process then:

- change events: an IMAP session IDLE-ing in worker 1 must hear of a message
  that worker 2 delivered, within milliseconds;
- counted slots: connections per address and per account, and the POP3
  maildrop lock, are limits for the whole server.

Each worker has one stream socket to the supervisor (a socketpair made before
the worker starts). On it go frames: a 4-byte length and a pickled tuple.
Pickle is safe here: both ends are our own processes, started by us, and the
socket is not reachable from outside (it has no name).

    worker -> supervisor                 supervisor -> worker
    ("ready",)                           ("event", change)
    ("event", change)                    ("granted", request id, bool)
    ("acquire", id, kind, key, limit)
    ("release", kind, key)

The supervisor's side is `Hub`: it forwards each event to every other worker
and keeps the slot counts, per worker, so that the counts of a worker that
died are dropped with it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import socket
import struct
from collections import Counter
from collections.abc import Callable

from postfach.store.changes import Change
from postfach.store.events import LocalEventBus

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")


def frame(message: tuple) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple | None:
    """The next message, or None when the other end has gone."""
    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        return pickle.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# ---------------------------------------------------------------------------- worker side


class BrokerLink:
    """A worker's end: publishes its changes, receives the others', and asks for slots."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._requests = itertools.count(1)
        # Requests not answered yet. One whose caller gave up (its connection was cancelled)
        # stays here: a grant that still comes is handed back at once, or the slot would stay
        # taken for good.
        self._pending: dict[int, tuple[asyncio.Future[bool], str, str]] = {}
        self._receiver: asyncio.Task | None = None
        self._lost = False
        self.on_event: Callable[[Change], None] = lambda change: None

    @classmethod
    async def connect(cls, sock: socket.socket) -> BrokerLink:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def start(self, on_lost: Callable[[], None]) -> None:
        self._receiver = asyncio.create_task(self._receive(on_lost), name="broker-link")

    def send(self, message: tuple) -> None:
        if not self._writer.is_closing():
            self._writer.write(frame(message))

    async def acquire(self, kind: str, key: str, limit: int) -> bool:
        """Whether the slot was counted; never, once the supervisor is gone (the worker is stopping)."""
        if self._lost:
            return False
        request = next(self._requests)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[request] = (future, kind, key)
        self.send(("acquire", request, kind, key, limit))
        return await future

    def release(self, kind: str, key: str) -> None:
        self.send(("release", kind, key))

    async def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass

    async def _receive(self, on_lost: Callable[[], None]) -> None:
        while (message := await read_frame(self._reader)) is not None:
            try:
                self._dispatch(message)
            except Exception:
                log.exception("broker message %r could not be handled", message[:1])
        self._lost = True
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_result(False)
        self._pending.clear()
        on_lost()

    def _dispatch(self, message: tuple) -> None:
        if message[0] == "event":
            self.on_event(message[1])
        elif message[0] == "granted":
            _, request, granted = message
            future, kind, key = self._pending.pop(request)
            if not future.done():
                future.set_result(granted)
            elif granted:
                self.release(kind, key)


class BrokerSlots:
    """connection_limits.Slots kept by the supervisor for all workers."""

    def __init__(self, link: BrokerLink) -> None:
        self._link = link

    async def acquire(self, kind: str, key: str, limit: int) -> bool:
        return await self._link.acquire(kind, key, limit)

    def release(self, kind: str, key: str) -> None:
        self._link.release(kind, key)


class BrokeredEventBus(LocalEventBus):
    """The store's bus in a worker: local subscribers at once, the other workers via the supervisor."""

    def __init__(self, link: BrokerLink) -> None:
        super().__init__()
        self._link = link
        link.on_event = super().publish

    def publish(self, change: Change) -> None:
        super().publish(change)
        self._link.send(("event", change))


# ---------------------------------------------------------------------------- supervisor side


class Hub:
    """The supervisor's end of every worker's socket.

    A slot's count is the sum of what each worker holds, so the counts of a worker that
    ended go with it.
    """

    def __init__(self, on_ready: Callable[[int], None]) -> None:
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._held: dict[int, Counter[tuple[str, str]]] = {}
        self._on_ready = on_ready

    async def serve(self, worker: int, sock: socket.socket) -> None:
        """Run one worker's side until its socket closes (the worker ended)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._writers[worker] = writer
        self._held[worker] = Counter()
        try:
            while (message := await read_frame(reader)) is not None:
                self._handle(worker, message)
        finally:
            del self._writers[worker]
            del self._held[worker]  # a worker that ended holds no connections any more
            writer.close()

    def _handle(self, worker: int, message: tuple) -> None:
        kind = message[0]
        if kind == "event":
            data = frame(message)
            for other, other_writer in self._writers.items():
                if other != worker and not other_writer.is_closing():
                    other_writer.write(data)
        elif kind == "acquire":
            _, request, slot_kind, key, limit = message
            slot = (slot_kind, key)
            granted = sum(held[slot] for held in self._held.values()) < limit
            if granted:
                self._held[worker][slot] += 1
            self._writers[worker].write(frame(("granted", request, granted)))
        elif kind == "release":
            _, slot_kind, key = message
            held = self._held[worker]
            if held[slot_kind, key] > 1:
                held[slot_kind, key] -= 1
            else:  # no zero left behind: one per client address ever seen would pile up
                held.pop((slot_kind, key), None)
        elif kind == "ready":
            self._on_ready(worker)
        else:
            log.error("worker %d sent an unknown message %r", worker, kind)
