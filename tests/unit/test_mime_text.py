"""mime.text: PREVIEW (RFC 8970) and the search text, decoded from transfer encoding and charset."""

from __future__ import annotations

import base64

import pytest

from postfach.mime import parse_message, search_text
from postfach.mime.text import MAX_PART_TEXT, decode_charset, decode_transfer, strip_html


def single(content_type: bytes, encoding: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"Subject: s\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding + b"\r\n" + extra + b"\r\n" + body
    )


@pytest.mark.parametrize(
    ("charset", "encoding", "body"),
    [
        (b"iso-8859-1", b"quoted-printable", b"Gr=FC=DFe aus K=F6ln =\r\nund mehr"),
        (b"utf-8", b"quoted-printable", b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln =\r\nund mehr"),
        (b"iso-8859-1", b"base64", base64.encodebytes("Grüße aus Köln und mehr".encode("latin-1"))),
        (b"utf-8", b"base64", base64.encodebytes("Grüße aus Köln und mehr".encode("utf-8"))),
        (b"UTF-8", b"8bit", "Grüße aus Köln und mehr".encode("utf-8")),
    ],
)
def test_preview_is_decoded(charset, encoding, body):
    data = single(b"text/plain; charset=" + charset, encoding, body)
    parsed = parse_message(data)
    assert parsed.preview == "Grüße aus Köln und mehr"
    assert "Grüße aus Köln und mehr" in search_text(data, parsed)


def test_preview_collapses_white_space_and_is_at_most_200_characters():
    body = b"  first\r\n\r\n\tsecond   third " + b"word " * 100
    preview = parse_message(single(b"text/plain", b"7bit", body)).preview
    assert preview.startswith("first second third word word")
    assert len(preview) == 200
    assert "  " not in preview


def test_preview_of_html_strips_tags_scripts_styles_and_entities():
    html = (
        b"<html><head><title>T</title><style>p { color: red }</style></head>"
        b"<body><script>var x = 1;</script><!-- hidden --><p>Hello&nbsp;<b>w</b>orld &amp; co</p>"
        b"<div>next</div></body></html>"
    )
    parsed = parse_message(single(b"text/html; charset=utf-8", b"7bit", html))
    assert parsed.preview == "Hello world & co next"  # &nbsp; is white space too


def test_preview_prefers_text_plain_over_html_anywhere_in_the_tree():
    data = (
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain version\r\n"
        b"--b--\r\n"
    )
    assert parse_message(data).preview == "plain version"


def test_preview_skips_attachments_and_attached_messages():
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nfile\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<i>the html</i>\r\n"
        b"--b--\r\n"
    )
    assert parse_message(data).preview == "the html"


def test_no_text_part_means_empty_preview():
    data = single(b"application/pdf", b"base64", b"JVBERi0=")
    assert parse_message(data).preview == ""


def test_preview_of_a_truncated_prefix_does_not_end_in_garbage():
    body = ("ä" * 40_000).encode("utf-8")  # larger than the raw prefix looked at
    preview = parse_message(single(b"text/plain; charset=utf-8", b"8bit", body)).preview
    assert preview == "ä" * 200


def test_undeclared_or_wrong_charsets_fall_back():
    assert decode_charset("é".encode("utf-8"), None) == "é"
    assert decode_charset("é".encode("latin-1"), "us-ascii") == "é"
    assert decode_charset(b"caf\xe9", "x-no-such-charset") == "café"
    assert decode_charset(b"abc", "base64") == "abc"  # a codec, but not a charset


def test_decode_transfer_tolerates_broken_input():
    assert decode_transfer(b"aGVsbG8", "base64") == b"hello"  # padding missing
    assert decode_transfer(b"aGVs\r\nbG8=\r\n", "base64") == b"hello"
    assert decode_transfer(b"aGVsbG8", "base64", truncated=True) == b"hel"
    assert decode_transfer(b"!!!", "base64") == b""
    assert decode_transfer(b"a=ZZb=", "quoted-printable") == b"a=ZZb"
    assert decode_transfer(b"raw", "x-unknown") == b"raw"


def test_strip_html_unterminated():
    assert strip_html("a <b c").strip() == "a"
    assert strip_html("x<script>never closed").strip() == "x"


SEARCHABLE = (
    b"From: =?iso-8859-1?q?J=FCrgen?= <j@example.com>\r\n"
    b"To: Team <team@example.com>\r\n"
    b"Subject: =?utf-8?b?w5xiZXJzaWNodA==?=\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<p>Sch=F6ne <b>Gr=FC=DFe</b></p>\r\n"
    b"--b\r\nContent-Type: application/pdf; name=\"=?utf-8?q?Rechnung_M=C3=A4rz.pdf?=\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: =?utf-8?q?inner_subj=C3=A9ct?=\r\nFrom: Inner Person <ip@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("Inhalt der weitergeleiteten Nachricht".encode("utf-8"))
    + b"--b--\r\n"
)


def test_search_text_has_decoded_headers_names_and_text_parts():
    parsed = parse_message(SEARCHABLE)
    text = search_text(SEARCHABLE, parsed)
    for expected in [
        "Übersicht", "Jürgen", "j@example.com", "Team", "Schöne Grüße",
        "Rechnung März.pdf", "inner subjéct", "Inner Person", "ip@example.org",
        "Inhalt der weitergeleiteten Nachricht",
    ]:
        assert expected in text, expected
    assert "JVBERi0" not in text  # attachments are not text
    assert "<p>" not in text


def test_search_text_is_capped_per_part():
    data = single(b"text/plain", b"7bit", b"x" * (MAX_PART_TEXT + 5000))
    text = search_text(data, parse_message(data))
    assert MAX_PART_TEXT <= len(text) <= MAX_PART_TEXT + 100


def test_preview_of_html_looks_past_a_large_head():
    html = b"<html><head><style>" + b"p{}" * 30_000 + b"</style></head><body>" + b"word " * 100
    parsed = parse_message(single(b"text/html", b"7bit", html))
    assert parsed.preview == ("word " * 40).strip()
