"""Fuzz target: postfach.pop3.parser — any bytes, in any fragments, never break the parser.

    .venv/bin/python bench/fuzz_pop3_parser.py --seconds 60 [--random]

The first input byte chooses how the rest is cut into packets and where the caller announces a
SASL response (as the session does after "+ "). Properties checked on every input:
- every result is a documented one (a command, `Invalid`, `LineTooLong`); nothing raises;
- every result consumes buffered bytes (so `next_command` cannot loop), and what stays buffered
  is less than the longest line allowed (memory is bounded);
- without SASL announcements, the packets' boundaries never change what is parsed.
A hang is caught by the runner (fuzzing.py).
"""

from __future__ import annotations

from fuzzing import run

from postfach.pop3 import commands as c
from postfach.pop3.parser import MAX_SASL_LINE, NEED_DATA, Parser

RESULTS = (*c.Command.__args__, c.Invalid, c.LineTooLong)
TOKENS = [
    b"USER ", b"PASS ", b"AUTH ", b"PLAIN ", b"STLS", b"CAPA", b"RETR ", b"TOP ", b"LIST", b"UIDL ", b"DELE ",
    b"QUIT", b"1", b"99999999999", b" ", b"\r\n", b"\n", b"\r", b"\x00", b"\x7f", b"\xff", b"\xc3\xa4", b"=", b"*",
    b"a" * 300, b"A" * 2100,
]
SEEDS = [
    b"\x05CAPA\r\nUSER alice@example.com\r\nPASS secret word\r\nSTAT\r\nTOP 1 10\r\nQUIT\r\n",
    b"\x83AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nLIST 1\r\nRETR 1\r\nDELE 1\r\n",
]


def parse(stream: bytes, packet: int, sasl_every: int) -> list:
    parser = Parser()
    results: list = []
    for start in range(0, len(stream), packet):
        parser.feed(stream[start : start + packet])
        while True:
            before = parser.buffered
            result = parser.next_command()
            if result is NEED_DATA:
                assert parser.buffered < MAX_SASL_LINE, f"{parser.buffered} bytes held for an unfinished line"
                break
            assert isinstance(result, RESULTS), f"undocumented result {result!r}"
            assert parser.buffered < before, f"{result!r} consumed nothing"
            results.append(result)
            if sasl_every and len(results) % sasl_every == 0:
                parser.expect_sasl_response()
    return results


def check(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:]
    packet = (control & 0x1F) + 1
    sasl_every = control >> 5
    results = parse(stream, packet, sasl_every)
    if not sasl_every:
        assert results == parse(stream, len(stream) or 1, 0), "the packet boundaries changed the commands"


if __name__ == "__main__":
    run(check, tokens=TOKENS, seeds=SEEDS)
