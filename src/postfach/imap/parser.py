"""IMAP command parser without I/O: bytes in, typed events out (h11 style).

    parser = Parser()
    parser.feed(data)
    while (event := parser.next_event()) is not NEED_DATA:
        ...  # a Command, Continuation, LiteralChunk, CommandError, SaslResponse, IdleDone

Framing (RFC 9051 §2.2, §4.3): a command is line segments separated by
literals; a segment ending in ``{n}`` (synchronizing), ``{n+}``
(non-synchronizing, RFC 7888) or ``~{n}`` (literal8, RFC 3516) is followed by
n octets of literal data. Lines end in CRLF; a bare LF is tolerated.

Literals:

- Before a literal is read, the command so far is checked against the
  grammar; if it is already wrong, the error comes at once. For a
  synchronizing literal the client then never sends the data; for a
  non-synchronizing one the parser skips the n octets it will send.
- A valid synchronizing literal gives ``Continuation``; the caller must call
  ``accept_literal()`` (and send "+ ...") or ``reject_literal()`` (and send a
  tagged NO/BAD, e.g. ``NO [TOOBIG]`` for APPEND over APPENDLIMIT, RFC 7889;
  the client then abandons the command).
- The APPEND message literal is streamed: ``LiteralChunk`` events carry its
  bytes as they arrive, then the ``Append`` command (or a ``CommandError``
  with the same tag: drop what was spooled). All other literals are small:
  collected, at most ``max_literal`` octets per command.

Errors never raise: a client's mistake is a ``CommandError`` (answer BAD) and
the parser resynchronises at the start of the next command, skipping the
data of any non-synchronizing literal the bad command announced, even in an
over-long line. ``ParserStateError`` is raised only for a caller's misuse.
"""

from __future__ import annotations

import binascii
import enum
import re
from dataclasses import dataclass

from postfach.imap import grammar
from postfach.imap.commands import Command
from postfach.imap.reader import Lit, MessageLiteral, NeedLiteral, ParseError, Reader

__all__ = [
    "NEED_DATA", "CommandError", "Continuation", "ErrorKind", "Event", "IdleDone",
    "LiteralChunk", "NeedData", "Parser", "ParserStateError", "SaslResponse",
]

# RFC 7888 §5: LITERAL- allows non-synchronizing literals of at most 4096 octets.
LITERAL_MINUS_MAX = 4096
# Literals in one command; each is preceded by a check of the command so far.
MAX_LITERALS = 100

_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
_HEAD = re.compile(rb"([^\x00-\x20\x7f-\xff(){%*\"\\+]+) ([A-Za-z]+)(?: ([A-Za-z]+))?")
# Enough of a discarded line's end to see a literal marker in it.
_TAIL_KEEP = 32


class NeedData:
    """Nothing more can be parsed until more bytes are fed."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


class ErrorKind(enum.StrEnum):
    SYNTAX = "syntax"
    UNKNOWN_COMMAND = "unknown-command"
    LINE_TOO_LONG = "line-too-long"
    LITERAL_TOO_BIG = "literal-too-big"  # answer BAD [TOOBIG]


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command the client got wrong: answer ``tag BAD text`` (``* BAD`` when tag is None)."""

    tag: str | None
    kind: ErrorKind
    text: str


@dataclass(frozen=True, slots=True)
class Continuation:
    """A synchronizing literal of ``size`` octets is announced in ``command`` (e.g. "APPEND").

    Call ``accept_literal()`` and send "+ ...", or ``reject_literal()`` and
    send a tagged NO/BAD. ``message`` is True for the APPEND message literal.
    """

    tag: str
    command: str
    size: int
    binary: bool
    message: bool


@dataclass(frozen=True, slots=True)
class LiteralChunk:
    """Part of the APPEND message literal; ``final`` on the last one (none for size 0)."""

    tag: str
    data: bytes
    size: int
    final: bool


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """One client line of an AUTHENTICATE exchange, decoded; None when the client sent "*"."""

    data: bytes | None


@dataclass(frozen=True, slots=True)
class IdleDone:
    tag: str


Event = Command | NeedData | Continuation | LiteralChunk | CommandError | SaslResponse | IdleDone


class ParserStateError(RuntimeError):
    """The caller used the parser wrongly (a bug in the session, not the client)."""


class _S(enum.Enum):
    LINE = 1
    WAIT = 2       # Continuation sent, awaiting accept/reject
    COLLECT = 3    # small literal
    STREAM = 4     # APPEND message literal
    SKIP = 5       # literal data of a failed command
    DISCARD = 6    # rest of a failed command's line
    SASL = 7
    IDLE = 8


class Parser:
    def __init__(
        self,
        max_line: int = 64 * 1024,
        max_literal: int = 64 * 1024,
        literal_minus: bool = False,
        utf8: bool = False,
    ) -> None:
        """``max_line``: octets of command text per command, literals excluded.
        ``max_literal``: octets of small (non-APPEND) literals per command.
        ``literal_minus``: the server advertises LITERAL- rather than LITERAL+.
        ``utf8``: mailbox names are UTF-8 (UTF8=ACCEPT or IMAP4rev2 enabled)."""
        self.max_line = max_line
        self.max_literal = max_literal
        self.literal_minus = literal_minus
        self.utf8 = utf8
        self._buf = bytearray()
        self._scan = 0
        self._state = _S.LINE
        self._special_tag = ""
        self._remaining = 0
        self._tail = b""
        self._reset_command()

    # --- caller interface ----------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event:
        while True:
            event = self._step()
            if event is not None:
                return event

    @property
    def inside_command(self) -> bool:
        """A command with a literal has begun and is not complete: the client is sending the
        literal, or the rest of the line after it."""
        return self._state in (_S.COLLECT, _S.STREAM, _S.SKIP) or (self._state is _S.LINE and bool(self._lines))

    def accept_literal(self) -> None:
        if self._state is not _S.WAIT:
            raise ParserStateError("no literal is waiting for a decision")
        self._state = _S.STREAM if self._pending_message else _S.COLLECT

    def reject_literal(self) -> None:
        if self._state is not _S.WAIT:
            raise ParserStateError("no literal is waiting for a decision")
        # The client sends nothing more of this command (RFC 9051 §7.5).
        self._reset_command()
        self._state = _S.LINE

    def expect_sasl_response(self, tag: str) -> None:
        """The next line is the client's answer to an AUTHENTICATE challenge (RFC 9051 §6.2.2)."""
        self._require_idle_line("expect_sasl_response")
        self._special_tag = tag
        self._state = _S.SASL

    def expect_idle_done(self, tag: str) -> None:
        """The next line must be DONE (RFC 2177); call after sending "+ idling"."""
        self._require_idle_line("expect_idle_done")
        self._special_tag = tag
        self._state = _S.IDLE

    def take_buffered(self) -> bytes:
        """Bytes received but not yet parsed, removed from the parser.

        After STARTTLS the server must throw these away (RFC 9051 §6.2.1,
        command injection); after COMPRESS they are compressed data.
        """
        self._require_idle_line("take_buffered")
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    def _require_idle_line(self, what: str) -> None:
        if self._state is not _S.LINE or self._lines:
            raise ParserStateError(f"{what}() only between commands")

    # --- command state ----------------------------------------------------------

    def _reset_command(self) -> None:
        self._lines: list[bytes] = []
        self._lits: list[Lit] = []
        self._line_total = 0
        self._lit_total = 0
        self._tag: str | None = None
        self._name = ""
        self._pending_size = 0
        self._pending_binary = False
        self._pending_message = False

    def _fail(self, kind: ErrorKind, text: str, skip: int | None = None) -> CommandError:
        """End the current command with an error; ``skip`` octets of literal data follow."""
        error = CommandError(self._tag, kind, text)
        self._reset_command()
        if skip is None:
            self._state = _S.LINE
        else:
            self._remaining = skip
            self._state = _S.SKIP
        return error

    # --- the state machine --------------------------------------------------------

    def _step(self) -> Event | None:
        state = self._state
        if state is _S.LINE:
            return self._step_line()
        if state is _S.COLLECT:
            if len(self._buf) < self._pending_size:
                return NEED_DATA
            data = bytes(self._buf[:self._pending_size])
            del self._buf[:self._pending_size]
            self._scan = 0
            self._lits.append(Lit(len(data), self._pending_binary, data))
            self._state = _S.LINE
            return None
        if state is _S.STREAM:
            return self._step_stream()
        if state is _S.SKIP:
            n = min(self._remaining, len(self._buf))
            del self._buf[:n]
            self._scan = 0
            self._remaining -= n
            if self._remaining:
                return NEED_DATA
            self._tail = b""
            self._state = _S.DISCARD
            return None
        if state is _S.DISCARD:
            return self._step_discard()
        if state in (_S.SASL, _S.IDLE):
            return self._step_special()
        raise ParserStateError("a literal is waiting: call accept_literal() or reject_literal()")

    def _take_line(self, limit: int) -> bytes | None | CommandError:
        """The next line without its line end; None when incomplete; an error when too long."""
        j = self._buf.find(b"\n", self._scan)
        if j < 0:
            if len(self._buf) > limit + 1:
                return self._overlong()
            self._scan = len(self._buf)
            return None
        line = bytes(self._buf[:j])
        del self._buf[:j + 1]
        self._scan = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > limit:
            # Whole line here: keep its end, it may announce a literal to skip.
            self._note_tag(line)
            self._tail = line[-_TAIL_KEEP:]
            error = self._overlong_error()
            return self._after_discarded_line(error)
        return line

    def _note_tag(self, line: bytes | bytearray) -> None:
        if self._tag is None and not self._lines and self._state is _S.LINE:
            self._tag = grammar_tag(bytes(line[:200]).split(b" ", 1)[0])

    def _overlong(self) -> CommandError:
        self._note_tag(self._buf)
        error = self._overlong_error()
        self._tail = bytes(self._buf[-_TAIL_KEEP:])
        self._buf.clear()
        self._scan = 0
        self._state = _S.DISCARD
        return error

    def _overlong_error(self) -> CommandError:
        tag = self._special_tag if self._state in (_S.SASL, _S.IDLE) else self._tag
        error = CommandError(tag, ErrorKind.LINE_TOO_LONG, f"line longer than {self.max_line} octets")
        self._reset_command()
        return error

    def _after_discarded_line(self, error: CommandError) -> CommandError:
        self._skip_announced_literal()
        return error

    def _skip_announced_literal(self) -> None:
        """A discarded line ended: skip a non-synchronizing literal it announced."""
        m = _MARKER.search(self._tail)
        self._tail = b""
        if m is not None and m.group(3) and len(m.group(2)) <= 20:
            self._remaining = int(m.group(2))
            self._state = _S.SKIP
        else:
            self._state = _S.LINE

    def _step_discard(self) -> Event | None:
        j = self._buf.find(b"\n")
        if j < 0:
            self._tail = (self._tail + bytes(self._buf))[-_TAIL_KEEP:]
            self._buf.clear()
            self._scan = 0
            return NEED_DATA
        self._tail = (self._tail + bytes(self._buf[:j]))[-_TAIL_KEEP:].rstrip(b"\r")
        del self._buf[:j + 1]
        self._scan = 0
        self._skip_announced_literal()
        return None

    def _step_line(self) -> Event | None:
        line = self._take_line(self.max_line - self._line_total)
        if line is None:
            return NEED_DATA
        if isinstance(line, CommandError):
            return line
        if not self._lines:
            if not line:
                return None  # stray empty line between commands: ignored
            m = _HEAD.match(line)
            self._tag = grammar_tag(line)
            self._name = _command_label(m)
        self._line_total += len(line)
        marker = _MARKER.search(line)
        if marker is None:
            self._lines.append(line)
            return self._complete()
        self._lines.append(line[:marker.start()])
        digits = marker.group(2)
        binary = bool(marker.group(1))
        nonsync = bool(marker.group(3))
        if len(digits) > 20:
            return self._fail(ErrorKind.SYNTAX, "literal size too large")
        return self._announce(int(digits), binary, nonsync)

    def _announce(self, size: int, binary: bool, nonsync: bool) -> Event | None:
        skip = size if nonsync else None
        if len(self._lits) >= MAX_LITERALS:
            return self._fail(ErrorKind.SYNTAX, "too many literals", skip)
        if nonsync and self.literal_minus and size > LITERAL_MINUS_MAX:
            return self._fail(
                ErrorKind.LITERAL_TOO_BIG,
                f"non-synchronizing literal over {LITERAL_MINUS_MAX} octets (LITERAL-)", skip,
            )
        reader = Reader(self._lines + [b""], self._lits + [Lit(size, binary, pending=True)], self.utf8)
        try:
            grammar.parse_command(reader)
        except NeedLiteral:
            message = False
        except MessageLiteral:
            message = True
        except ParseError as exc:
            kind = ErrorKind.UNKNOWN_COMMAND if isinstance(exc, grammar.UnknownCommand) else ErrorKind.SYNTAX
            return self._fail(kind, str(exc), skip)
        else:  # cannot happen: the grammar must stop at the pending literal
            return self._fail(ErrorKind.SYNTAX, "unexpected literal", skip)
        if not message and self._lit_total + size > self.max_literal:
            return self._fail(ErrorKind.LITERAL_TOO_BIG, f"literal over {self.max_literal} octets", skip)
        if not message:
            self._lit_total += size
        self._pending_size = size
        self._pending_binary = binary
        self._pending_message = message
        self._remaining = size
        if nonsync:
            self._state = _S.STREAM if message else _S.COLLECT
            return None
        self._state = _S.WAIT
        return Continuation(self._tag or "", self._name, size, binary, message)

    def _step_stream(self) -> Event | None:
        if self._remaining == 0:
            self._lits.append(Lit(self._pending_size, self._pending_binary, streamed=True))
            self._state = _S.LINE
            return None
        if not self._buf:
            return NEED_DATA
        n = min(self._remaining, len(self._buf))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scan = 0
        self._remaining -= n
        return LiteralChunk(self._tag or "", data, self._pending_size, self._remaining == 0)

    def _complete(self) -> Event:
        reader = Reader(self._lines, self._lits, self.utf8)
        try:
            command = grammar.parse_command(reader)
        except ParseError as exc:
            kind = ErrorKind.UNKNOWN_COMMAND if isinstance(exc, grammar.UnknownCommand) else ErrorKind.SYNTAX
            return self._fail(kind, str(exc))
        except (NeedLiteral, MessageLiteral):  # no pending literal exists here
            return self._fail(ErrorKind.SYNTAX, "incomplete command")
        self._reset_command()
        return command

    def _step_special(self) -> Event | None:
        line = self._take_line(self.max_line)
        if line is None:
            return NEED_DATA
        if isinstance(line, CommandError):
            return line
        tag = self._special_tag
        idle = self._state is _S.IDLE
        self._state = _S.LINE
        if idle:
            if line.upper() == b"DONE":
                return IdleDone(tag)
            return CommandError(tag, ErrorKind.SYNTAX, "expected DONE")
        if line == b"*":  # RFC 9051 §6.2.2: the client cancels
            return SaslResponse(None)
        try:
            if len(line) % 4:
                raise binascii.Error("length")
            return SaslResponse(binascii.a2b_base64(line, strict_mode=True))
        except binascii.Error:
            return CommandError(tag, ErrorKind.SYNTAX, "invalid BASE64 in SASL response")


def grammar_tag(line: bytes) -> str | None:
    m = grammar.TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != 0x20):
        return None
    return m.group().decode("ascii")


def _command_label(m: re.Match[bytes] | None) -> str:
    if m is None:
        return ""
    name = m.group(2).decode("ascii").upper()
    if name == "UID" and m.group(3):
        return "UID " + m.group(3).decode("ascii").upper()
    return name
