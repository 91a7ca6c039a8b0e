"""The MIME tree with byte offsets, found by scanning the original bytes once.

Only header blocks are turned into Python objects; bodies are only searched
for boundary delimiters (``find`` in C; Python sees only the hits) and, for
text and message parts, counted for lines. Nothing is decoded here. Each
multipart's parts are found before its children are parsed, within its own
range, so an outer boundary always ends an inner part.
"""

from __future__ import annotations

import re

from postfach.mime.envelope import build_envelope
from postfach.mime.headers import Buffer, HeaderFields, read_header
from postfach.mime.model import MESSAGE_TYPES, BodyPart, Envelope
from postfach.mime.params import (
    Params,
    get_param,
    leading_value,
    parse_content_type,
    parse_disposition,
)

# Deeper multiparts and encapsulated messages become leaves.
MAX_DEPTH = 100
# At most this many entities per message; the rest of a multipart that would
# exceed it stays inside its last part. Keeps a hostile message from costing
# seconds of header parsing.
MAX_PARTS = 10_000

# RFC 2045 §5.2 default, also for a syntactically invalid Content-Type.
_TEXT_PLAIN = ("text", "plain", (("charset", "us-ascii"),))
# RFC 2046 §5.1.5: in a multipart/digest the default is message/rfc822.
_DIGEST_DEFAULT = ("message", "rfc822", ())

# Encapsulated messages are parsed only in an identity encoding (RFC 2046
# §5.2.1); an encoded one is an opaque leaf.
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})

_LINE_CHUNK = 1 << 20


def count_lines(data: Buffer, start: int, end: int) -> int:
    """Lines in data[start:end]: LF count, plus one for a last line without LF."""
    if end <= start:
        return 0
    if isinstance(data, (bytes, bytearray)):
        n = data.count(b"\n", start, end)
    else:  # mmap has no count(); count slice by slice
        n = sum(data[i:min(i + _LINE_CHUNK, end)].count(b"\n") for i in range(start, end, _LINE_CHUNK))
    return n + (data[end - 1] != 0x0A)


# After "--boundary": close marker, transport padding, then a line end or the end.
_TAIL = re.compile(rb"(--)?[ \t]*(?=\r?\n|\r?\Z)")
# False hits ("--boundaryX") tolerated before the search moves into one regex.
_MAX_FIND_MISSES = 64


class _Delimiters:
    """Boundary delimiter lines of one boundary (RFC 2046 §5.1.1).

    A delimiter line is ``--boundary``, optionally ``--`` (close delimiter),
    transport padding (SP/HT), and a line end -- or the end of the range.
    The CRLF (or bare LF) before it belongs to the delimiter.

    Lines are found with ``find`` and checked with one shared regex; compiling
    a regex per boundary costs more than parsing a small message, so that is
    only done for bodies full of near misses, where a Python loop would crawl.
    """

    def __init__(self, boundary: bytes) -> None:
        self.boundary = boundary
        self.dashed = b"--" + boundary
        self.needle = b"\n--" + boundary
        self.misses = 0
        self.regex: re.Pattern[bytes] | None = None

    def _next(self, data: Buffer, pos: int, end: int) -> tuple[int, int, bool] | None:
        """(line start, end of delimiter text, is close) of the next delimiter line after
        the LF at or after ``pos``."""
        if self.regex is None:
            skip = len(self.needle)
            while True:
                i = data.find(self.needle, pos, end)
                if i < 0:
                    return None
                m = _TAIL.match(data, i + skip, end)
                if m is not None:
                    return i + 1, m.end(), m.group(1) is not None
                self.misses += 1
                pos = i + 1
                if self.misses > _MAX_FIND_MISSES:
                    self.regex = re.compile(re.escape(self.needle) + _TAIL.pattern)
                    break
        m = self.regex.search(data, pos, end)
        return None if m is None else (m.start() + 1, m.end(), m.group(1) is not None)

    def _first(self, data: Buffer, start: int, end: int) -> tuple[int, int, bool] | None:
        if data[start:start + len(self.dashed)] == self.dashed:
            m = _TAIL.match(data, start + len(self.dashed), end)
            if m is not None:
                return start, m.end(), m.group(1) is not None
        return self._next(data, start, end)

    def split(self, data: Buffer, start: int, end: int, limit: int) -> list[tuple[int, int]]:
        """(start, end) of each body part between start and end; [] if there are none."""
        ranges: list[tuple[int, int]] = []
        content = -1  # start of the current part; -1 while in the preamble
        found = self._first(data, start, end)
        while found is not None:
            line_start, text_end, close = found
            if content >= 0:
                # The line end before the delimiter is the delimiter's.
                part_end = line_start
                if part_end > start and data[part_end - 1] == 0x0A:
                    part_end -= 1
                    if part_end > start and data[part_end - 1] == 0x0D:
                        part_end -= 1
                ranges.append((content, max(content, part_end)))
                if len(ranges) >= limit:
                    # Budget spent: the rest stays in the last part.
                    ranges[-1] = (content, end)
                    return ranges
            if close:  # the rest is epilogue
                return ranges
            content = _after_line_end(data, text_end, end)
            found = self._next(data, text_end, end)
        if content >= 0:
            ranges.append((content, end))  # no close delimiter
        return ranges


def _after_line_end(data: Buffer, pos: int, end: int) -> int:
    if pos < end and data[pos] == 0x0D:
        pos += 1
    if pos < end and data[pos] == 0x0A:
        pos += 1
    return pos


class StructureParser:
    """Parses one message into its root :class:`BodyPart` and envelope."""

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.count = 0

    def parse(self) -> tuple[BodyPart, HeaderFields]:
        return self.entity(0, len(self.data), _TEXT_PLAIN, 0)

    def entity(
        self, start: int, end: int, default: tuple[str, str, Params], depth: int
    ) -> tuple[BodyPart, HeaderFields]:
        """The entity (header block + body) in data[start:end], with its header fields."""
        self.count += 1
        data = self.data
        body_start, fields = read_header(data, start, end)
        content_type = fields.get("content-type")
        parsed = parse_content_type(content_type) if content_type is not None else default
        kind, sub, params = parsed if parsed is not None else _TEXT_PLAIN
        encoding = leading_value(fields.get("content-transfer-encoding") or "").lower() or "7bit"

        parts: tuple[BodyPart, ...] = ()
        envelope: Envelope | None = None
        can_nest = depth < MAX_DEPTH and self.count < MAX_PARTS
        if kind == "multipart" and can_nest:
            parts = self.multipart(body_start, end, fields, sub, params, depth)
        elif (kind, sub) in MESSAGE_TYPES and can_nest and encoding in _IDENTITY_ENCODINGS:
            inner, inner_fields = self.entity(body_start, end, _TEXT_PLAIN, depth + 1)
            parts = (inner,)
            envelope = build_envelope(inner_fields)

        lines = None
        if kind == "text" or (kind, sub) in MESSAGE_TYPES or (kind == "multipart" and not parts):
            lines = count_lines(data, body_start, end)

        disposition_value = fields.get("content-disposition")
        language = fields.get("content-language")
        part = BodyPart(
            type=kind,
            subtype=sub,
            params=params,
            id=fields.get("content-id"),
            description=fields.get("content-description"),
            encoding=encoding,
            disposition=None if disposition_value is None else parse_disposition(disposition_value),
            language=None if language is None else _languages(language),
            location=_no_space(fields.get("content-location")),
            md5=fields.get("content-md5"),
            header_start=start,
            header_end=body_start,
            body_end=end,
            lines=lines,
            parts=parts,
            envelope=envelope,
        )
        return part, fields

    def multipart(
        self, start: int, end: int, fields: HeaderFields, sub: str, params: Params, depth: int
    ) -> tuple[BodyPart, ...]:
        raw_type = fields.raw("content-type") or b""
        if not raw_type.isascii():
            # Parse the boundary from Latin-1 so that it maps back to the exact bytes.
            parsed = parse_content_type(raw_type.decode("latin-1"))
            params = parsed[2] if parsed else ()
        boundary = get_param(params, "boundary")
        if not boundary:
            return ()
        delimiters = _Delimiters(boundary.encode("latin-1"))
        ranges = delimiters.split(self.data, start, end, max(1, MAX_PARTS - self.count))
        child_default = _DIGEST_DEFAULT if sub == "digest" else _TEXT_PLAIN
        return tuple(self.entity(s, e, child_default, depth + 1)[0] for s, e in ranges)


def _languages(value: str) -> tuple[str, ...]:
    """Content-Language (RFC 3282): a comma-separated list of language tags."""
    return tuple(tag for tag in (t.strip() for t in value.split(",")) if tag)


def _no_space(value: str | None) -> str | None:
    """Content-Location (RFC 2557 §4.1): a folded URI; white space is not part of it."""
    return None if value is None else "".join(value.split())
