"""mime.structure: body structure and exact byte offsets, on hand-written messages."""

from __future__ import annotations

import mmap
import time

import pytest

from postfach.mime import BodyPart, ParsedMessage, parse_message


def header(data: bytes, part: BodyPart) -> bytes:
    return data[part.header_start:part.header_end]


def body(data: bytes, part: BodyPart) -> bytes:
    return data[part.header_end:part.body_end]


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


# --- single-part messages ---------------------------------------------------

SIMPLE = b"From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\nWorld\r\n"


def test_simple_text_message_is_one_leaf_with_default_type():
    parsed = parse_message(SIMPLE)
    root = parsed.structure
    assert (root.type, root.subtype) == ("text", "plain")
    # RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii.
    assert root.params == (("charset", "us-ascii"),)
    assert root.encoding == "7bit"
    assert header(SIMPLE, root) == b"From: a@example.com\r\nSubject: hi\r\n\r\n"
    assert body(SIMPLE, root) == b"Hello\r\nWorld\r\n"
    assert root.size == 14
    assert root.lines == 2
    assert root.parts == ()


def test_bare_lf_message_has_the_same_shape():
    data = SIMPLE.replace(b"\r\n", b"\n")
    root = parse_message(data).structure
    assert header(data, root) == b"From: a@example.com\nSubject: hi\n\n"
    assert body(data, root) == b"Hello\nWorld\n"
    assert root.lines == 2


def test_last_line_without_line_end_counts_as_a_line():
    data = b"Subject: x\r\n\r\none\r\ntwo"
    assert parse_message(data).structure.lines == 2


def test_message_without_header_body_separator_is_all_header():
    data = b"Subject: x\r\nFrom: a@example.com"
    root = parse_message(data).structure
    assert root.header_end == len(data) == root.body_end
    assert parse_message(data).envelope.subject == "x"


def test_non_header_line_ends_the_header_and_starts_the_body():
    data = b"Subject: x\r\nthis is text\r\nmore\r\n"
    root = parse_message(data).structure
    assert header(data, root) == b"Subject: x\r\n"
    assert body(data, root) == b"this is text\r\nmore\r\n"


def test_folded_header_lines_stay_in_the_header():
    data = b"Subject: a\r\n  folded\r\n\tagain\r\nContent-Type: text/html;\r\n charset=utf-8\r\n\r\nB"
    root = parse_message(data).structure
    assert (root.type, root.subtype, root.params) == ("text", "html", (("charset", "utf-8"),))
    assert body(data, root) == b"B"


def test_empty_input():
    root = parse_message(b"").structure
    assert (root.header_start, root.header_end, root.body_end) == (0, 0, 0)
    assert root.lines == 0


def test_content_fields():
    data = crlf(
        b"Content-Type: Text/PLAIN; CharSet=\"UTF-8\"; format=flowed (comment)\n"
        b"Content-Transfer-Encoding: Quoted-Printable\n"
        b"Content-ID: <id1@example.com>\n"
        b"Content-Description: =?utf-8?q?caf=C3=A9?=\n"
        b"Content-Disposition: INLINE; filename=\"a \\\"b\\\".txt\"; size=3\n"
        b"Content-Language: en, de-CH\n"
        b"Content-Location: http://example.com/\n  a/b.txt\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        b"\n"
        b"abc\n"
    )
    root = parse_message(data).structure
    assert (root.type, root.subtype) == ("text", "plain")
    assert root.params == (("charset", "UTF-8"), ("format", "flowed"))
    assert root.encoding == "quoted-printable"
    assert root.id == "<id1@example.com>"
    assert root.description == "=?utf-8?q?caf=C3=A9?="
    assert root.disposition == ("inline", (("filename", 'a "b".txt'), ("size", "3")))
    assert root.language == ("en", "de-CH")
    assert root.location == "http://example.com/a/b.txt"
    assert root.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="


@pytest.mark.parametrize(
    ("value", "expected"), [(b"BASE64", "base64"), (b" 8bit (comment)", "8bit"), (b"", "7bit")]
)
def test_transfer_encoding_is_lower_cased_without_comments(value, expected):
    data = b"Content-Transfer-Encoding:" + value + b"\r\n\r\nx"
    assert parse_message(data).structure.encoding == expected


def test_rfc2231_parameters_are_kept_as_written():
    data = (
        b"Content-Type: application/x-stuff;\r\n"
        b" title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
        b" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
        b" title*2=\"isn't it!\"\r\n\r\nx"
    )
    root = parse_message(data).structure
    assert root.params == (
        ("title*0*", "us-ascii'en'This%20is%20even%20more%20"),
        ("title*1*", "%2A%2A%2Afun%2A%2A%2A%20"),
        ("title*2", "isn't it!"),
    )


@pytest.mark.parametrize("value", [b"text", b"text/", b"/plain", b"text/pl ain", b"", b"te(xt/plain"])
def test_invalid_content_type_means_text_plain_us_ascii(value):
    root = parse_message(b"Content-Type: " + value + b"; charset=utf-8\r\n\r\nx").structure
    assert (root.type, root.subtype, root.params) == ("text", "plain", (("charset", "us-ascii"),))


def test_eight_bit_header_values_do_not_crash_and_decode_deterministically():
    data = (
        b"Subject: caf\xe9\r\n"  # Latin-1
        b"Content-Type: text/plain; name=\"\xc3\xa9t\xc3\xa9.txt\"\r\n"  # UTF-8
        b"Content-Description: \xff\xfe\r\n\r\nbody"
    )
    parsed = parse_message(data)
    assert parsed.envelope.subject == "caf\u00e9"
    assert parsed.structure.param("name") == "\u00e9t\u00e9.txt"
    assert parsed.structure.description == "\u00ff\u00fe"
    assert parse_message(data) == parsed
    parsed.to_json().encode("utf-8")  # no lone surrogates


# --- multipart ---------------------------------------------------------------

MIXED = crlf(
    b"From: a@example.com\n"
    b"Content-Type: multipart/mixed; boundary=\"outer b\"\n"
    b"\n"
    b"This is the preamble.\n"
    b"--outer b\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"Hello.\n"
    b"\n"
    b"--outer b \t\n"  # transport padding
    b"Content-Type: application/octet-stream\n"
    b"Content-Transfer-Encoding: base64\n"
    b"Content-Disposition: attachment; filename=a.bin\n"
    b"\n"
    b"AAECAw==\n"
    b"--outer b--\n"
    b"This is the epilogue.\n"
)


def test_multipart_mixed_with_attachment_offsets():
    root = parse_message(MIXED).structure
    assert (root.type, root.subtype) == ("multipart", "mixed")
    assert root.param("boundary") == "outer b"
    assert body(MIXED, root).startswith(b"This is the preamble.\r\n--outer b\r\n")
    assert body(MIXED, root).endswith(b"--outer b--\r\nThis is the epilogue.\r\n")
    text, attachment = root.parts
    assert header(MIXED, text) == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    # RFC 2046 §5.1.1: the CRLF before the delimiter belongs to the delimiter.
    assert body(MIXED, text) == b"Hello.\r\n"
    assert text.lines == 1
    assert header(MIXED, attachment) == crlf(
        b"Content-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=a.bin\n\n"
    )
    assert body(MIXED, attachment) == b"AAECAw=="
    assert attachment.encoding == "base64"
    assert attachment.disposition == ("attachment", (("filename", "a.bin"),))
    assert attachment.lines is None
    assert root.lines is None


def test_multipart_with_bare_lf():
    data = MIXED.replace(b"\r\n", b"\n")
    text, attachment = parse_message(data).structure.parts
    assert body(data, text) == b"Hello.\n"
    assert body(data, attachment) == b"AAECAw=="
    assert header(data, text) == b"Content-Type: text/plain; charset=us-ascii\n\n"


def test_delimiter_lookalikes_are_not_delimiters():
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\n\n"
        b"x--b\n"  # not at the start of a line
        b"--bb\n"  # a longer boundary
        b"--b-\n"
        b"--b--x\n"
        b"--b--\n"
    )
    (only,) = parse_message(data).structure.parts
    assert body(data, only) == b"x--b\r\n--bb\r\n--b-\r\n--b--x"


def test_empty_parts():
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n--b\r\n\r\n--b\r\n\r\n\r\n--b\r\n\r\nx\r\n--b--"
    )
    first, second, third, fourth = parse_message(data).structure.parts
    assert first.header_start == first.header_end == first.body_end
    # The only CRLF of the second part is the one before the next delimiter.
    assert second.header_start == second.header_end == second.body_end
    assert header(data, third) == b"\r\n" and body(data, third) == b""
    assert header(data, fourth) == b"\r\n" and body(data, fourth) == b"x"
    assert fourth.body_end == len(data) - len(b"\r\n--b--")


def test_part_without_headers_or_blank_line_is_all_body():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nno header here\r\n--b--\r\n"
    (part,) = parse_message(data).structure.parts
    assert header(data, part) == b""
    assert body(data, part) == b"no header here"
    assert (part.type, part.subtype) == ("text", "plain")


def test_missing_close_delimiter_runs_the_last_part_to_the_end():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n"
    one, two = parse_message(data).structure.parts
    assert body(data, one) == b"one"
    assert body(data, two) == b"two\r\n"
    assert two.body_end == len(data)


@pytest.mark.parametrize(
    "content_type",
    [b"multipart/mixed", b"multipart/mixed; boundary=\"\"", b"multipart/mixed; boundary=never"],
)
def test_multipart_that_cannot_be_split_is_a_leaf(content_type):
    data = b"Content-Type: " + content_type + b"\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n"
    root = parse_message(data).structure
    assert (root.type, root.subtype) == ("multipart", "mixed")
    assert root.parts == ()
    assert body(data, root) == b"--b\r\n\r\ntext\r\n--b--\r\n"
    assert root.lines == 4
    assert root.part((1,)) is root


def test_close_delimiter_only_means_no_parts():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n"
    assert parse_message(data).structure.parts == ()


NESTED = crlf(
    b"Content-Type: multipart/mixed; boundary=m\n"
    b"\n"
    b"--m\n"
    b"Content-Type: multipart/alternative; boundary=a\n"
    b"\n"
    b"--a\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"plain\n"
    b"--a\n"
    b"Content-Type: multipart/related; boundary=r\n"
    b"\n"
    b"--r\n"
    b"Content-Type: text/html\n"
    b"\n"
    b"<p>html</p>\n"
    b"--r\n"
    b"Content-Type: image/png\n"
    b"Content-ID: <img>\n"
    b"\n"
    b"PNG\n"
    b"--r--\n"
    b"related epilogue\n"
    b"--a--\n"
    b"\n"
    b"--m\n"
    b"Content-Type: application/pdf\n"
    b"\n"
    b"PDF\n"
    b"--m--\n"
)


def test_nested_multiparts_and_section_numbers():
    parsed = parse_message(NESTED)
    root = parsed.structure
    alternative = parsed.part((1,))
    assert (alternative.type, alternative.subtype) == ("multipart", "alternative")
    assert body(NESTED, alternative).endswith(b"related epilogue\r\n--a--\r\n")
    assert body(NESTED, parsed.part((1, 1))) == b"plain"
    related = parsed.part((1, 2))
    assert body(NESTED, related).endswith(b"--r--\r\nrelated epilogue")
    assert body(NESTED, parsed.part((1, 2, 1))) == b"<p>html</p>"
    image = parsed.part((1, 2, 2))
    assert (image.type, image.id) == ("image", "<img>")
    assert body(NESTED, image) == b"PNG"
    assert body(NESTED, parsed.part((2,))) == b"PDF"
    assert parsed.part(()) is root
    for missing in [(3,), (0,), (1, 3), (1, 1, 1), (2, 1), (1, 2, 2, 1), (-1,)]:
        assert parsed.part(missing) is None, missing


ATTACHED = crlf(
    b"From: outer@example.com\n"
    b"Subject: outer\n"
    b"Content-Type: multipart/mixed; boundary=o\n"
    b"\n"
    b"--o\n"
    b"\n"
    b"see attached\n"
    b"--o\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"From: Inner <inner@example.com>\n"
    b"Subject: inner\n"
    b"Content-Type: multipart/alternative; boundary=i\n"
    b"\n"
    b"--i\n"
    b"\n"
    b"inner plain\n"
    b"--i\n"
    b"Content-Type: text/html\n"
    b"\n"
    b"<b>inner</b>\n"
    b"--i--\n"
    b"--o--\n"
)


def test_message_rfc822_attachment_containing_a_multipart():
    parsed = parse_message(ATTACHED)
    assert parsed.envelope.subject == "outer"
    message = parsed.part((2,))
    assert (message.type, message.subtype) == ("message", "rfc822")
    assert message.envelope.subject == "inner"
    assert message.envelope.from_[0].mailbox == "inner"
    (inner,) = message.parts
    assert inner.header_start == message.header_end and inner.body_end == message.body_end
    assert header(ATTACHED, inner).startswith(b"From: Inner <inner@example.com>\r\n")
    assert header(ATTACHED, inner).endswith(b"boundary=i\r\n\r\n")
    assert body(ATTACHED, message).endswith(b"<b>inner</b>\r\n--i--")
    assert message.lines == 12
    # RFC 3501 §6.4.5: numbering continues into the encapsulated message;
    # its multipart root has no number of its own.
    assert body(ATTACHED, parsed.part((2, 1))) == b"inner plain"
    assert body(ATTACHED, parsed.part((2, 2))) == b"<b>inner</b>"
    assert parsed.part((2, 3)) is None
    assert parsed.part((2, 1, 1)) is None


def test_message_rfc822_containing_a_single_part_message():
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=o\n\n"
        b"--o\nContent-Type: message/rfc822\n\nSubject: s\n\ninner body\n--o--\n"
    )
    parsed = parse_message(data)
    message = parsed.part((1,))
    assert message.envelope.subject == "s"
    assert parsed.part((1, 1)) is message.parts[0]
    assert body(data, parsed.part((1, 1))) == b"inner body"
    assert parsed.part((1, 2)) is None


def test_top_level_message_rfc822():
    data = b"Content-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nbody"
    parsed = parse_message(data)
    assert parsed.part((1,)) is parsed.structure
    assert body(data, parsed.part((1, 1))) == b"body"


def test_encoded_message_rfc822_is_a_leaf():
    data = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogcw=="
    root = parse_message(data).structure
    assert root.parts == () and root.envelope is None
    assert root.part((1, 1)) is None


def test_digest_parts_default_to_message_rfc822():
    data = crlf(
        b"Content-Type: multipart/digest; boundary=d\n\n"
        b"--d\n\nSubject: first\n\none\n"
        b"--d\nContent-Type: text/plain\n\nnot a message\n"
        b"--d--\n"
    )
    parsed = parse_message(data)
    first, second = parsed.structure.parts
    assert (first.type, first.subtype, first.params) == ("message", "rfc822", ())
    assert first.envelope.subject == "first"
    assert body(data, parsed.part((1, 1))) == b"one"
    assert (second.type, second.subtype) == ("text", "plain")


def test_digest_default_does_not_leak_into_nested_multiparts():
    data = crlf(
        b"Content-Type: multipart/digest; boundary=d\n\n"
        b"--d\nContent-Type: multipart/mixed; boundary=m\n\n--m\n\nplain\n--m--\n"
        b"--d--\n"
    )
    inner = parse_message(data).part((1, 1))
    assert (inner.type, inner.subtype) == ("text", "plain")


def test_input_types_give_the_same_result(tmp_path):
    expected = parse_message(NESTED)
    assert parse_message(bytearray(NESTED)) == expected
    assert parse_message(memoryview(NESTED)) == expected
    path = tmp_path / "m"
    path.write_bytes(NESTED)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert parse_message(mm) == expected


def test_json_round_trip():
    for data in (SIMPLE, MIXED, NESTED, ATTACHED):
        parsed = parse_message(data)
        text = parsed.to_json()
        assert ParsedMessage.from_json(text) == parsed
        assert ": " not in text[:20] and ", " not in text[:20]  # compact


def test_from_json_rejects_unknown_format():
    with pytest.raises(ValueError):
        ParsedMessage.from_json("[99]")


# --- limits ------------------------------------------------------------------

def test_deep_nesting_is_cut_off_into_a_leaf():
    depth = 300
    head = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(depth)
    )
    data = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + head + b"--b%d--\r\n" % depth
    root = parse_message(data).structure
    levels, part = 0, root
    while part.parts:
        part, levels = part.parts[0], levels + 1
    assert levels == 100
    assert part.type == "multipart" and part.lines is not None


def test_deeply_nested_messages_are_cut_off():
    data = b"Content-Type: message/rfc822\r\n\r\n" * 500 + b"Subject: end\r\n\r\nx"
    root = parse_message(data).structure
    levels, part = 0, root
    while part.parts:
        part, levels = part.parts[0], levels + 1
    assert levels == 100


def test_part_count_is_limited():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 30_000 + b"--b--\r\n"
    start = time.perf_counter()
    root = parse_message(data).structure
    assert time.perf_counter() - start < 5
    assert len(root.parts) < 10_001
    assert root.parts[-1].body_end == len(data)


def test_large_message_is_scanned_not_copied_around():
    attachment = (b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAx\r\n") * 280_000
    data = (
        b"Content-Type: multipart/mixed; boundary=xyz\r\n\r\n--xyz\r\n\r\nhello\r\n"
        + b"--xyz\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment + b"--xyz--\r\n"
    )
    assert len(data) > 20_000_000
    start = time.perf_counter()
    parsed = parse_message(data)
    assert time.perf_counter() - start < 2  # typically ~10 ms
    assert body(data, parsed.part((2,))) == attachment[:-2]


def test_many_near_miss_delimiters_switch_search_strategy_without_changing_results():
    noise = b"--bX\r\n--b-\r\n" * 100  # 200 lines that start like a delimiter
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\n" + noise + b"end one\r\n"
        b"--b\r\n\r\n" + noise + b"end two\r\n"
        b"--b--\r\n"
    )
    one, two = parse_message(data).structure.parts
    assert body(data, one) == noise + b"end one"
    assert body(data, two) == noise + b"end two"


def test_pathological_near_misses_are_fast():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\r\n--bb" * 2_000_000 + b"\r\n--b--"
    start = time.perf_counter()
    root = parse_message(data).structure
    assert time.perf_counter() - start < 3  # typically ~0.1 s
    assert root.parts == ()


def test_non_ascii_boundary_matches_the_original_bytes():
    for boundary in (b"gr\xc3\xbc\xc3\x9fe", b"gr\xfc\xdfe"):  # UTF-8, and Latin-1 (not UTF-8)
        data = (
            b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
            b"--" + boundary + b"\r\n\r\none\r\n--" + boundary + b"--\r\n"
        )
        (part,) = parse_message(data).structure.parts
        assert body(data, part) == b"one"


def test_a_bug_in_the_parser_still_yields_a_deliverable_result(monkeypatch, caplog):
    def broken(self):
        raise RuntimeError("bug")

    monkeypatch.setattr("postfach.mime.structure.StructureParser.parse", broken)
    parsed = parse_message(SIMPLE)
    assert parsed.structure.header_end == 0 and parsed.structure.body_end == len(SIMPLE)
    assert parsed.preview == ""
    assert "MIME parse failed" in caplog.text
