"""A message on the wire for RETR and TOP: CRLF line ends, dot-stuffed, terminated; no I/O.

The message arrives in chunks (a large one is never in memory whole), so the
encoder keeps what spans a chunk boundary: a CR that may be the first half of
a CRLF, and whether the next byte starts a line.

Line ends: CRLF, a bare LF and a bare CR each end a line and go out as CRLF,
so a message stored with CRLF (every message SMTP and IMAP deliver) goes out
byte for byte, and no lone CR or LF ever reaches a client.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")
TERMINATOR = b".\r\n"


class MessageEncoder:
    """feed() chunks of a message, then finish(); `body_lines` limits it as TOP does."""

    def __init__(self, body_lines: int | None = None) -> None:
        self._pending_cr = False  # the previous chunk ended in CR
        self._line_start = True
        self._body_lines = body_lines  # None: the whole message
        self._in_body = False  # TOP: the blank line after the header has gone out
        self.done = False  # TOP: every line it asked for has gone out

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        return self._emit(_normalise(chunk))

    def finish(self) -> bytes:
        """The end of the message: a last line end if it lacked one, then the terminating ".".

        RFC 1939 §3: a multi-line response ends with CRLF "." CRLF, so a message
        whose last line has no line end gets one.
        """
        tail = b""
        if self._pending_cr and not self.done:
            self._pending_cr = False
            tail = self._emit(b"\r\n")
        if not self._line_start:
            tail += b"\r\n"
            self._line_start = True
        return tail + TERMINATOR

    def _emit(self, data: bytes) -> bytes:
        if self._body_lines is not None:
            data = self._cut(data)
        if not data:
            return data
        # RFC 1939 §3: a line that starts with "." gets one more ("byte-stuffing").
        # After _normalise every LF follows a CR, so "\n." is exactly a line starting with ".".
        out = data.replace(b"\n.", b"\n..")
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        self._line_start = out.endswith(b"\n")
        return out

    def _cut(self, data: bytes) -> bytes:
        """TOP (RFC 1939 §7): the header, the blank line, then `body_lines` lines of the body."""
        position = 0
        line_start = self._line_start
        while position < len(data):
            if not self._in_body:
                if line_start and data.startswith(b"\r\n", position):
                    self._in_body = True
                    position += 2
                    if self._body_lines == 0:
                        self.done = True
                        return data[:position]
                    continue
                end = data.find(b"\r\n", position)
                if end < 0:
                    return data  # a header line continues in the next chunk
                position, line_start = end + 2, True
                continue
            assert self._body_lines is not None
            wanted = self._body_lines
            if data.count(b"\r\n", position) < wanted:
                self._body_lines = wanted - data.count(b"\r\n", position)
                return data
            for _ in range(wanted):
                position = data.find(b"\r\n", position) + 2
            self._body_lines = 0
            self.done = True
            return data[:position]
        return data


def _normalise(chunk: bytes) -> bytes:
    crlf = chunk.count(b"\r\n")
    if chunk.count(b"\r") == crlf and chunk.count(b"\n") == crlf:
        return chunk  # the usual case, and the fast one: already CRLF throughout
    return _LINE_END.sub(b"\r\n", chunk)


def encode_message(data: bytes, body_lines: int | None = None) -> bytes:
    """A whole message at once (tests, small messages)."""
    encoder = MessageEncoder(body_lines)
    return encoder.feed(data) + encoder.finish()
