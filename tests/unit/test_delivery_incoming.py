"""Incoming messages: in memory when small, spooled to an unlinked file when large."""

import os

import pytest

from postfach.delivery.incoming import (
    HEADER_LIMIT,
    InMemoryMessage,
    SpooledMessage,
    SpoolWriter,
    header_section,
)

MESSAGE = b"From: a@example.org\r\nSubject: s\r\n\r\nbody line\r\n\r\nSubject: not a header\r\n"


def read_all(stream, size: int) -> bytes:
    parts = []
    while part := stream.read(size):
        parts.append(part)
    return b"".join(parts)


def spooled(tmp_path, data: bytes, in_memory: int = 16) -> SpooledMessage:
    writer = SpoolWriter(tmp_path, in_memory=in_memory)
    for start in range(0, len(data), 7):
        writer.write(data[start:start + 7])
    message = writer.finish()
    assert isinstance(message, SpooledMessage)
    return message


@pytest.mark.parametrize("data, header", [
    (MESSAGE, b"From: a@example.org\r\nSubject: s\r\n\r\n"),
    (b"\r\nno header at all\r\n", b"\r\n"),
    (b"Subject: only a header\r\n", b"Subject: only a header\r\n"),
    (b"", b""),
])
def test_the_header_section_ends_with_the_first_empty_line(data, header):
    assert header_section(data) == header
    assert InMemoryMessage(data).header == header


def test_a_small_message_stays_in_memory_and_a_large_one_goes_to_an_unlinked_file(tmp_path):
    writer = SpoolWriter(tmp_path, in_memory=len(MESSAGE))
    writer.write(MESSAGE)
    assert writer.finish() == MESSAGE
    with spooled(tmp_path, MESSAGE) as message:
        assert message.size == len(MESSAGE)
        assert message.header == header_section(MESSAGE)
        assert b"".join(message.body_chunks()) == MESSAGE[len(message.header):]
        assert list(tmp_path.iterdir()) == []  # nothing a crash could leave behind


@pytest.mark.parametrize("read_size", [1, 3, 1 << 20])
def test_content_puts_the_prefix_and_the_new_header_before_the_body(tmp_path, read_size):
    new_header = b"From: a@example.org\r\n\r\n"
    expected = b"Received: x\r\n" + new_header + MESSAGE[len(header_section(MESSAGE)):]
    with spooled(tmp_path, MESSAGE) as message:
        assert read_all(message.content(b"Received: x\r\n", new_header), read_size) == expected
    assert InMemoryMessage(MESSAGE).content(b"Received: x\r\n", new_header) == expected
    assert InMemoryMessage(MESSAGE).content(b"P\r\n", header_section(MESSAGE)) == b"P\r\n" + MESSAGE


def test_a_duplicate_outlives_the_original(tmp_path):
    message = spooled(tmp_path, MESSAGE)
    copy = message.duplicate()
    message.close()
    message.close()  # closing twice is harmless
    with copy:
        assert b"".join(copy.chunks()) == MESSAGE
    with pytest.raises(OSError):
        os.fstat(copy._fd)


def test_a_header_section_longer_than_the_limit_is_cut_at_a_line_end(tmp_path):
    line = b"X-Filler: " + b"f" * 88 + b"\r\n"
    data = line * (HEADER_LIMIT // len(line) + 10) + b"\r\nbody\r\n"
    with spooled(tmp_path, data, in_memory=HEADER_LIMIT) as message:
        assert len(message.header) <= HEADER_LIMIT and message.header.endswith(b"\r\n")
        assert len(message.header) % len(line) == 0
        assert message.header + b"".join(message.body_chunks()) == data


def test_discard_leaves_nothing(tmp_path):
    writer = SpoolWriter(tmp_path, in_memory=4)
    writer.write(MESSAGE)
    writer.discard()
    assert list(tmp_path.iterdir()) == []
