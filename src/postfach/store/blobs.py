"""Content-addressed message files: blobs/<sha256[:2]>/<sha256>.

A file is written to tmp/, fsynced, renamed into place and its directory
fsynced, so after `write` returns the bytes survive a crash; only then may a
row naming it be committed. Identical content is stored once. Files are
blocking I/O: callers run these methods off the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from postfach.model import BlobRef

_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Held while a file is reused for new content (write) or removed (remove_if_stale), so
        # that garbage collection never deletes a file that an append is about to reference.
        self.lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def write(self, data: bytes | BinaryIO) -> BlobRef:
        """Store the bytes durably; returns their address. Reading a stream, memory stays flat."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(data):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            final = self.path(sha256)
            with self.lock:
                if self._touch(final):
                    os.unlink(tmp_name)
                else:
                    self._place(Path(tmp_name), final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return BlobRef(sha256, size)

    def _touch(self, final: Path) -> bool:
        """Mark an existing file as just used (garbage collection spares recent files)."""
        try:
            os.utime(final)
        except FileNotFoundError:
            return False
        return True

    def _place(self, tmp: Path, final: Path) -> None:
        shard = final.parent
        if not shard.is_dir():
            shard.mkdir(exist_ok=True)
            _fsync_dir(self.root)
        os.replace(tmp, final)
        _fsync_dir(shard)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

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


def _chunks(data: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    while chunk := data.read(_CHUNK):
        yield chunk
