"""DATA in pieces cut anywhere: the end of data, dot-unstuffing, the size limit, long lines, bare line ends."""

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postfach.delivery.incoming import SpooledMessage, SpoolWriter
from postfach.smtp import replies
from postfach.smtp.data import DataReceiver, has_bare_line_end, receive_data

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit: 1000 octets and a dot added for transfer


def stuffed(message: bytes) -> bytes:
    """What a client sends (RFC 5321 §4.5.2): a leading dot doubled, and the end of data."""
    return re.sub(rb"(?m)^\.", b"..", message) + b".\r\n"


async def receive(tmp_path, pieces, *, size_limit=None, in_memory=1 << 20, arrived=lambda: None):
    """Feed the pieces to a stream reader as they would arrive; the message (or None), the
    receiver, and what is left in the reader after the end of data."""
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    receiver = DataReceiver(SpoolWriter(tmp_path, in_memory=in_memory), size_limit=size_limit, line_limit=LINE_LIMIT)

    async def arrive():
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        reader.feed_eof()

    arriving = asyncio.ensure_future(arrive())
    await receive_data(reader, receiver, arrived)
    message = receiver.finish()
    await arriving
    if isinstance(message, SpooledMessage):
        with message:
            message = b"".join(message.chunks())
    return message, receiver, await reader.read()


def cut(data: bytes, sizes) -> list[bytes]:
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start:start + size])
        start += size
    return [*pieces, data[start:]]


_LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"text.", b"a b", b"\xc3\xa4", b"...."]),
                  max_size=30)


@settings(max_examples=300, deadline=None)
@given(_LINES, st.lists(st.integers(1, 9), max_size=30), st.sampled_from([1 << 20, 8]))
def test_the_message_comes_out_as_sent_however_the_data_is_cut(tmp_path_factory, lines, sizes, in_memory):
    message = b"".join(line + b"\r\n" for line in lines)
    pieces = cut(stuffed(message) + b"QUIT\r\n", sizes)
    received, receiver, rest = asyncio.run(receive(tmp_path_factory.mktemp("spool"), pieces, in_memory=in_memory))
    assert received == message and receiver.size == len(message)
    assert rest == b"QUIT\r\n"  # a pipelined command after the data is left for the command loop


@pytest.mark.parametrize("pieces", [
    [b".\r\n"],  # an empty message
    [b".", b"\r", b"\n"],
    [b"a\r", b"\n", b".\r\n"],  # the CRLF before the dot comes apart
    [b"a\r\n", b".", b"\r\n"],
    [b"a\r\n.\r", b"\n"],
])
async def test_the_end_of_data_is_found_wherever_it_is_cut(tmp_path, pieces):
    message, receiver, rest = await receive(tmp_path, [*pieces, b"NOOP\r\n"])
    assert message == b"".join(pieces)[:-3] and rest == b"NOOP\r\n"


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"])
async def test_a_dot_after_a_bare_line_end_does_not_end_the_data(tmp_path, smuggled):
    # RFC 5321 §2.3.8: the end of data is CRLF.CRLF only; anything else is the message's (and
    # a bare CR or LF in it refuses it), never a second message "smuggled" in after it.
    data = b"Subject: x\r\n\r\nfirst" + smuggled + b"MAIL FROM:<evil@example.com>\r\n.\r\n"
    message, receiver, rest = await receive(tmp_path, [data, b"NOOP\r\n"])
    assert message is None and receiver.refusal == replies.BARE_LINE_END and rest == b"NOOP\r\n"


@pytest.mark.parametrize("in_memory", [1 << 20, 8], ids=["in memory", "spooled"])
async def test_the_size_limit_counts_the_message_not_the_added_dots(tmp_path, in_memory):
    message = b"Subject: dots\r\n\r\n.\r\n..\r\n.a\r\n" + b"y" * 900 + b"\r\n"
    exact, receiver, _ = await receive(tmp_path, [stuffed(message)], size_limit=len(message), in_memory=in_memory)
    assert exact == message
    over, receiver, rest = await receive(tmp_path, [stuffed(message + b"z\r\n"), b"RSET\r\n"],
                                        size_limit=len(message), in_memory=in_memory)
    assert over is None and receiver.refusal == replies.TOO_MUCH_DATA and rest == b"RSET\r\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sizes", [[], [500, 500], [3] * 400, [1001]])
async def test_a_line_of_more_than_1001_octets_as_sent_is_refused(tmp_path, sizes):
    # RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF, and a dot may be added for transfer.
    longest = b"." + b"a" * 998 + b"\r\n"
    assert len(longest) == LINE_LIMIT
    message, receiver, _ = await receive(tmp_path, cut(b"x\r\n" + longest + b".\r\n", sizes))
    assert receiver.refusal is None and message == b"x\r\n" + longest[1:]
    message, receiver, rest = await receive(tmp_path, cut(b"x\r\n." + longest + b".\r\nNOOP\r\n", sizes))
    assert message is None and receiver.refusal == replies.LINE_TOO_LONG and rest == b"NOOP\r\n"


async def test_the_first_problem_found_is_the_reply_and_the_rest_is_dropped(tmp_path):
    # The long line is known as soon as 1001 octets of it came without a CRLF.
    pieces = [b"a" * 2000, b"\r\nbare\nLF\r\n" + b"x" * 100 + b"\r\n.\r\n", b"NOOP\r\n"]
    message, receiver, rest = await receive(tmp_path, pieces, size_limit=10)
    assert message is None and receiver.refusal == replies.LINE_TOO_LONG and rest == b"NOOP\r\n"


@pytest.mark.parametrize("in_memory", [1 << 20, 8], ids=["in memory", "spooled"])
@pytest.mark.parametrize("bad", [b"bare\nLF\r\n", b"bare\rCR\r\n", b"\n\r\n"])
async def test_a_bare_line_end_anywhere_refuses(tmp_path, in_memory, bad):
    data = b"Subject: x\r\n\r\n" + (b"y" * 76 + b"\r\n") * 5000 + bad + b"z\r\n.\r\n"
    message, receiver, _ = await receive(tmp_path, cut(data, [65536] * 6), in_memory=in_memory)
    assert message is None and receiver.refusal == replies.BARE_LINE_END


def test_what_a_bare_line_end_is():
    assert not has_bare_line_end(b"a\r\nb\r\n")
    assert has_bare_line_end(b"a\nb\r\n") and has_bare_line_end(b"a\rb\r\n") and has_bare_line_end(b"\r\r\n")


async def test_every_piece_of_data_that_arrives_is_reported(tmp_path):
    # So that the session's time-out runs per block of data (RFC 5321 §4.5.3.2.5), not per message.
    # (A piece shorter than a line may wait for the next before it is read.)
    arrivals = []
    pieces = cut(stuffed(b"Subject: slow\r\n\r\n" + (b"z" * 98 + b"\r\n") * 60), [1500] * 4)
    message, _, _ = await receive(tmp_path, pieces, arrived=lambda: arrivals.append(1))
    assert message is not None and len(arrivals) >= len(pieces) - 1
