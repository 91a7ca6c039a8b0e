"""The bytes of a message being delivered: in memory when small, in a spool file when large.

A door that receives a message writes it to a `SpoolWriter`; up to
`SPOOL_IN_MEMORY` bytes stay in memory, beyond that everything goes to an
unlinked temporary file in the spool directory (nothing is left behind by a
crash). Either way the pipeline gets an `IncomingMessage`: its header section
in memory (at most `HEADER_LIMIT` bytes of it), its body read in chunks, and
what the store is given is a stream, so delivering a 50 MB message costs
about the same memory as a small one.

A `SpooledMessage` owns one file descriptor. Whoever needs the file beyond
the owner's lifetime (a delivery that outlives the SMTP session, say) takes a
`duplicate()` and closes it when done: every reader uses positional reads,
so copies never disturb each other, and the file is gone with the last one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SPOOL_IN_MEMORY = 1 << 20  # like IMAP APPEND literals (imap/server.py)
HEADER_LIMIT = 1 << 20  # header bytes the checks look at; a longer header section is cut at a line end
_CHUNK = 1 << 20


def header_section(data: bytes) -> bytes:
    """The header section with the empty line that ends it (RFC 5322 §2.1); all of `data`
    when it has no empty line, and just CRLF when it starts with one (no header at all)."""
    if data.startswith(b"\r\n"):
        return b"\r\n"
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 4]


class IncomingMessage:
    """What the pipeline needs of a message: its header section, its size, its body in chunks,
    and its bytes for the store with the header section replaced and trace fields in front."""

    header: bytes
    size: int

    def body_chunks(self) -> Iterator[bytes]:
        """The bytes after `header`, in chunks; safe to call from several threads at once."""
        raise NotImplementedError

    def content(self, prefix: bytes, header: bytes) -> bytes | BinaryIO:
        """`prefix`, then `header` in place of the header section, then the body."""
        raise NotImplementedError


class InMemoryMessage(IncomingMessage):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.header = header_section(data)
        self.size = len(data)

    def body_chunks(self) -> Iterator[bytes]:
        yield self._data[len(self.header):]

    def content(self, prefix: bytes, header: bytes) -> bytes:
        if header == self.header:
            return prefix + self._data
        return prefix + header + self._data[len(self.header):]


class SpooledMessage(IncomingMessage):
    def __init__(self, fd: int, size: int, header: bytes | None = None) -> None:
        self._fd = fd
        self.size = size
        self.header = self._read_header() if header is None else header

    def _read_header(self) -> bytes:
        start = os.pread(self._fd, HEADER_LIMIT, 0)
        if start.startswith(b"\r\n") or b"\r\n\r\n" in start or len(start) < HEADER_LIMIT:
            return header_section(start)
        # No end of the header section within the limit: what the checks see ends at the last
        # complete line, and the rest counts as body (it is stored all the same).
        return start[: start.rfind(b"\r\n") + 2] if b"\r\n" in start else b""

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        offset = start
        while chunk := os.pread(self._fd, _CHUNK, offset):
            yield chunk
            offset += len(chunk)

    def body_chunks(self) -> Iterator[bytes]:
        return self.chunks(len(self.header))

    def content(self, prefix: bytes, header: bytes) -> BinaryIO:
        return _Concatenation(prefix + header, self.chunks(len(self.header)))  # type: ignore[return-value]

    def duplicate(self) -> SpooledMessage:
        return SpooledMessage(os.dup(self._fd), self.size, self.header)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SpooledMessage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Concatenation:
    """A read-only stream of some bytes followed by chunks: all `FileBlobStore.write` reads."""

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self._pending = first
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            self._pending = next(self._rest, b"")
            if not self._pending:
                return b""
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


class SpoolWriter:
    """Collects a message written in pieces: in memory up to `in_memory` bytes, then in an
    unlinked temporary file in `directory`."""

    def __init__(self, directory: Path, in_memory: int = SPOOL_IN_MEMORY) -> None:
        self._directory = directory
        self._in_memory = in_memory
        self._parts: list[bytes] = []
        self._file: BinaryIO | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None:
            self._parts.append(data)
            if self.size <= self._in_memory:
                return
            self._file = tempfile.TemporaryFile(dir=self._directory)
            data = b"".join(self._parts)
            self._parts = []
        self._file.write(data)

    def finish(self) -> bytes | SpooledMessage:
        """The message: bytes when it stayed in memory, else the spool file (the writer is done)."""
        if self._file is None:
            data = b"".join(self._parts)
            self._parts = []
            return data
        self._file.flush()
        spooled = SpooledMessage(os.dup(self._file.fileno()), self.size)
        self.discard()
        return spooled

    def discard(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None
