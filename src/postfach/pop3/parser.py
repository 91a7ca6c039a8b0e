"""POP3 command lines in, typed commands out; no I/O.

    parser.feed(data)
    while (command := parser.next_command()) is not NEED_DATA:
        ...

Fragmented input waits in the buffer until its line is complete; several
commands in one packet (RFC 2449 §6.6 PIPELINING) come out one by one. A
line ends at LF; a CR before it is dropped, so a bare LF is accepted too.
"""

from __future__ import annotations

import enum

from postfach.pop3 import commands as c

# RFC 2449 §4: "command lines ... MUST NOT exceed 255 octets, including the terminating CRLF".
MAX_COMMAND_LINE = 255
# RFC 5034 §4 lifts that limit for AUTH's client responses; a PLAIN response (three
# strings of up to 255 octets, base64) fits well within this.
MAX_SASL_LINE = 2048
# Message numbers and TOP's line count: digits only, and no more than this many
# (a 40-character argument, RFC 2449 §4, would only make a pointless big integer).
MAX_NUMBER_DIGITS = 10


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _NeedData.NEED_DATA

# keyword -> (fewest, most) arguments; PASS takes the rest of the line (RFC 1939 §7:
# a server may treat spaces in its argument as part of the password).
_ARGUMENTS: dict[str, tuple[int, int]] = {
    "USER": (1, 1),
    "PASS": (1, 1),
    "AUTH": (0, 2),
    "STLS": (0, 0),
    "CAPA": (0, 0),
    "STAT": (0, 0),
    "LIST": (0, 1),
    "UIDL": (0, 1),
    "RETR": (1, 1),
    "TOP": (2, 2),
    "DELE": (1, 1),
    "NOOP": (0, 0),
    "RSET": (0, 0),
    "QUIT": (0, 0),
}
_NO_ARGUMENTS = {"STLS": c.Stls(), "CAPA": c.Capa(), "STAT": c.Stat(), "NOOP": c.Noop(), "RSET": c.Rset(), "QUIT": c.Quit()}


class Parser:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line, dropping bytes up to its LF
        self._sasl = False  # the next line answers an AUTH continuation

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def expect_sasl_response(self) -> None:
        """The next line is the client's answer to a "+ " continuation, not a command."""
        self._sasl = True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def discard(self) -> int:
        """Drop everything buffered (what a client pipelined after STLS); returns how many bytes."""
        dropped = len(self._buffer)
        self._buffer.clear()
        self._discarding = False
        self._sasl = False
        return dropped

    def next_command(self) -> c.ParseResult | _NeedData:
        limit = MAX_SASL_LINE if self._sasl else MAX_COMMAND_LINE
        end = self._buffer.find(b"\n")
        if self._discarding:
            if end < 0:
                self._buffer.clear()
                return NEED_DATA
            del self._buffer[: end + 1]
            self._discarding = False
            end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) >= limit:
                # Even the LF still to come would put it over: refuse now, drop the rest later.
                self._buffer.clear()
                self._discarding = True
                self._sasl = False
                return c.LineTooLong(limit)
            return NEED_DATA
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if len(line) > limit:
            self._sasl = False
            return c.LineTooLong(limit)
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        if self._sasl:
            self._sasl = False
            try:
                return c.SaslResponse(text.decode("ascii").strip())
            except UnicodeDecodeError:
                return c.SaslResponse("")  # not base64 either: the session answers it as such
        return parse_line(text)


def parse_line(text: bytes) -> c.ParseResult:
    """One command line without its line end."""
    try:
        line = text.decode("utf-8")
    except UnicodeDecodeError:
        return c.Invalid("the command line is not valid UTF-8")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in line):
        return c.Invalid("control characters in the command line")
    keyword, _, rest = line.partition(" ")
    keyword = keyword.upper()
    if not keyword:
        return c.Invalid("empty command line" if not rest else "the command line starts with a space")
    if keyword not in _ARGUMENTS:
        return c.Invalid("unknown command")
    if keyword == "PASS":
        return c.Pass(rest) if rest else c.Invalid("PASS needs a password")
    arguments = rest.split()
    fewest, most = _ARGUMENTS[keyword]
    if not fewest <= len(arguments) <= most:
        return c.Invalid(_count_problem(keyword, fewest, most))
    if keyword in _NO_ARGUMENTS:
        return _NO_ARGUMENTS[keyword]
    if keyword == "USER":
        return c.User(arguments[0])
    if keyword == "AUTH":
        if not arguments:
            return c.Auth(None)
        return c.Auth(arguments[0].upper(), arguments[1] if len(arguments) > 1 else None)
    numbers = [_number(argument) for argument in arguments]
    if None in numbers:
        what = "a message number and a line count" if keyword == "TOP" else "a message number"
        return c.Invalid(f"{keyword} takes {what} in digits")
    if keyword == "LIST":
        return c.List(numbers[0] if numbers else None)
    if keyword == "UIDL":
        return c.Uidl(numbers[0] if numbers else None)
    if keyword == "RETR":
        return c.Retr(numbers[0])
    if keyword == "DELE":
        return c.Dele(numbers[0])
    assert keyword == "TOP"
    return c.Top(numbers[0], numbers[1])


def _number(argument: str) -> int | None:
    if not (argument.isascii() and argument.isdigit()) or len(argument) > MAX_NUMBER_DIGITS:
        return None
    return int(argument)


def _count_problem(keyword: str, fewest: int, most: int) -> str:
    if most == 0:
        return f"{keyword} takes no arguments"
    if fewest == most:
        return f"{keyword} takes exactly {fewest} argument{'s' if fewest > 1 else ''}"
    return f"{keyword} takes {fewest} to {most} arguments"
