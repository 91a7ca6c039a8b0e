"""Parse a message once, at delivery, so that IMAP FETCH never parses it again.

    parsed = parse_message(data)             # bytes | bytearray | memoryview | mmap
    row = parsed.to_json()                   # stored with the message blob
    parsed == ParsedMessage.from_json(row)
    part = parsed.part((2, 1))               # IMAP section 2.1, or None
    data[part.header_end:part.body_end]      # BODY[2.1], byte-exact

Invariants:

- ``parse_message`` never raises and never loops, whatever the bytes.
- Every offset refers to the original bytes, which are never rewritten:
  ``0 <= header_start <= header_end <= body_end <= len(data)`` for every
  part, and every child lies inside its parent's body.
- Multipart bodies are split per RFC 2046 §5.1.1: the line end before a
  delimiter belongs to the delimiter; preamble and epilogue are no parts.
  CRLF and bare LF line ends are both accepted.
- Nothing is decoded to build the structure; bodies are decoded only for the
  preview (a bounded prefix) and for ``search_text`` (at most about 1 MB per
  part).
- Header text is UTF-8 when valid, else Latin-1: deterministic, and never a
  lone surrogate, so every string can be stored as UTF-8.

Modules: ``headers`` (header blocks), ``params`` (Content-Type parameters),
``addresses`` (address lists to envelope addresses), ``envelope``,
``structure`` (the tree and its offsets), ``text`` (preview, search text),
``model`` (the frozen result types and their JSON form).
"""

from __future__ import annotations

import logging
import mmap
from typing import Union

from postfach.mime import text as _text
from postfach.mime.envelope import build_envelope
from postfach.mime.headers import read_header
from postfach.mime.model import BodyPart, Envelope, EnvelopeAddress, ParsedMessage
from postfach.mime.structure import StructureParser, count_lines

__all__ = [
    "BodyPart",
    "Envelope",
    "EnvelopeAddress",
    "ParsedMessage",
    "parse_message",
    "search_text",
]

MessageData = Union[bytes, bytearray, memoryview, mmap.mmap]

_log = logging.getLogger(__name__)


def _buffer(data: MessageData) -> bytes | bytearray | mmap.mmap:
    # memoryview has neither find() nor count(); one copy is cheaper than
    # working around that everywhere.
    return data.tobytes() if isinstance(data, memoryview) else data


def parse_message(data: MessageData) -> ParsedMessage:
    """Envelope, body structure with offsets, and preview of one message."""
    buf = _buffer(data)
    try:
        root, fields = StructureParser(buf).parse()
        return ParsedMessage(build_envelope(fields), root, _text.preview(buf, root))
    except Exception:  # a bug of ours; the message must still be deliverable
        _log.exception("MIME parse failed; storing the message as one text part")
        return ParsedMessage(Envelope(), _opaque(buf), "")


def _opaque(buf: bytes | bytearray | mmap.mmap) -> BodyPart:
    n = len(buf)
    return BodyPart(
        type="text", subtype="plain", params=(("charset", "us-ascii"),), id=None,
        description=None, encoding="7bit", disposition=None, language=None, location=None,
        md5=None, header_start=0, header_end=0, body_end=n, lines=count_lines(buf, 0, n),
    )


def search_text(data: MessageData, parsed: ParsedMessage) -> str:
    """Text to index for full-text search: decoded headers, file names, decoded text parts."""
    buf = _buffer(data)
    try:
        _, fields = read_header(buf, 0, parsed.structure.header_end)
        return _text.search_text(buf, parsed.structure, fields)
    except Exception:
        _log.exception("search text extraction failed")
        return ""
