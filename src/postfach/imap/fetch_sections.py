"""Where FETCH BODY[section] and BINARY[section] data lies in the stored bytes (no I/O).

The parse-once model (postfach.mime) has the offsets of every part, so a
section is a byte range of the message file: FETCH reads that range and
nothing else. Two cases need the bytes themselves, and only a bounded piece
of them: HEADER.FIELDS (.NOT) filter a header block, and BINARY decodes one
leaf part's content transfer encoding (RFC 3516).

RFC 9051 §6.4.5 (section rules):

- ``[]`` is the whole message; ``[HEADER]``, ``[TEXT]`` its header (with the
  blank line) and body. With part numbers, HEADER/TEXT/HEADER.FIELDS are only
  meaningful when the part is a message/rfc822 (or message/global): they then
  address the encapsulated message. Elsewhere they, and parts that do not
  exist, are answered with NIL.
- ``[n]`` is the body of part n; ``[n.MIME]`` its MIME header block.
- A partial ``<origin.octets>`` cuts the result; an origin past its end gives
  the empty string.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from postfach.imap.fetch_items import Section
from postfach.mime.model import BodyPart
from postfach.mime.text import decode_transfer

# RFC 2045 §6.1 encodings; anything else is unknown to BINARY (RFC 3516 §4.3: [UNKNOWN-CTE]).
IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
DECODED_ENCODINGS = frozenset({"base64", "quoted-printable"})


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes start..end of the message file, sent as they are."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def cut(self, partial: tuple[int, int] | None) -> Span:
        if partial is None:
            return self
        origin, octets = partial
        start = min(self.start + origin, self.end)
        return Span(start, min(self.end, start + octets))


@dataclass(frozen=True, slots=True)
class HeaderSubset:
    """A header block (start..end) filtered to (or without, ``exclude``) some field names."""

    start: int
    end: int
    names: frozenset[str]
    exclude: bool


@dataclass(frozen=True, slots=True)
class Decoded:
    """A leaf part's body (start..end) with its transfer encoding undone (BINARY)."""

    start: int
    end: int
    encoding: str


class UnknownEncoding(Exception):
    """BINARY of a part whose Content-Transfer-Encoding we cannot undo."""


Location = Span | HeaderSubset | Decoded


def locate(root: BodyPart, size: int, section: Section) -> Location | None:
    """Where BODY[section] lies in a message of ``size`` bytes; None for NIL."""
    if not section.part:
        if section.text is None:
            return Span(0, size)
        return _message_text(root, section)
    part = root.part(section.part)
    if part is None:
        return None
    if section.text is None:
        return Span(part.header_end, part.body_end)
    if section.text == "MIME":
        return Span(part.header_start, part.header_end)
    if not part.is_message:
        return None
    return _message_text(part.parts[0], section)


def _message_text(message: BodyPart, section: Section) -> Location:
    if section.text == "HEADER":
        return Span(message.header_start, message.header_end)
    if section.text == "TEXT":
        return Span(message.header_end, message.body_end)
    names = frozenset(name.casefold() for name in section.fields)
    return HeaderSubset(message.header_start, message.header_end, names, section.text == "HEADER.FIELDS.NOT")


def locate_binary(root: BodyPart, size: int, part_numbers: tuple[int, ...]) -> Location | None:
    """Where BINARY[part] lies; raises UnknownEncoding for an encoding we cannot undo."""
    if not part_numbers:
        return Span(0, size)
    part = root.part(part_numbers)
    if part is None:
        return None
    encoding = part.encoding.lower()
    if part.is_multipart or part.is_message or encoding in IDENTITY_ENCODINGS:
        return Span(part.header_end, part.body_end)
    if encoding in DECODED_ENCODINGS:
        return Decoded(part.header_end, part.body_end, encoding)
    raise UnknownEncoding(part.encoding)


def decode(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return decode_transfer(data, "base64")
    return binascii.a2b_qp(data)


def filter_header(block: bytes, names: frozenset[str], exclude: bool) -> bytes:
    """The fields of a header block whose names are (not) in ``names``, then the blank line.

    RFC 3501 §6.4.5: matching is case-insensitive; the blank line between header
    and body is included in all header fetches, unless the message has none.
    """
    kept: list[bytes] = []
    keep = False
    blank = b""
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            blank = line
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        name, colon, _ = line.partition(b":")
        matched = bool(colon) and name.strip().decode("latin-1").casefold() in names
        keep = matched != exclude
        if keep:
            kept.append(line)
    return b"".join(kept) + blank


def cut(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, octets = partial
    return data[origin:origin + octets]
