"""Fuzz target: postfach.mime and the IMAP BODYSTRUCTURE/ENVELOPE built from it, on any bytes.

    .venv/bin/python bench/fuzz_mime.py --seconds 60 [--random]

Properties checked on every input (the invariants in postfach/mime/__init__.py):
- the structure parser never raises (called directly, so `parse_message`'s safety net cannot
  hide a bug), and `parse_message` gives the same tree;
- every part's offsets lie inside the message and inside its parent, children in order;
- the stored JSON form reads back equal, and every string in it is valid UTF-8;
- the preview, the search text, and IMAP's BODYSTRUCTURE and ENVELOPE (plain and UTF-8) are made
  without an exception.
A hang is caught by the runner (fuzzing.py).
"""

from __future__ import annotations

from fuzzing import run

from postfach.imap.bodystructure import body_structure, envelope
from postfach.mime import BodyPart, ParsedMessage, parse_message, search_text
from postfach.mime.envelope import build_envelope
from postfach.mime.structure import StructureParser
from postfach.mime.text import preview
from tests.support.messages import NESTED_MIME

TOKENS = [
    b"\r\n", b"\n", b"\r", b"--b", b"--b--", b"--c\r\n", b":", b";", b" ", b"\t", b"\"", b"(", b"<", b">", b"=?",
    b"?=", b"=?utf-8?b?", b"=?iso-8859-1?q?", b"\xff", b"\x00", b"\r\n\r\n", b"boundary=b", b"charset=",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Disposition: attachment; filename*=utf-8''a%20b\r\n",
    b"From: ", b"To: ", b"Subject: ", b"Message-ID: ", b"In-Reply-To: ", b"Date: ", b"group: a@b, c@d;",
]
SEEDS = [
    NESTED_MIME,
    (
        b"Subject: plain\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"Gr=FC=DFe=\n\n"
    ),
]


def check_offsets(part: BodyPart, low: int, high: int) -> None:
    assert low <= part.header_start <= part.header_end <= part.body_end <= high, f"offsets out of place: {part}"
    previous_end = part.header_end
    for child in part.parts:
        assert child.header_start >= previous_end, "children overlap or are out of order"
        check_offsets(child, part.header_end, part.body_end)
        previous_end = child.body_end


def check(data: bytes) -> None:
    root, fields = StructureParser(data).parse()
    parsed = parse_message(data)
    assert parsed == ParsedMessage(build_envelope(fields), root, parsed.preview), "parse_message differs"
    check_offsets(root, 0, len(data))
    stored = parsed.to_json()
    stored.encode("utf-8")
    assert ParsedMessage.from_json(stored) == parsed, "the JSON form does not read back"
    preview(data, root).encode("utf-8")
    search_text(data, parsed).encode("utf-8")
    for utf8 in (False, True):
        assert isinstance(body_structure(root, utf8=utf8), bytes)
        assert isinstance(envelope(parsed.envelope, utf8=utf8), bytes)


if __name__ == "__main__":
    run(check, tokens=TOKENS, seeds=SEEDS)
