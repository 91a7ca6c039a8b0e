"""Fuzz target: postfach.imap.parser — any bytes, in any fragments, give only documented events.

    .venv/bin/python bench/fuzz_imap_parser.py --seconds 60 [--random]

The first two input bytes choose the packet size, the parser's limits and mode (after
AUTHENTICATE's challenge, in IDLE, UTF-8, LITERAL-) and whether literals are accepted; the rest
is what the client sends. Properties checked on every input:
- every event is a documented one (a command, `Continuation`, `LiteralChunk`, `CommandError`,
  `SaslResponse`, `IdleDone`); nothing raises, `ParserStateError` included (the driver uses
  the parser as the server does);
- the number of events is bounded by the input's length (no event without progress);
- the parser's buffer never holds much more than one command line and one small literal.
A hang (an endless loop inside `next_event`) is caught by the runner (fuzzing.py).
"""

from __future__ import annotations

from fuzzing import run

from postfach.imap.commands import Command
from postfach.imap.parser import (
    NEED_DATA,
    CommandError,
    Continuation,
    IdleDone,
    LiteralChunk,
    Parser,
    SaslResponse,
)

EVENTS = (Command, Continuation, LiteralChunk, CommandError, SaslResponse, IdleDone)
TOKENS = [
    b"A1 ", b"UID ", b"FETCH ", b"1:* ", b"(", b")", b"BODY[", b"]", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n",
    b"{99999999999}\r\n", b"\r\n", b"\n", b'"', b"\\", b"SEARCH ", b"APPEND INBOX ", b"LOGIN ", b"NOT ", b"OR ",
    b"*", b"$", b"<0.1>", b"&", b"\x00", b"\xff", b" ", b"x", b"DONE", b"SELECT ", b"LIST ", b"RETURN (",
    b"STATUS", b"AUTHENTICATE PLAIN", b"IDLE", b"STORE ", b"+FLAGS (\\Seen)", b"CHARSET UTF-8 ", b"a" * 300,
]
SEEDS = [
    b"\x07\x01A1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\nA2 SELECT INBOX\r\nA3 UID FETCH 1:* (FLAGS BODY.PEEK[1.2]<0.10>)\r\n",
    b"\x10\x00A1 APPEND INBOX (\\Seen) {12}\r\nSubject: x\r\n\r\nA2 SEARCH OR FROM a NOT SEEN\r\n",
    b"\x03\x06AGFsaWNlAHNlY3JldA==\r\nDONE\r\nA4 LIST \"\" * RETURN (SUBSCRIBED)\r\n",
]
MAX_LINE = 200
MAX_LITERAL = 50


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    first, second, stream = data[0], data[1], data[2:]
    packet = (first & 0x3F) + 1
    accept = bool(first & 0x40)
    parser = Parser(max_line=MAX_LINE, max_literal=MAX_LITERAL, literal_minus=bool(second & 0x08), utf8=bool(second & 0x10))
    mode = second & 0x07
    if mode == 2:
        parser.expect_sasl_response("T")
    elif mode == 3:
        parser.expect_idle_done("T")
    events = 0
    for start in range(0, len(stream), packet):
        parser.feed(stream[start : start + packet])
        while (event := parser.next_event()) is not NEED_DATA:
            events += 1
            assert isinstance(event, EVENTS), f"undocumented event {event!r}"
            assert events <= 2 * len(stream) + 4, "more events than the input can hold"
            if isinstance(event, Continuation):
                (parser.accept_literal if accept else parser.reject_literal)()
        # What waits is at most a line (and its literals) in the making, or the rest of a packet.
        assert len(parser._buf) <= 2 * (MAX_LINE + MAX_LITERAL) + packet + 64, f"{len(parser._buf)} bytes held"


if __name__ == "__main__":
    run(check, tokens=TOKENS, seeds=SEEDS)
