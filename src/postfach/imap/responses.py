"""Server responses to bytes (RFC 9051 §7, formal syntax §9).

Values are encoded by type, so a caller cannot send a string as an atom by
mistake:

- ``None`` is NIL, ``int`` a number, ``Atom`` verbatim text (flags, keywords,
  capability names), ``Raw`` verbatim bytes (already encoded, e.g. an
  ENVELOPE), ``Literal`` always a literal (``~{n}`` when ``binary``);
- ``str``/``bytes`` are strings: quoted when that is possible, else a literal
  -- for CR, LF or NUL, and for 8-bit text unless the session is in UTF-8
  mode (RFC 6855 §3, RFC 9051: quoted UTF-8 is then allowed);
- ``list``/``tuple`` are parenthesised lists, items separated by one space.

Every function that writes strings takes ``utf8``: True once the client has
enabled UTF8=ACCEPT or IMAP4rev2.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postfach.imap import mutf7

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_QUOTABLE_ASCII = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_QUOTABLE_UTF8 = re.compile(rb"[^\x00\r\n]*\Z")
_CRLF_IN_TEXT = re.compile(r"[\r\n\x00]+")


class Atom(str):
    """Sent as is: flag names, keywords, capability names, status item names."""


class Raw(bytes):
    """Bytes that are already IMAP syntax."""


@dataclass(frozen=True, slots=True)
class Literal:
    """Always sent as a literal; ``binary`` makes it a literal8 (RFC 3516 §4.3)."""

    data: bytes
    binary: bool = False


def literal_prefix(size: int, binary: bool = False) -> bytes:
    """The ``{n}\\r\\n`` before a literal the caller streams itself."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % size


def string(value: str | bytes, utf8: bool = False) -> bytes:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    if (_QUOTABLE_UTF8 if utf8 else _QUOTABLE_ASCII).match(data) and len(data) < 4096:
        if utf8 and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:  # only valid UTF-8 may be quoted (RFC 9051 QUOTED-CHAR)
                return literal_prefix(len(data)) + data
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal_prefix(len(data)) + data


def nstring(value: str | bytes | None, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else string(value, utf8)


def encode(value: Any, utf8: bool = False) -> bytes:
    """One response value by the rules in the module docstring."""
    if value is None:
        return b"NIL"
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Atom):
        return value.encode("ascii")
    if isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (str, bytes, bytearray)):
        return string(value, utf8)
    if isinstance(value, Literal):
        return literal_prefix(len(value.data), value.binary) + value.data
    if isinstance(value, (list, tuple)):
        return b"(" + b" ".join(encode(v, utf8) for v in value) + b")"
    raise TypeError(f"no IMAP form for {type(value).__name__}")


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as a string: UTF-8 in UTF-8 mode, else modified UTF-7 (RFC 3501 §5.1.3)."""
    if name.upper() == "INBOX":
        return b'"INBOX"'
    return string(name.encode("utf-8") if utf8 else mutf7.encode(name), utf8)


def _text(text: str) -> bytes:
    # resp-text is one line of TEXT-CHAR: no CR/LF/NUL may leak in.
    return _CRLF_IN_TEXT.sub(" ", text).encode("utf-8")


def _code(code: str | None) -> bytes:
    return b"" if not code else b"[" + _text(code) + b"] "


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK|NO|BAD [code] text``; the code is pre-formatted, e.g. "APPENDUID 38505 3955"."""
    return tag.encode("ascii") + b" " + status.encode("ascii") + b" " + _code(code) + _text(text) + b"\r\n"


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``."""
    return b"* " + status.encode("ascii") + b" " + _code(code) + _text(text) + b"\r\n"


def untagged(*values: Any, utf8: bool = False) -> bytes:
    """``* v1 v2 ...``, e.g. ``untagged(3, Atom("EXISTS"))``."""
    return b"* " + b" ".join(encode(v, utf8) for v in values) + b"\r\n"


def continuation(text: str = "") -> bytes:
    return b"+ " + _text(text) + b"\r\n" if text else b"+ \r\n"


def continuation_data(data: bytes) -> bytes:
    """A SASL challenge: ``+ base64``."""
    return b"+ " + base64.b64encode(data) + b"\r\n"


def format_internaldate(when: datetime) -> str:
    """RFC 9051 date-time without the quotes: " 7-Jul-1996 02:44:25 -0700"."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.day:2d}-{MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def flag_list(names: Iterable[str]) -> Raw:
    return Raw(b"(" + " ".join(names).encode("ascii") + b")")


def fetch(number: int, items: Iterable[tuple[str, Any]], utf8: bool = False) -> bytes:
    """``* n FETCH (LABEL value ...)``; labels from ``FetchAttr.label()`` or item names.

    Values go through ``encode``: FLAGS as ``flag_list``, INTERNALDATE as its
    string, ENVELOPE/BODYSTRUCTURE as ``Raw`` from ``bodystructure``,
    section data as ``Literal`` (or None for NIL).
    """
    body = b" ".join(label.encode("ascii") + b" " + encode(value, utf8) for label, value in items)
    return b"* %d FETCH (" % number + body + b")\r\n"


def capability(names: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(names).encode("ascii") + b"\r\n"


def list_response(
    attributes: Iterable[str], delimiter: str | None, name: str, utf8: bool = False,
    extended: Iterable[Any] = (), command: str = "LIST",
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" "INBOX"`` with optional RFC 5258 extended items."""
    out = (b"* " + command.encode("ascii") + b" " + flag_list(attributes) + b" "
           + nstring(delimiter) + b" " + mailbox(name, utf8))
    extra = list(extended)
    if extra:
        out += b" " + encode(extra, utf8)
    return out + b"\r\n"


def status_response(name: str, items: Iterable[tuple[str, int | str]], utf8: bool = False) -> bytes:
    """``* STATUS "name" (MESSAGES 3 UIDNEXT 4)``; MAILBOXID values are sent in parentheses."""
    parts = []
    for key, value in items:
        encoded = b"(" + str(value).encode("ascii") + b")" if key == "MAILBOXID" else b"%d" % int(value)
        parts.append(key.encode("ascii") + b" " + encoded)
    return b"* STATUS " + mailbox(name, utf8) + b" (" + b" ".join(parts) + b")\r\n"


def search_response(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SEARCH 2 3 5`` (RFC 7162 §3.1.5: ``(MODSEQ n)`` appended when asked for)."""
    # One join: adding to a bytes object per number copies it each time (100,000 hits took 8 s);
    # str of each number in C, not a format per number.
    listed = " ".join(map(str, numbers)).encode("ascii")
    out = b"* SEARCH " + listed if listed else b"* SEARCH"
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def esearch_response(tag: str, uid: bool, results: Iterable[tuple[str, int | str]]) -> bytes:
    """``* ESEARCH (TAG "a1") UID MIN 2 COUNT 5`` (RFC 4731 §3); ALL takes a set as text."""
    out = b'* ESEARCH (TAG ' + string(tag) + b")" + (b" UID" if uid else b"")
    for key, value in results:
        out += b" " + key.encode("ascii") + b" " + str(value).encode("ascii")
    return out + b"\r\n"
