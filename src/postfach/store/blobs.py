"""Content-addressed message files: blobs/<sha256[:2]>/<sha256>.

A file is written to tmp/ and renamed into place, so no reader ever sees half
a file, and `write` returns only once it is durable. Durability is a group
sync: one syncfs(2) makes every file written before it durable, data and
directory entries alike, so concurrent writers share one flush instead of
paying two fsyncs (file and directory) each. Identical content is stored
once. Files are blocking I/O: callers run these methods off the event loop,
on enough threads for writers to wait together.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import itertools
import mmap
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from postfach.model import BlobRef

_CHUNK = 1 << 20


_libc = ctypes.CDLL(None, use_errno=True)

# preadv2 flag: return only what is in the page cache (Linux 4.14+); file systems without it
# answer EOPNOTSUPP, and the read then goes to a thread as any other.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
_NOT_CACHED = frozenset({errno.EAGAIN, errno.EOPNOTSUPP})


class _ReuseLock:
    """Held while a file is reused for new content or removed, by every thread of every process.

    Worker processes share the message files: one may collect a file as garbage while another
    is about to reference it again. A thread lock keeps out this process's other threads (an
    flock is per open file, which they share); the flock keeps out the other processes.
    """

    def __init__(self, path: Path) -> None:
        self._thread_lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        os.close(self._fd)


def _syncfs(path: Path) -> None:
    """Flush every file and directory of the file system holding `path` to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs of {path} failed: {os.strerror(error)}")
    finally:
        os.close(fd)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Plain strings and a counter on the hot path: pathlib and tempfile's random names
        # cost more than the rest of writing a small message.
        self._root_name = str(root)
        self._tmp_prefix = f"{self._tmp}/{os.getpid()}-{secrets.token_hex(4)}-"
        self._tmp_serial = itertools.count()
        self._shards: set[str] = set()
        # Held while a file is reused for new content (write) or removed (remove_if_stale), so
        # that garbage collection never deletes a file that an append is about to reference.
        self.lock = _ReuseLock(root / ".reuse-lock")
        self._unsynced = False

    def close(self) -> None:
        self.lock.close()

    def path(self, sha256: str) -> Path:
        return Path(self._name(sha256))

    def _name(self, sha256: str) -> str:
        return f"{self._root_name}/{sha256[:2]}/{sha256}"

    def write(self, data: bytes | BinaryIO) -> BlobRef:
        """Store the bytes durably; returns their address. Reading a stream, memory stays flat."""
        digest = hashlib.sha256()
        size = 0
        tmp_name = f"{self._tmp_prefix}{next(self._tmp_serial)}"
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # The descriptor itself, not a file object: fdopen's fstat, isatty and seek were
            # three system calls per message more, each a wait for the GIL after it.
            try:
                for chunk in _chunks(data):
                    digest.update(chunk)
                    _write_all(fd, chunk)
                    size += len(chunk)
            finally:
                os.close(fd)
            sha256 = digest.hexdigest()
            final = self._name(sha256)
            with self.lock:
                placed = not self._touch(final)
                if placed:
                    self._make_shard(sha256[:2])
                    os.replace(tmp_name, final)
            if not placed:
                os.unlink(tmp_name)
            # Set after the file is in place: a sync() that clears it afterwards flushes this file.
            self._unsynced = True
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return BlobRef(sha256, size)

    def _make_shard(self, shard: str) -> None:
        if shard not in self._shards:
            os.makedirs(f"{self._root_name}/{shard}", exist_ok=True)
            self._shards.add(shard)

    def _touch(self, final: str) -> bool:
        """Mark an existing file as just used (garbage collection spares recent files)."""
        try:
            os.utime(final)
        except FileNotFoundError:
            return False
        return True

    def sync(self) -> None:
        """Make every file written so far durable; nothing to do when none was written."""
        if self._unsynced:
            self._unsynced = False
            _syncfs(self.root)

    def exists(self, sha256: str) -> bool:
        return os.path.isfile(self._name(sha256))

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def read_range(self, sha256: str, start: int, end: int) -> bytes:
        """Bytes start..end of the file (plain names and calls: FETCH reads many small ranges)."""
        fd = os.open(self._name(sha256), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def read_range_if_cached(self, sha256: str, start: int, end: int) -> bytes | None:
        """Bytes start..end of the file if the kernel holds all of them in memory, else None.

        preadv2(RWF_NOWAIT) returns what is in the page cache and never waits for the disk, so
        the event loop may call this where a thread hop would cost more than the read (a POP3
        RETR of a small message). Raises FileNotFoundError like read_range.
        """
        if _NOWAIT is None:
            return None
        fd = os.open(self._name(sha256), os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Callers ask for a chunk (POP3: 1 MB) and get what the file has: the buffer is
            # the size of that, not of the chunk (a zeroed 1 MB per RETR of 8 KB was a fifth
            # of its time).
            wanted = max(0, min(end, os.fstat(fd).st_size) - start)
            buffer = bytearray(wanted)
            got = 0
            with memoryview(buffer) as view:
                while got < wanted:
                    # A short read stops at the first page not in memory: the next says EAGAIN.
                    count = os.preadv(fd, [view[got:]], start + got, _NOWAIT)
                    if count == 0:
                        break
                    got += count
        except OSError as error:
            if error.errno in _NOT_CACHED:
                return None
            raise
        finally:
            os.close(fd)
        return bytes(buffer) if got == wanted else bytes(buffer[:got])

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    @contextlib.contextmanager
    def mapped(self, sha256: str) -> Iterator[bytes | mmap.mmap]:
        """The file's bytes, mapped rather than read, so a large message is not copied into memory."""
        with open(self.path(sha256), "rb") as stored:
            if os.fstat(stored.fileno()).st_size == 0:
                yield b""
                return
            with mmap.mmap(stored.fileno(), 0, access=mmap.ACCESS_READ) as content:
                yield content

    def remove_if_stale(self, sha256: str, grace_seconds: float) -> bool:
        """Remove the file unless it was written or reused within the grace period.

        Returns whether the file is gone. Call with `lock` held.
        """
        path = self.path(sha256)
        try:
            if time.time() - path.stat().st_mtime < grace_seconds:
                return False
            path.unlink()
        except FileNotFoundError:
            pass
        return True

    def all_names(self) -> Iterator[tuple[str, float]]:
        """Every stored file's sha256 and modification time."""
        for shard in self.root.iterdir():
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in os.scandir(shard):
                if len(entry.name) == 64:
                    yield entry.name, entry.stat().st_mtime

    def stale_temporaries(self, older_than: float) -> Iterator[Path]:
        """Files a crashed writer left in tmp/."""
        cutoff = time.time() - older_than
        for entry in os.scandir(self._tmp):
            if entry.stat().st_mtime < cutoff:
                yield Path(entry.path)


def _write_all(fd: int, chunk: bytes) -> None:
    written = os.write(fd, chunk)
    if written < len(chunk):  # a file takes it all at once, unless the disk is filling up
        with memoryview(chunk) as view:
            while written < len(chunk):
                written += os.write(fd, view[written:])


def _chunks(data: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    while chunk := data.read(_CHUNK):
        yield chunk
