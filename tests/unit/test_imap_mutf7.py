"""imap.mutf7: modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfach.imap.mutf7 import MUTF7Error, decode, encode

EXAMPLES = [
    ("INBOX", b"INBOX"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
    ("Entwürfe", b"Entw&APw-rfe"),
    ("a&b", b"a&-b"),
    ("&", b"&-"),
    ("Grüße & Küsse", b"Gr&APwA3w-e &- K&APw-sse"),
    ("😀", b"&2D3eAA-"),
    ("", b""),
    ("ä&ö", b"&AOQ-&-&APY-"),
]


@pytest.mark.parametrize(("text", "wire"), EXAMPLES)
def test_examples(text: str, wire: bytes) -> None:
    assert encode(text) == wire
    assert decode(wire) == text


@pytest.mark.parametrize("wire", [
    b"&",               # unterminated shift
    b"&U,BTFw",         # no closing "-"
    b"&AGE-",           # encodes printable ASCII "a"
    b"&AOQ-&APY-",      # two adjacent runs must be one
    b"&AOQ=-",          # padding
    b"&A-",             # truncated BASE64
    b"&AOR-",           # non-zero leftover bits
    b"&2D0-",           # lone high surrogate
    b"&AOQ/-",          # "/" instead of ","
    b"caf\xc3\xa9",     # raw 8-bit
    b"a\tb",            # control character
    b"&APw",            # end inside a shift
])
def test_invalid_encodings_are_rejected(wire: bytes) -> None:
    with pytest.raises(MUTF7Error):
        decode(wire)


def test_error_is_a_value_error_with_a_message() -> None:
    with pytest.raises(ValueError, match="modified UTF-7|printable|shift|BASE64|UTF-16"):
        decode(b"&AGE-")


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_round_trip(text: str) -> None:
    wire = encode(text)
    assert wire.isascii() and all(0x20 <= b <= 0x7E for b in wire)
    assert decode(wire) == text


@given(st.binary(max_size=30))
def test_decode_arbitrary_bytes_never_raises_anything_else(data: bytes) -> None:
    try:
        text = decode(data)
    except MUTF7Error:
        return
    assert encode(text) == data
