"""pop3/parser.py: bytes in, typed commands out — fragmented, pipelined, broken."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postfach.pop3 import commands as c
from postfach.pop3.parser import (
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    NEED_DATA,
    Parser,
    parse_line,
)


def commands_of(*packets: bytes, parser: Parser | None = None) -> list:
    parser = parser or Parser()
    out = []
    for packet in packets:
        parser.feed(packet)
        while (command := parser.next_command()) is not NEED_DATA:
            out.append(command)
    return out


def test_nothing_yet_needs_data():
    assert Parser().next_command() is NEED_DATA
    assert commands_of(b"STA") == []


def test_one_byte_at_a_time():
    data = b"USER alice@example.com\r\nPASS secret words\r\nSTAT\r\n"
    assert commands_of(*(bytes([b]) for b in data)) == [
        c.User("alice@example.com"),
        c.Pass("secret words"),
        c.Stat(),
    ]


def test_pipelined_commands_in_one_packet():
    assert commands_of(b"STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 1 10\r\nDELE 3\r\nNOOP\r\nRSET\r\nQUIT\r\n") == [
        c.Stat(), c.List(None), c.Uidl(2), c.Retr(1), c.Top(1, 10), c.Dele(3), c.Noop(), c.Rset(), c.Quit(),
    ]


def test_a_command_split_across_packets_with_the_next_one_in_the_same_packet():
    assert commands_of(b"LI", b"ST 1\r", b"\nSTAT\r\nQU", b"IT\r\n") == [c.List(1), c.Stat(), c.Quit()]


def test_bare_lf_ends_a_line():
    assert commands_of(b"STAT\nLIST 2\nQUIT\r\n") == [c.Stat(), c.List(2), c.Quit()]


@pytest.mark.parametrize("keyword", [b"stat", b"Stat", b"sTaT", b"STAT"])
def test_keywords_are_case_insensitive(keyword):
    assert commands_of(keyword + b"\r\n") == [c.Stat()]


def test_every_command():
    assert commands_of(
        b"user a@b.example\r\npass x\r\nauth\r\nauth plain\r\nauth plain AGEAYg==\r\nstls\r\ncapa\r\n"
        b"uidl\r\nlist\r\n"
    ) == [
        c.User("a@b.example"), c.Pass("x"), c.Auth(None), c.Auth("PLAIN"), c.Auth("PLAIN", "AGEAYg=="),
        c.Stls(), c.Capa(), c.Uidl(None), c.List(None),
    ]


def test_pass_keeps_spaces_in_the_password():
    # RFC 1939 §7: the server may treat spaces in PASS's argument as part of the password.
    assert commands_of(b"PASS  two  spaces \r\n") == [c.Pass(" two  spaces ")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty command line"),
        (b" STAT", "the command line starts with a space"),
        (b"FOO", "unknown command"),
        (b"APOP a b", "unknown command"),
        (b"STATS", "unknown command"),
        (b"STAT 1", "STAT takes no arguments"),
        (b"NOOP x", "NOOP takes no arguments"),
        (b"QUIT now", "QUIT takes no arguments"),
        (b"RSET 1", "RSET takes no arguments"),
        (b"CAPA x", "CAPA takes no arguments"),
        (b"STLS x", "STLS takes no arguments"),
        (b"RETR", "RETR takes exactly 1 argument"),
        (b"RETR 1 2", "RETR takes exactly 1 argument"),
        (b"DELE", "DELE takes exactly 1 argument"),
        (b"TOP 1", "TOP takes exactly 2 arguments"),
        (b"TOP 1 2 3", "TOP takes exactly 2 arguments"),
        (b"LIST 1 2", "LIST takes 0 to 1 arguments"),
        (b"UIDL 1 2", "UIDL takes 0 to 1 arguments"),
        (b"USER", "USER takes exactly 1 argument"),
        (b"USER a b", "USER takes exactly 1 argument"),
        (b"PASS", "PASS needs a password"),
        (b"AUTH PLAIN x y", "AUTH takes 0 to 2 arguments"),
        (b"RETR one", "RETR takes a message number in digits"),
        (b"RETR -1", "RETR takes a message number in digits"),
        (b"RETR +1", "RETR takes a message number in digits"),
        (b"DELE 1.0", "DELE takes a message number in digits"),
        (b"LIST x", "LIST takes a message number in digits"),
        (b"UIDL x", "UIDL takes a message number in digits"),
        (b"TOP 1 x", "TOP takes a message number and a line count in digits"),
        (b"RETR 12345678901", "RETR takes a message number in digits"),
        (b"RETR \xd9\xa3", "RETR takes a message number in digits"),  # Arabic-Indic digit three
        (b"STAT\x00", "control characters in the command line"),
        (b"USER a\rb", "control characters in the command line"),
        (b"USER \xff", "the command line is not valid UTF-8"),
    ],
)
def test_malformed_lines_are_invalid_with_a_reason(line, reason):
    assert parse_line(line) == c.Invalid(reason)


def test_an_invalid_line_does_not_disturb_the_next():
    assert commands_of(b"FOO\r\nRETR x\r\nSTAT\r\n") == [
        c.Invalid("unknown command"), c.Invalid("RETR takes a message number in digits"), c.Stat(),
    ]


def test_zero_is_syntactically_a_number():
    # Whether message 0 exists is the session's question (it does not): "-ERR no message 0".
    assert parse_line(b"RETR 0") == c.Retr(0)
    assert parse_line(b"TOP 3 0") == c.Top(3, 0)


def test_utf8_user_name():
    assert parse_line("USER jörg@bücher.example".encode()) == c.User("jörg@bücher.example")


def test_line_of_exactly_the_limit_is_accepted():
    user = b"USER " + b"a" * (MAX_COMMAND_LINE - len(b"USER ") - 2)
    assert len(user + b"\r\n") == MAX_COMMAND_LINE
    assert commands_of(user + b"\r\n") == [c.User(user[5:].decode())]


def test_line_one_over_the_limit_is_refused_then_the_next_command_works():
    user = b"USER " + b"a" * (MAX_COMMAND_LINE - len(b"USER ") - 1)
    assert len(user + b"\r\n") == MAX_COMMAND_LINE + 1
    assert commands_of(user + b"\r\nSTAT\r\n") == [c.LineTooLong(MAX_COMMAND_LINE), c.Stat()]


def test_over_long_line_in_fragments_is_refused_once_and_discarded_to_its_end():
    parser = Parser()
    out = commands_of(b"USER " + b"x" * 300, b"y" * 1000, b"z" * 1000, b"\r\nNOOP\r\n", parser=parser)
    assert out == [c.LineTooLong(MAX_COMMAND_LINE), c.Noop()]
    assert parser.buffered == 0


def test_over_long_line_arriving_byte_by_byte_keeps_the_buffer_small():
    parser = Parser()
    out = []
    for _ in range(10_000):
        parser.feed(b"x")
        while (command := parser.next_command()) is not NEED_DATA:
            out.append(command)
        assert parser.buffered <= MAX_COMMAND_LINE
    out += commands_of(b"\nQUIT\r\n", parser=parser)
    assert out == [c.LineTooLong(MAX_COMMAND_LINE), c.Quit()]


def test_sasl_response_is_one_line_not_a_command():
    parser = Parser()
    assert commands_of(b"AUTH PLAIN\r\n", parser=parser) == [c.Auth("PLAIN")]
    parser.expect_sasl_response()
    assert commands_of(b"STAT\r\nSTAT\r\n", parser=parser) == [c.SaslResponse("STAT"), c.Stat()]


def test_sasl_response_may_be_longer_than_a_command_line_but_not_unbounded():
    parser = Parser()
    parser.expect_sasl_response()
    long_response = b"A" * (MAX_SASL_LINE - 2)
    assert commands_of(long_response + b"\r\n", parser=parser) == [c.SaslResponse(long_response.decode())]
    parser.expect_sasl_response()
    assert commands_of(b"A" * MAX_SASL_LINE + b"\r\nSTAT\r\n", parser=parser) == [
        c.LineTooLong(MAX_SASL_LINE), c.Stat(),
    ]


def test_discard_drops_what_was_pipelined():
    parser = Parser()
    parser.feed(b"STLS\r\nUSER injected@example.com\r\nPASS x\r\n")
    assert parser.next_command() == c.Stls()
    assert parser.discard() == len(b"USER injected@example.com\r\nPASS x\r\n")
    assert parser.next_command() is NEED_DATA
    assert commands_of(b"CAPA\r\n", parser=parser) == [c.Capa()]


# --- fuzzing ------------------------------------------------------------------------

RESULTS = (*c.Command.__args__, c.Invalid, c.LineTooLong)

fragments = st.sampled_from([
    b"USER ", b"PASS ", b"AUTH ", b"PLAIN ", b"STLS", b"CAPA", b"RETR ", b"TOP ", b"LIST", b"UIDL ", b"1",
    b"99999999999", b" ", b"\r\n", b"\n", b"\r", b"\x00", b"\x7f", b"\xff", b"\xc3\xa4", b"=", b"*", b"a" * 300,
])
streams = st.lists(st.one_of(fragments, st.binary(max_size=30)), max_size=40).map(b"".join)


def results_checked(data: bytes, cuts: list[int], sasl_at: set[int] = frozenset()) -> list:
    """Feed `data` cut at `cuts`; check every result and that each one consumed buffered bytes."""
    parser = Parser()
    results: list = []
    pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for piece in pieces:
        parser.feed(piece)
        while True:
            before = parser.buffered
            result = parser.next_command()
            if result is NEED_DATA:
                # Memory stays bounded: at most one unfinished line, and no longer than the limit.
                assert parser.buffered < MAX_SASL_LINE
                break
            assert isinstance(result, RESULTS)
            assert parser.buffered < before, "a result that consumed nothing: the parser could loop"
            results.append(result)
            if len(results) in sasl_at:
                parser.expect_sasl_response()
    return results


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.integers(0, 2000), max_size=30), st.sets(st.integers(1, 10), max_size=3))
def test_arbitrary_bytes_in_any_fragments_give_only_documented_results(data, cuts, sasl_at):
    results_checked(data, sorted(cut % (len(data) + 1) for cut in cuts), sasl_at)


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.integers(0, 2000), max_size=30))
def test_fragmentation_never_changes_what_is_parsed(data, cuts):
    # Every result comes out of one line, whatever the packets: no command is lost or split.
    whole = results_checked(data, [])
    assert results_checked(data, sorted(cut % (len(data) + 1) for cut in cuts)) == whole
    assert len(whole) <= data.count(b"\n") + len(data) // MAX_COMMAND_LINE + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=400).map(lambda b: b.replace(b"\n", b"")), max_size=6), st.integers(1, 17))
def test_garbage_lines_never_swallow_the_next_command(lines, chunk):
    data = b"".join(line + b"\r\n" for line in lines) + b"STAT\r\n"
    results = results_checked(data, list(range(chunk, len(data), chunk)))
    assert len(results) == len(lines) + 1
    assert results[-1] == c.Stat()
