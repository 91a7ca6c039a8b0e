"""FETCH sections as byte ranges of the stored message (imap/fetch_sections.py), without I/O."""

import base64

import pytest

from postfach.imap.fetch_items import Section
from postfach.imap.fetch_sections import (
    Decoded,
    HeaderSubset,
    Span,
    UnknownEncoding,
    cut,
    decode,
    filter_header,
    locate,
    locate_binary,
)
from postfach.mime import parse_message

MESSAGE = (
    b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"\x00binary\xff") + b"\r\n"
    b"--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-A: 1\r\n\r\ninner body\r\n"
    b"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-strange\r\n\r\n???\r\n--x--\r\n"
)
ROOT = parse_message(MESSAGE).structure


def text(location):
    assert isinstance(location, Span)
    return MESSAGE[location.start:location.end]


def test_sections_are_byte_ranges():
    assert text(locate(ROOT, len(MESSAGE), Section())) == MESSAGE
    assert text(locate(ROOT, len(MESSAGE), Section((), "HEADER"))).endswith(b"boundary=x\r\n\r\n")
    assert text(locate(ROOT, len(MESSAGE), Section((1,), "MIME"))).startswith(b"Content-Type: text/plain")
    assert text(locate(ROOT, len(MESSAGE), Section((2,), "TEXT"))) == b"inner body"
    assert text(locate(ROOT, len(MESSAGE), Section((2, 1)))) == b"inner body"
    assert text(locate(ROOT, len(MESSAGE), Section((2,), "HEADER"))) == b"Subject: inner\r\nX-A: 1\r\n\r\n"


def test_message_only_specifiers_and_missing_parts_are_nil():
    assert locate(ROOT, len(MESSAGE), Section((1,), "HEADER")) is None
    assert locate(ROOT, len(MESSAGE), Section((7,))) is None
    assert locate(ROOT, len(MESSAGE), Section((1, 1))) is None


def test_header_fields_keep_folding_and_the_blank_line():
    block = b"Subject: a\r\n b\r\nFrom: x\r\nsubject: again\r\n\r\n"
    assert filter_header(block, frozenset({"subject"}), False) == b"Subject: a\r\n b\r\nsubject: again\r\n\r\n"
    assert filter_header(block, frozenset({"subject"}), True) == b"From: x\r\n\r\n"
    assert filter_header(b"From: x\r\n", frozenset({"from"}), False) == b"From: x\r\n"  # no blank line there
    where = locate(ROOT, len(MESSAGE), Section((2,), "HEADER.FIELDS", ("X-a",)))
    assert isinstance(where, HeaderSubset) and where.names == {"x-a"}


def test_binary_decodes_and_refuses_unknown_encodings():
    where = locate_binary(ROOT, len(MESSAGE), (1,))
    assert isinstance(where, Decoded)
    assert decode(MESSAGE[where.start:where.end], where.encoding) == b"\x00binary\xff"
    assert decode(b"caf=C3=A9=\r\n!", "quoted-printable") == "café!".encode()
    assert isinstance(locate_binary(ROOT, len(MESSAGE), (2,)), Span)  # a message part: as is
    with pytest.raises(UnknownEncoding):
        locate_binary(ROOT, len(MESSAGE), (3,))


def test_partials():
    assert Span(10, 20).cut((3, 4)) == Span(13, 17)
    assert Span(10, 20).cut((8, 100)) == Span(18, 20)
    assert len(Span(10, 20).cut((50, 1))) == 0
    assert cut(b"abcdef", (2, 2)) == b"cd" and cut(b"abc", (9, 1)) == b""
