"""imap.bodystructure: ENVELOPE, BODY and BODYSTRUCTURE, byte-exact, from messages
parsed with postfach.mime."""

from __future__ import annotations

from postfach.imap.bodystructure import body_structure, envelope
from postfach.mime import parse_message


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


def _lines(count: int, total: int) -> bytes:
    """A body of exactly ``count`` lines and ``total`` octets (no line end after the last)."""
    body = b"".join(b"x" * 48 + b"\r\n" for _ in range(count - 1))
    return body + b"y" * (total - len(body))


# The message behind the RFC 3501 §6.4.5 / §7.4.2 example structure:
#   ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)
#   ("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff")
#    "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED"
RFC_MESSAGE = (
    crlf(b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
         b"From: Terry Gray <gray@cac.washington.edu>\n"
         b"Subject: IMAP4rev1 WG mtg summary and minutes\n"
         b"To: imap@cac.washington.edu\n"
         b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n"
         b"Message-Id: <B27397-0100000@cac.washington.edu>\n"
         b"MIME-Version: 1.0\n"
         b"Content-Type: MULTIPART/MIXED; BOUNDARY=\"----=_NextPart\"\n\n"
         b"------=_NextPart\n"
         b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\n")
    + _lines(23, 1152)
    + crlf(b"\n------=_NextPart\n"
           b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
           b"Content-ID: <960723163407.20117h@cac.washington.edu>\n"
           b"Content-Description: Compiler diff\n"
           b"Content-Transfer-Encoding: BASE64\n\n")
    + _lines(73, 4554)
    + crlf(b"\n------=_NextPart--\n")
)


def test_rfc3501_example_body_byte_exact() -> None:
    parsed = parse_message(RFC_MESSAGE)
    assert body_structure(parsed.structure, extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )


def test_rfc3501_example_bodystructure_has_extension_data() -> None:
    parsed = parse_message(RFC_MESSAGE)
    assert body_structure(parsed.structure) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL) '
        b'"MIXED" ("BOUNDARY" "----=_NextPart") NIL NIL NIL)'
    )


def test_rfc3501_example_envelope_byte_exact() -> None:
    parsed = parse_message(RFC_MESSAGE)
    assert envelope(parsed.envelope) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )


def test_simple_message_and_empty_envelope() -> None:
    parsed = parse_message(b"\r\nhello\r\n")
    assert envelope(parsed.envelope) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert body_structure(parsed.structure, False) == b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1)'


NESTED = crlf(
    b"From: a@example.com\n"
    b"Subject: nested\n"
    b"Content-Type: multipart/mixed; boundary=outer\n\n"
    b"--outer\n"
    b"Content-Type: multipart/alternative; boundary=inner\n\n"
    b"--inner\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n\n"
    b"Hi=20there\n"
    b"--inner\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"Content-Language: de, en\n\n"
    b"<p>Hi</p>\n"
    b"--inner--\n"
    b"--outer\n"
    b"Content-Type: message/rfc822\n"
    b"Content-Disposition: attachment; filename=\"fwd.eml\"\n\n"
    b"From: \"B, Bee\" <b@example.org>\n"
    b"To: undisclosed-recipients:;\n"
    b"Subject: inner\n"
    b"Content-Type: image/png; name=x.png\n"
    b"Content-Transfer-Encoding: base64\n"
    b"Content-Location: http://example.org/x.png\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\n"
    b"iVBORw0KGgo=\n"
    b"--outer\n"
    b"Content-Type: message/rfc822\n"
    b"Content-Transfer-Encoding: base64\n\n"
    b"RnJvbTogeEB5Cgp6Cg==\n"
    b"--outer--\n"
)


def test_nested_multipart_with_message_rfc822_byte_exact() -> None:
    parsed = parse_message(NESTED)
    start = NESTED.index(b'From: "B, Bee"')
    inner = NESTED[start:NESTED.index(b"\r\n--outer", start)]
    assert (len(inner), inner.count(b"\n") + 1) == (247, 9)  # size and lines of the rfc822 part
    assert body_structure(parsed.structure) == (
        b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 10 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 1 NIL NIL ("de" "en") NIL) '
        b'"ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 247 '
        b'(NIL "inner" (("B, Bee" NIL "b" "example.org")) (("B, Bee" NIL "b" "example.org")) '
        b'(("B, Bee" NIL "b" "example.org")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'NIL NIL NIL NIL) '
        b'("IMAGE" "PNG" ("NAME" "x.png") NIL NIL "BASE64" 12 "Q2hlY2sgSW50ZWdyaXR5IQ==" NIL NIL '
        b'"http://example.org/x.png") 9 NIL ("ATTACHMENT" ("FILENAME" "fwd.eml")) NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 20 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL) '
        b'"MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
    )


def test_nested_body_form_has_no_extension_data_at_any_depth() -> None:
    parsed = parse_message(NESTED)
    assert body_structure(parsed.structure, extensible=False) == (
        b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 10 1)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 1) "ALTERNATIVE")'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 247 '
        b'(NIL "inner" (("B, Bee" NIL "b" "example.org")) (("B, Bee" NIL "b" "example.org")) '
        b'(("B, Bee" NIL "b" "example.org")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'NIL NIL NIL NIL) '
        b'("IMAGE" "PNG" ("NAME" "x.png") NIL NIL "BASE64" 12) 9)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 20 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) 1) "MIXED")'
    )


def test_strings_with_quotes_8bit_and_crlf() -> None:
    msg = crlf(b'Subject: say "hi" \\ there\nFrom: =?utf-8?q?x?= <a@b>\nContent-Type: text/plain; name="a\\"b"\n\nx')
    parsed = parse_message(msg)
    assert envelope(parsed.envelope).startswith(b'(NIL "say \\"hi\\" \\\\ there" (("=?utf-8?q?x?=" NIL "a" "b"))')
    assert b'("NAME" "a\\"b")' in body_structure(parsed.structure)
    umsg = "Subject: Grüße\r\n\r\nx".encode()
    parsed = parse_message(umsg)
    assert envelope(parsed.envelope).startswith(b"(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe NIL")
    assert envelope(parsed.envelope, utf8=True).startswith('(NIL "Grüße" NIL'.encode())


def test_unsplittable_multipart_is_a_one_part_body() -> None:
    parsed = parse_message(crlf(b"Content-Type: multipart/mixed\n\nno boundary here\n"))
    assert body_structure(parsed.structure, False) == b'("MULTIPART" "MIXED" NIL NIL NIL "7BIT" 18)'
