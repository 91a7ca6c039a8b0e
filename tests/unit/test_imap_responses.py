"""imap.responses: status lines, value encoding, FETCH, dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postfach.imap import responses as r
from postfach.imap.fetch_items import (
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchPreview,
    Section,
)


def test_tagged_and_untagged_status() -> None:
    assert r.tagged("A1", "OK", "LOGIN completed") == b"A1 OK LOGIN completed\r\n"
    assert r.tagged("A3", "OK", "APPEND completed", "APPENDUID 38505 3955") == \
        b"A3 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    assert r.tagged("A4", "NO", "no such\r\nmailbox", "TRYCREATE") == b"A4 NO [TRYCREATE] no such mailbox\r\n"
    assert r.untagged_status("OK", "Still here", "UIDVALIDITY 3857529045") == \
        b"* OK [UIDVALIDITY 3857529045] Still here\r\n"
    assert r.untagged(172, r.Atom("EXISTS")) == b"* 172 EXISTS\r\n"
    assert r.continuation() == b"+ \r\n"
    assert r.continuation("idling") == b"+ idling\r\n"
    assert r.continuation_data(b"\x00ab") == b"+ AGFi\r\n"


@pytest.mark.parametrize(("value", "utf8", "wire"), [
    ("abc", False, b'"abc"'),
    ("", False, b'""'),
    ('a"b\\c', False, b'"a\\"b\\\\c"'),
    ("NIL", False, b'"NIL"'),
    ("Grüße", False, b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
    ("Grüße", True, '"Grüße"'.encode()),
    (b"\xff\xfe", True, b"{2}\r\n\xff\xfe"),
    ("line\r\nbreak", False, b"{11}\r\nline\r\nbreak"),
    ("line\nbreak", True, b"{10}\r\nline\nbreak"),
    (None, False, b"NIL"),
    (42, False, b"42"),
    (r.Atom("\\Seen"), False, b"\\Seen"),
    (["a", None, 1, [r.Atom("X")]], False, b'("a" NIL 1 (X))'),
    (r.Literal(b"abc"), False, b"{3}\r\nabc"),
    (r.Literal(b"\x00\x01", binary=True), False, b"~{2}\r\n\x00\x01"),
    (r.Raw(b"(raw)"), False, b"(raw)"),
])
def test_value_encoding(value, utf8, wire) -> None:
    assert r.encode(value, utf8) == wire


def test_encode_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        r.encode(object())
    with pytest.raises(TypeError):
        r.encode(True)


def test_mailbox_names() -> None:
    assert r.mailbox("inbox") == b'"INBOX"'
    assert r.mailbox("Entwürfe") == b'"Entw&APw-rfe"'
    assert r.mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert r.mailbox("a&b") == b'"a&-b"'


def test_internaldate_format() -> None:
    zone = timezone(-timedelta(hours=7))
    assert r.format_internaldate(datetime(1996, 7, 17, 2, 44, 25, tzinfo=zone)) == "17-Jul-1996 02:44:25 -0700"
    assert r.format_internaldate(datetime(2024, 3, 5, 9, 0, 1, tzinfo=UTC)) == " 5-Mar-2024 09:00:01 +0000"
    india = timezone(timedelta(hours=5, minutes=30))
    assert r.format_internaldate(datetime(2024, 12, 31, 23, 59, 59, tzinfo=india)) == "31-Dec-2024 23:59:59 +0530"
    assert r.format_internaldate(datetime(2024, 1, 1)) == " 1-Jan-2024 00:00:00 +0000"


def test_fetch_response() -> None:
    zone = timezone(-timedelta(hours=7))
    items = [
        ("UID", 4827313),
        ("FLAGS", r.flag_list(["\\Seen", "$Forwarded"])),
        ("INTERNALDATE", r.format_internaldate(datetime(1996, 7, 17, 2, 44, 25, tzinfo=zone))),
        ("RFC822.SIZE", 44827),
        (FetchBody(Section((), "HEADER.FIELDS", ("From", "Subject")), peek=True).label(), r.Literal(b"From: x\r\n\r\n")),
        (FetchBody(Section((1, 2), "TEXT"), (0, 100)).label(), None),
        ("MODSEQ", [12121231000]),
    ]
    assert r.fetch(12, items) == (
        b'* 12 FETCH (UID 4827313 FLAGS (\\Seen $Forwarded) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b"RFC822.SIZE 44827 BODY[HEADER.FIELDS (From Subject)] {11}\r\nFrom: x\r\n\r\n "
        b"BODY[1.2.TEXT]<0> NIL MODSEQ (12121231000))\r\n"
    )


def test_fetch_labels() -> None:
    assert FetchBody(Section()).label() == "BODY[]"
    assert FetchBody(Section(), peek=True, binary=True, partial=(5, 10)).label() == "BINARY[]<5>"
    assert FetchBody(Section((2,), "MIME")).label() == "BODY[2.MIME]"
    assert FetchBody(Section((), "HEADER.FIELDS.NOT", ("X-Weird]", "To"))).label() == \
        'BODY[HEADER.FIELDS.NOT ("X-Weird]" To)]'
    assert FetchBinarySize((1, 3)).label() == "BINARY.SIZE[1.3]"
    assert FetchPreview(True).label() == "PREVIEW"
    assert FetchItem("RFC822.HEADER").label() == "RFC822.HEADER"


def test_list_status_search_responses() -> None:
    assert r.list_response(["\\HasNoChildren", "\\Sent"], "/", "Sent") == b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
    assert r.list_response([], None, "foo") == b'* LIST () NIL "foo"\r\n'
    assert r.list_response(["\\Subscribed"], "/", "Entwürfe", utf8=True) == \
        '* LIST (\\Subscribed) "/" "Entwürfe"\r\n'.encode()
    assert r.list_response([], "/", "Foo", extended=[r.Atom("CHILDINFO"), [r.Atom("SUBSCRIBED")]]) == \
        b'* LIST () "/" "Foo" (CHILDINFO (SUBSCRIBED))\r\n'
    assert r.status_response("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292), ("MAILBOXID", "F2212ea87")]) == \
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292 MAILBOXID (F2212ea87))\r\n'
    assert r.search_response([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert r.search_response([], modseq=None) == b"* SEARCH\r\n"
    assert r.search_response([2, 5], modseq=917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert r.esearch_response("A282", True, [("MIN", 2), ("COUNT", 3)]) == \
        b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3\r\n'
    assert r.capability(["IMAP4rev1", "IMAP4rev2", "LITERAL+"]) == b"* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+\r\n"
    assert r.literal_prefix(5) == b"{5}\r\n" and r.literal_prefix(5, True) == b"~{5}\r\n"
