"""The grammar's view of one framed command: line text with literals between.

The parser frames a command into line segments (without CRLF and without
the ``{n}`` marker that ended them) and the literals that followed those
markers; ``Reader`` reads grammar tokens across them. A literal is read by
``string``/``astring`` when the reader stands at the end of a segment that a
literal follows. A literal still to come is ``PENDING``: reading it raises
``NeedLiteral`` -- that is how the parser checks, before it asks the client
for a literal, that everything before it was valid (RFC 9051 §4.3: the
server answers a bad command before the client sends the literal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postfach.imap import mutf7


class ParseError(Exception):
    """The client's command does not follow the grammar; the text goes into BAD."""


class NeedLiteral(Exception):
    """The grammar reached a literal that has not arrived yet: the prefix is valid."""


@dataclass(slots=True)
class Lit:
    """One literal. ``data`` is None while pending, or for a streamed APPEND message."""

    size: int
    binary: bool
    data: bytes | None = None
    pending: bool = False
    streamed: bool = False


class MessageLiteral(Exception):
    """APPEND reached its message literal while it is pending: stream it."""


_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_ASTRING = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
_LIST_MAILBOX = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")
_NUMBER = re.compile(rb"[0-9]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')


class Reader:
    def __init__(self, lines: list[bytes], lits: list[Lit], utf8: bool = False) -> None:
        self.lines = lines
        self.lits = lits
        self.utf8 = utf8
        self.i = 0
        self.pos = 0

    # --- positions ------------------------------------------------------

    @property
    def line(self) -> bytes:
        return self.lines[self.i]

    def peek(self) -> int | None:
        line = self.lines[self.i]
        return line[self.pos] if self.pos < len(line) else None

    def at_literal(self) -> bool:
        return self.pos == len(self.lines[self.i]) and self.i < len(self.lits)

    def at_end(self) -> bool:
        return self.pos == len(self.lines[self.i]) and self.i == len(self.lits)

    def error(self, text: str) -> ParseError:
        return ParseError(text)

    def end(self) -> None:
        if not self.at_end():
            if self.at_literal():
                raise self.error("unexpected literal")
            raise self.error(f"unexpected text: {self._here()!r}")

    def _here(self) -> str:
        return self.line[self.pos:self.pos + 20].decode("latin-1")

    def match(self, regex: re.Pattern[bytes]) -> re.Match[bytes] | None:
        m = regex.match(self.lines[self.i], self.pos)
        if m is not None:
            self.pos = m.end()
        return m

    def accept(self, text: bytes) -> bool:
        line = self.lines[self.i]
        if line[self.pos:self.pos + len(text)].upper() == text:
            self.pos += len(text)
            return True
        return False

    def expect(self, text: bytes, what: str | None = None) -> None:
        if not self.accept(text):
            raise self.error(f"expected {what or text.decode()}")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("expected a space" if not self.at_end() else "missing argument")
        self.pos += 1

    def accept_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    # --- tokens ---------------------------------------------------------

    def atom(self, what: str = "atom") -> bytes:
        m = self.match(_ATOM)
        if m is None:
            raise self.error(f"expected {what}")
        return m.group()

    def word(self, what: str = "atom") -> str:
        """An atom, upper case."""
        return self.atom(what).decode("ascii").upper()

    def number(self, what: str = "number", limit: int = 0xFFFFFFFF) -> int:
        m = self.match(_NUMBER)
        if m is None:
            raise self.error(f"expected {what}")
        if len(m.group()) > 20 or int(m.group()) > limit:
            raise self.error(f"{what} too large")
        return int(m.group())

    def nz_number(self, what: str = "number") -> int:
        value = self.number(what)
        if value == 0:
            raise self.error(f"{what} must not be 0")
        return value

    def mod_sequence(self, zero: bool = False) -> int:
        # RFC 7162 §7: mod-sequence-value is 1*DIGIT up to 2^63-1
        value = self.number("mod-sequence", limit=0x7FFFFFFFFFFFFFFF)
        if value == 0 and not zero:
            raise self.error("mod-sequence must not be 0")
        return value

    def literal(self, binary_ok: bool = False) -> bytes:
        lit = self.lits[self.i]
        if lit.binary and not binary_ok:
            raise self.error("literal8 is only allowed for the APPEND message")
        if lit.pending:
            raise NeedLiteral()
        if lit.data is None:
            raise self.error("unexpected message literal")
        if b"\x00" in lit.data:  # RFC 9051 §4.3: CHAR8 excludes NUL
            raise self.error("NUL in literal")
        self.i += 1
        self.pos = 0
        return lit.data

    def message_literal(self) -> Lit:
        """The APPEND message literal: pending (raise), or streamed/collected."""
        if not self.at_literal():
            raise self.error("expected a literal with the message")
        lit = self.lits[self.i]
        if lit.pending:
            raise MessageLiteral()
        self.i += 1
        self.pos = 0
        return lit

    def quoted(self) -> bytes:
        m = self.match(_QUOTED)
        if m is None:
            raise self.error("unterminated or invalid quoted string")
        value = m.group(1)
        # 8-bit text in quoted strings is UTF-8 (RFC 9051 QUOTED-CHAR); accepted
        # in both modes, as clients send it in SEARCH before enabling anything.
        return _UNESCAPE.sub(rb"\1", value) if b"\\" in value else value

    def string(self) -> bytes:
        if self.at_literal():
            return self.literal()
        if self.peek() == 0x22:
            return self.quoted()
        raise self.error("expected a string")

    def astring(self, what: str = "string") -> bytes:
        if self.at_literal():
            return self.literal()
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        m = self.match(_ASTRING)
        if m is None:
            # RFC 6855 §3 / RFC 9051: UTF-8 in atoms is not allowed, but say so clearly
            raise self.error(f"expected {what}")
        return m.group()

    def nstring(self) -> bytes | None:
        if self.accept(b"NIL"):
            return None
        return self.string()

    def text(self, raw: bytes) -> str:
        return raw.decode("utf-8", "replace")

    def astring_text(self, what: str = "string") -> str:
        return self.text(self.astring(what))

    # --- mailbox names --------------------------------------------------

    def mailbox_name(self, raw: bytes) -> str:
        if raw.upper() == b"INBOX":
            return "INBOX"
        if self.utf8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error("mailbox name is not valid UTF-8") from None
        try:
            return mutf7.decode(raw)
        except mutf7.MUTF7Error as exc:
            raise self.error(f"mailbox name is not modified UTF-7: {exc}") from None

    def mailbox(self) -> str:
        return self.mailbox_name(self.astring("mailbox name"))

    def list_mailbox(self) -> str:
        """RFC 9051 list-mailbox: 1*list-char / string (wildcards % and * allowed)."""
        if self.at_literal() or self.peek() == 0x22:
            raw = self.string()
        else:
            m = self.match(_LIST_MAILBOX)
            if m is None:
                raise self.error("expected mailbox pattern")
            raw = m.group()
        if raw.upper() == b"INBOX":
            return "INBOX"
        return self.mailbox_name(raw) if raw else ""

    # --- lists ----------------------------------------------------------

    def paren_list(self, item, allow_empty: bool = True) -> list:  # type: ignore[no-untyped-def]
        """ "(" [item *(SP item)] ")" with ``item`` a callable reading one element."""
        self.expect(b"(")
        out = []
        if self.accept(b")"):
            if not allow_empty:
                raise self.error("empty list")
            return out
        while True:
            out.append(item())
            if self.accept(b")"):
                return out
            self.sp()

    def flag(self) -> str:
        if self.accept(b"\\"):
            if self.accept(b"*"):
                raise self.error("\\* is not a flag")
            return "\\" + self.atom("flag").decode("ascii")
        return self.atom("flag").decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.paren_list(self.flag))
