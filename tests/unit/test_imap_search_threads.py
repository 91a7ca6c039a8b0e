"""RFC 5256 base subjects and thread shapes, and header parsing for SEARCH (no I/O)."""

from postfach.imap.search import header_fields, sent_date
from postfach.imap.threads import ThreadInput, base_subject, format_threads, ordered_subject, reference_ids, references


def test_base_subject_strips_reply_forward_markers_and_blobs():
    assert base_subject("Re: [list] Fwd: Hello (fwd)") == ("Hello", True)
    assert base_subject("[Fwd: Re: test]") == ("test", True)
    assert base_subject("RE:  re:   Subject  ") == ("Subject", True)
    assert base_subject("[blob]") == ("[blob]", False)  # a blob is kept when nothing else is left
    assert base_subject("=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=") == ("Grüße", True)
    assert base_subject(None) == ("", False)


def message(n, subject, sent, mid=None, refs=()):
    return ThreadInput(n, n, subject, sent, mid, list(refs))


def test_references_threads_by_parent_and_merges_subjects():
    messages = [
        message(1, "a", 1.0, "<1@x>"),
        message(2, "Re: a", 2.0, "<2@x>", ["<1@x>"]),
        message(3, "b", 3.0, "<3@x>"),
        message(4, "Re: a", 4.0, "<4@x>", ["<1@x>"]),
        message(5, "c", 5.0, "<5@x>", ["<gone@x>"]),  # parent never seen: a dummy, pruned
        message(6, "Re: b", 6.0, "<6@x>"),  # no references: joins "b" by subject
    ]
    assert format_threads(references(messages)) == "(1 (2)(4))(3 6)(5)"


def test_ordered_subject_groups_by_base_subject_in_date_order():
    messages = [message(1, "x", 3.0), message(2, "Re: y", 1.0), message(3, "y", 2.0), message(4, "Re: x", 4.0)]
    assert format_threads(ordered_subject(messages)) == "(2 3)(1 4)"


def test_reference_ids_prefer_references_over_in_reply_to():
    assert reference_ids("<a@x> <b@x>", "<c@x>") == ["<a@x>", "<b@x>"]
    assert reference_ids(None, "<c@x> (comment) <d@x>") == ["<c@x>"]


def test_header_fields_are_unfolded_decoded_and_repeated():
    block = b"Received: one\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n x\r\nReceived: two\r\n\r\n"
    assert header_fields(block) == [("received", "one"), ("subject", "Grüße x"), ("received", "two")]
    assert sent_date("Mon, 02 Mar 2026 10:00:00 +0100").utcoffset().total_seconds() == 3600
    assert sent_date("not a date") is None
