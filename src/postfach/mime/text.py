"""Readable text from a parsed message: the PREVIEW (RFC 8970) and the full-text search text.

Bodies are decoded here and only here, and only as much of them as is needed:
a bounded prefix of the raw body for the preview, at most ``MAX_PART_TEXT``
characters per part for search.
"""

from __future__ import annotations

import binascii
import codecs
import email.header
import html
import re
from typing import Iterator

from postfach.mime.headers import Buffer, HeaderFields
from postfach.mime.model import BodyPart
from postfach.mime.params import get_param

PREVIEW_CHARS = 200  # RFC 8970 §3: at most 200 characters
# Raw body bytes looked at for a preview, tried in turn until there is enough
# text: HTML may need more to get past a large <head>.
_PREVIEW_RAW = {"plain": (2 * 1024, 16 * 1024), "html": (16 * 1024, 64 * 1024, 256 * 1024)}
MAX_PART_TEXT = 1_000_000  # characters of search text per part
_MAX_PART_RAW = 4 * MAX_PART_TEXT  # base64 of 3 MB, or quoted-printable expansion

# Header fields whose decoded values go into the search text.
SEARCH_HEADERS = ("subject", "from", "sender", "reply-to", "to", "cc", "bcc")

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)  # "=" too
# One pass over the markup: comments and invisible elements, else any tag.
_MARKUP = re.compile(
    r"<!--.*?(?:-->|\Z)|<(script|style|head|title)\b.*?(?:</\1\s*>|\Z)|<(/?[a-zA-Z0-9]*)[^>]*>?",
    re.IGNORECASE | re.DOTALL,
)
# Tags that separate words when rendered.
_BLOCK_TAGS = frozenset(
    "p div br li ul ol tr td th table h1 h2 h3 h4 h5 h6 blockquote pre hr section article".split()
)


def decode_transfer(raw: bytes, encoding: str, truncated: bool = False) -> bytes:
    """Undo Content-Transfer-Encoding (RFC 2045 §6); unknown encodings pass through."""
    if encoding == "base64":
        # Padding is dropped and redone: real mail has it missing or misplaced.
        clean = raw.translate(None, _NOT_BASE64)
        rest = len(clean) % 4
        if truncated or rest == 1:
            clean = clean[: len(clean) - rest]
        elif rest:
            clean += b"=" * (4 - rest)
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:
            return b""
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


def decode_charset(raw: bytes, charset: str | None, truncated: bool = False) -> str:
    """Bytes as text in the declared charset; undeclared, ASCII or unknown: UTF-8, else cp1252."""
    name = (charset or "").strip().lower()
    if name in ("", "us-ascii", "ascii", "utf-8", "utf8") or not _known(name):
        try:
            return codecs.getincrementaldecoder("utf-8")("strict").decode(raw, final=not truncated)
        except UnicodeDecodeError:
            name = "cp1252"
    decoder = codecs.getincrementaldecoder(name)("replace")
    try:
        return decoder.decode(raw, final=not truncated)
    except Exception:  # a codec that fails despite errors="replace"
        return raw.decode("latin-1")


def _known(name: str) -> bool:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return False
    # Only text encodings: "base64", "rot13" and friends are codecs too.
    return getattr(info, "_is_text_encoding", True)


def strip_html(text: str) -> str:
    return html.unescape(_MARKUP.sub(_replace_markup, text))


def _replace_markup(m: re.Match[str]) -> str:
    tag = m.group(2)
    if tag is None or tag.lstrip("/").lower() in _BLOCK_TAGS:
        return " "
    return ""


def part_text(data: Buffer, part: BodyPart, limit: int) -> str:
    """The decoded text of a text/* leaf, from at most ``limit`` raw body bytes."""
    end = min(part.body_end, part.header_end + limit)
    truncated = end < part.body_end
    raw = decode_transfer(bytes(data[part.header_end:end]), part.encoding, truncated)
    text = decode_charset(raw, part.param("charset"), truncated)
    return strip_html(text) if part.subtype == "html" else text


def _leaves(part: BodyPart, into_messages: bool) -> Iterator[BodyPart]:
    if part.parts:
        if part.is_message and not into_messages:
            return
        for child in part.parts:
            yield from _leaves(child, into_messages)
    else:
        yield part


def _is_attachment(part: BodyPart) -> bool:
    return part.disposition is not None and part.disposition[0] == "attachment"


def preview(data: Buffer, root: BodyPart) -> str:
    """RFC 8970 PREVIEW: first text/plain part, else first text/html, whitespace collapsed."""
    candidates = [
        p for p in _leaves(root, into_messages=False)
        if p.type == "text" and p.subtype in ("plain", "html") and not _is_attachment(p)
    ]
    for subtype in ("plain", "html"):
        for p in candidates:
            if p.subtype == subtype:
                for limit in _PREVIEW_RAW[subtype]:
                    # Cut before collapsing so a huge text is not split in full.
                    text = part_text(data, p, limit)[: PREVIEW_CHARS * 50]
                    text = " ".join(text.split())
                    if len(text) >= PREVIEW_CHARS or p.header_end + limit >= p.body_end:
                        break
                return text[:PREVIEW_CHARS].rstrip()
    return ""


def decode_header_text(value: str) -> str:
    """RFC 2047 encoded-words decoded; the rest as is. Never raises."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # malformed encoded-words or unknown charsets: keep as written
        return value


def _filename(part: BodyPart) -> str | None:
    params = (part.disposition[1] if part.disposition else ()) + part.params
    for key in ("filename", "name"):
        value = get_param(params, key)
        if value:
            return decode_header_text(value)
    return None


def search_text(data: Buffer, root: BodyPart, fields: HeaderFields) -> str:
    """Decoded header text, attachment names and decoded text parts, one block per line."""
    out: list[str] = []
    for name in SEARCH_HEADERS:
        value = fields.get(name)
        if value:
            out.append(decode_header_text(value))
    _collect(data, root, out)
    return "\n".join(out)


def _collect(data: Buffer, part: BodyPart, out: list[str]) -> None:
    if part.envelope is not None:
        env = part.envelope
        if env.subject:
            out.append(decode_header_text(env.subject))
        for addresses in (env.from_, env.to, env.cc):
            for a in addresses:
                words = [decode_header_text(a.name) if a.name else "", a.mailbox or ""]
                if a.host:
                    words[1] += "@" + a.host
                out.append(" ".join(w for w in words if w))
    for child in part.parts:
        _collect(data, child, out)
    if part.parts:
        return
    name = _filename(part)
    if name:
        out.append(name)
    if part.type == "text":
        out.append(part_text(data, part, _MAX_PART_RAW)[:MAX_PART_TEXT])
