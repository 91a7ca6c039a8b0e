"""mime.envelope and mime.addresses: FETCH ENVELOPE as RFC 3501 §7.4.2 wants it."""

from __future__ import annotations

import pytest

from postfach.mime import Envelope, EnvelopeAddress, parse_message
from postfach.mime.addresses import parse_address_list

A = EnvelopeAddress
GROUP_END = A(None, None, None, None)


def envelope(headers: bytes) -> Envelope:
    return parse_message(headers + b"\r\n\r\nbody").envelope


def test_all_fields():
    env = envelope(
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
        b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
        b"Subject: afternoon meeting\r\n"
        b"To: mooch@owatagu.siam.edu.example\r\n"
        b"Cc: a@example.com, b@example.com\r\n"
        b"Bcc: c@example.com\r\n"
        b"In-Reply-To: <1@example.com>\r\n"
        b"Message-Id: <B27397-0100000@Blurdybloop.example>"
    )
    fred = A("Fred Foobar", None, "foobar", "Blurdybloop.example")
    assert env == Envelope(
        date="Mon, 7 Feb 1994 21:52:25 -0800 (PST)",
        subject="afternoon meeting",
        from_=(fred,),
        sender=(fred,),
        reply_to=(fred,),
        to=(A(None, None, "mooch", "owatagu.siam.edu.example"),),
        cc=(A(None, None, "a", "example.com"), A(None, None, "b", "example.com")),
        bcc=(A(None, None, "c", "example.com"),),
        in_reply_to="<1@example.com>",
        message_id="<B27397-0100000@Blurdybloop.example>",
    )


def test_missing_headers_are_nil():
    env = envelope(b"X-Other: 1")
    assert env == Envelope()
    assert env.subject is None and env.from_ == () and env.sender == ()


def test_empty_subject_is_an_empty_string():
    assert envelope(b"Subject:").subject == ""


def test_folded_subject_is_unfolded_but_not_decoded():
    env = envelope(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?b?w6k=?=\r\n\tend")
    # RFC 5322 §2.2.3: unfolding removes the CRLF, keeps the white space.
    assert env.subject == "=?utf-8?q?caf=C3=A9?= =?utf-8?b?w6k=?=\tend"


def test_bare_lf_folding():
    env = parse_message(b"Subject: one\n two\n\nbody").envelope
    assert env.subject == "one two"


def test_first_of_repeated_headers_wins():
    env = envelope(b"Subject: first\r\nSubject: second\r\nFrom: a@x\r\nFrom: b@y")
    assert env.subject == "first"
    assert env.from_ == (A(None, None, "a", "x"),)


@pytest.mark.parametrize("present", [b"", b"Sender:\r\nReply-To:  \r\n", b"Sender: ,\r\nReply-To: (c)\r\n"])
def test_sender_and_reply_to_default_to_from_when_absent_or_empty(present):
    env = envelope(present + b"From: a@example.com")
    assert env.sender == env.reply_to == env.from_ == (A(None, None, "a", "example.com"),)


def test_sender_and_reply_to_when_present():
    env = envelope(b"From: a@x\r\nSender: s@x\r\nReply-To: r@x")
    assert env.sender == (A(None, None, "s", "x"),)
    assert env.reply_to == (A(None, None, "r", "x"),)


def test_eight_bit_names_do_not_crash():
    env = envelope(b"From: J\xfcrgen <j@example.com>\r\nTo: \xe5\xbc\xa0\xe4\xbc\x9f <z@example.com>")
    assert env.from_ == (A("J\u00fcrgen", None, "j", "example.com"),)
    assert env.to == (A("\u5f20\u4f1f", None, "z", "example.com"),)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a@example.com", (A(None, None, "a", "example.com"),)),
        ("John Q. Public <jqp@example.com>", (A("John Q. Public", None, "jqp", "example.com"),)),
        ('"Doe, John" <jd@example.com>', (A("Doe, John", None, "jd", "example.com"),)),
        (r'"say \"hi\" \\ bye" <x@y>', (A('say "hi" \\ bye', None, "x", "y"),)),
        # RFC 2047 encoded-words verbatim, quoted or not.
        ("=?utf-8?q?J=C3=BCrgen?= <j@x>", (A("=?utf-8?q?J=C3=BCrgen?=", None, "j", "x"),)),
        ('"=?utf-8?b?SsO8cmdlbg==?=" <j@x>', (A("=?utf-8?b?SsO8cmdlbg==?=", None, "j", "x"),)),
        ("=?utf-8?q?a?= =?utf-8?q?b?= <j@x>", (A("=?utf-8?q?a?= =?utf-8?q?b?=", None, "j", "x"),)),
        ("Name   With\r\n  Spaces <n@x>", (A("Name With Spaces", None, "n", "x"),)),
        ("a@x (Comment Name)", (A("Comment Name", None, "a", "x"),)),
        ("Real (comment) <a@x>", (A("Real", None, "a", "x"),)),
        ("<@route1,@route2:user@host>", (A(None, "@route1,@route2", "user", "host"),)),
        ('"quoted local"@example.com', (A(None, None, '"quoted local"', "example.com"),)),
        ("user@[192.0.2.1]", (A(None, None, "user", "[192.0.2.1]"),)),
        ("a . b @ example . com", (A(None, None, "a.b", "example.com"),)),
        ("no-at-sign", (A(None, None, "no-at-sign", ""),)),
        ("<>", (A(None, None, "", ""),)),
        ("a@x,, ,b@y", (A(None, None, "a", "x"), A(None, None, "b", "y"))),
        ("", ()),
        ("   ", ()),
    ],
)
def test_addresses(header, expected):
    assert parse_address_list(header) == expected


def test_group_syntax():
    header = "Friends: a@x, \"B\" <b@y>;, c@z, undisclosed-recipients:;"
    assert parse_address_list(header) == (
        A(None, None, "Friends", None),
        A(None, None, "a", "x"),
        A("B", None, "b", "y"),
        GROUP_END,
        A(None, None, "c", "z"),
        A(None, None, "undisclosed-recipients", None),
        GROUP_END,
    )


def test_quoted_group_name_and_unclosed_group():
    assert parse_address_list('"My Group": a@x') == (
        A(None, None, "My Group", None),
        A(None, None, "a", "x"),
        GROUP_END,
    )


def test_group_in_envelope():
    env = envelope(b"To: undisclosed-recipients:;\r\nFrom: a@x")
    assert env.to == (A(None, None, "undisclosed-recipients", None), GROUP_END)


@pytest.mark.parametrize(
    "junk",
    ['"unterminated <a@x>', "(unterminated <a@x>", "<a@x", ">>><<<", ":;:;,,@@", "\\", "[x", "a@b@c", "((((("],
)
def test_malformed_address_lists_do_not_raise(junk):
    result = parse_address_list(junk)
    assert all(isinstance(a, EnvelopeAddress) for a in result)


def test_a_stray_closing_parenthesis_does_not_break_the_envelope():
    # Found by hypothesis: ")" without "(" once crashed the tokenizer (and the whole parse
    # fell back to a single text part).
    parsed = parse_message(b'From:) "A" <a@x>, G: b@y;\r\nSubject: s\r\n\r\nbody\r\n')
    assert [(a.mailbox, a.host) for a in parsed.envelope.from_] == [("a", "x"), ("G", None), ("b", "y"), (None, None)]
    assert parsed.envelope.subject == "s"
