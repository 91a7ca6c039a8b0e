"""Header blocks: where they end, their fields, and how field values are decoded.

Works on the original bytes (``bytes``, ``bytearray`` or ``mmap``) between two
offsets and never looks past the end offset it is given.

A header block is a run of lines that are either a field (``name:``) or a
continuation line (starting with SP or HT), RFC 5322 §2.2 and §2.2.3. It ends
with the first empty line, which belongs to the block, or -- for messages
without a header/body separator -- at the first line that is neither, which
then belongs to the body (the same rule as the standard library's feedparser).
Bare LF line ends are accepted as well as CRLF.
"""

from __future__ import annotations

import re
from typing import Union
import mmap

Buffer = Union[bytes, bytearray, mmap.mmap]

# One header line: a field name (printable ASCII except ":"; RFC 5322 §3.6.8
# field-name, with obsolete WSP before the colon, RFC 5322 §4.5) or a
# continuation line. The last line may end at the end of the range.
_HEADER_LINES = re.compile(
    rb"(?:(?:[!-9;-~]+[ \t]*:|[ \t])[^\n]*(?:\n|\Z))*"
)
_EMPTY_LINE = re.compile(rb"\r?\n")

# A field inside an already delimited header block; group 2 keeps the folding.
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.MULTILINE)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")

# Fields beyond this many bytes of a header block are not interpreted (the
# block's offsets stay exact); a defence against messages that are all header.
MAX_HEADER_BYTES = 1 << 20


def header_end(data: Buffer, start: int, end: int) -> int:
    """Offset where the body starts: after the empty line ending the header block."""
    m = _HEADER_LINES.match(data, start, end)
    pos = m.end() if m else start
    blank = _EMPTY_LINE.match(data, pos, end)
    return blank.end() if blank else pos


class HeaderFields:
    """The fields of one header block, looked up case-insensitively.

    Values are kept as raw bytes with the folding removed (RFC 5322 §2.2.3:
    unfolding removes the CRLF, keeps the WSP) and the surrounding white space
    stripped. ``get`` returns the first occurrence, decoded with
    :func:`decode_value`.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, bytes]) -> None:
        self._raw = raw

    @classmethod
    def parse(cls, block: bytes) -> "HeaderFields":
        raw: dict[str, bytes] = {}
        for m in _FIELD.finditer(block, 0, MAX_HEADER_BYTES):
            name = m.group(1).decode("ascii").lower()
            if name not in raw:
                value = m.group(2)
                if b"\n" in value:
                    value = _FOLD.sub(b"", value)
                raw[name] = value.strip(b" \t\r\n")
        return cls(raw)

    def raw(self, name: str) -> bytes | None:
        return self._raw.get(name)

    def get(self, name: str) -> str | None:
        value = self._raw.get(name)
        return None if value is None else decode_value(value)

    def names(self) -> list[str]:
        return list(self._raw)


def decode_value(value: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else Latin-1.

    Deterministic and total; the result never holds lone surrogates, so it
    can be stored in any database and encoded as UTF-8 again.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def read_header(data: Buffer, start: int, end: int) -> tuple[int, HeaderFields]:
    """Parse the header block at ``start``; returns (body start, fields)."""
    body_start = header_end(data, start, end)
    block = bytes(data[start:min(body_start, start + MAX_HEADER_BYTES)])
    return body_start, HeaderFields.parse(block)
