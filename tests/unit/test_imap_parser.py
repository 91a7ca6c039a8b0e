"""imap.parser: real client command lines, fed whole, byte by byte and pipelined;
literals of every kind; errors and resynchronisation; fuzzing."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postfach.imap import commands as c
from postfach.imap import search_keys as k
from postfach.imap.fetch_items import (
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchPreview,
    Section,
)
from postfach.imap.parser import (
    NEED_DATA,
    CommandError,
    Continuation,
    ErrorKind,
    IdleDone,
    LiteralChunk,
    Parser,
    ParserStateError,
    SaslResponse,
)
from postfach.imap.sequence import SequenceSet

S = SequenceSet.parse


def run(parser: Parser, data: bytes = b"", chunk: int | None = None, accept: bool = True) -> list:
    """Feed ``data`` (in pieces of ``chunk``) and collect every event, accepting literals."""
    out: list = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces or [b""]:
        parser.feed(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, Continuation):
                if accept:
                    parser.accept_literal()
                else:
                    parser.reject_literal()
    return out


def parse_one(data: bytes, **kw) -> object:
    events = run(Parser(**kw), data)
    assert len(events) == 1, events
    return events[0]


HEADER_FIELDS = ("From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Priority",
                 "X-Priority", "References", "Newsgroups", "In-Reply-To", "Content-Type", "Reply-To")

# (line as the client sends it, the command it must give)
CASES: list[tuple[bytes, c.Command]] = [
    (b"a001 CAPABILITY\r\n", c.Capability("a001")),
    (b"a002 noop\r\n", c.Noop("a002")),
    (b"A023 LOGOUT\r\n", c.Logout("A023")),
    (b"a002 STARTTLS\r\n", c.StartTLS("a002")),
    (b"a001 LOGIN SMITH SESAME\r\n", c.Login("a001", "SMITH", "SESAME")),
    (b'1 login "user@example.com" "p\\"w\\\\d"\r\n', c.Login("1", "user@example.com", 'p"w\\d')),
    (b"A01 AUTHENTICATE PLAIN\r\n", c.Authenticate("A01", "PLAIN", None)),
    (b"A01 AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n", c.Authenticate("A01", "PLAIN", b"\x00user\x00pass")),
    (b"A01 AUTHENTICATE EXTERNAL =\r\n", c.Authenticate("A01", "EXTERNAL", b"")),
    (b"t1 ENABLE CONDSTORE QRESYNC utf8=accept\r\n", c.Enable("t1", ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT"))),
    (b'a ID ("name" "Thunderbird" "version" "115.3.1")\r\n',
     c.Id("a", (("name", "Thunderbird"), ("version", "115.3.1")))),
    (b"a ID NIL\r\n", c.Id("a", None)),
    (b"A142 SELECT INBOX\r\n", c.Select("A142", "INBOX")),
    (b"A142 SELECT inbox (CONDSTORE)\r\n", c.Select("A142", "INBOX", condstore=True)),
    (b'A02 SELECT "INBOX" (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n',
     c.Select("A02", "INBOX", qresync=c.Qresync(67890007, 20050715194045000, S("41,43:211,214:541")))),
    (b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:15,20 4,6,8:15,20)))\r\n",
     c.Select("B04", "INBOX", qresync=c.Qresync(67890007, 90060115194045000, S("41:211,214:541"),
                                                 (S("1:15,20"), S("4,6,8:15,20"))))),
    (b"A932 EXAMINE blurdybloop\r\n", c.Examine("A932", "blurdybloop")),
    (b"A003 CREATE owatagusiam/\r\n", c.Create("A003", "owatagusiam/")),
    (b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n", c.Create("t1", "MySpecial", ("\\Drafts", "\\Sent"))),
    (b'A1 CREATE "Entw&APw-rfe"\r\n', c.Create("A1", "Entwürfe")),
    (b"A683 DELETE blurdybloop\r\n", c.Delete("A683", "blurdybloop")),
    (b"A683 RENAME blurdybloop sarasoop\r\n", c.Rename("A683", "blurdybloop", "sarasoop")),
    (b"A002 SUBSCRIBE #news.comp.mail.mime\r\n", c.Subscribe("A002", "#news.comp.mail.mime")),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", c.Unsubscribe("A002", "#news.comp.mail.mime")),
    (b'A101 LIST "" ""\r\n', c.List("A101", "", ("",))),
    (b"A102 LIST #news.comp.mail.misc %\r\n", c.List("A102", "#news.comp.mail.misc", ("%",))),
    (b'A202 LIST ~/Mail/ %\r\n', c.List("A202", "~/Mail/", ("%",))),
    (b'5 list "" "*"\r\n', c.List("5", "", ("*",))),
    (b'A01 LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Sent*" %/x)\r\n',
     c.List("A01", "", ("INBOX", "Sent*", "%/x"), ("SUBSCRIBED", "RECURSIVEMATCH"), extended=True)),
    (b'A01 LIST "" "*" RETURN (SPECIAL-USE)\r\n', c.List("A01", "", ("*",), (), ("SPECIAL-USE",), extended=True)),
    (b'A01 LIST "" % RETURN (CHILDREN SUBSCRIBED STATUS (MESSAGES UNSEEN SIZE))\r\n',
     c.List("A01", "", ("%",), (), ("CHILDREN", "SUBSCRIBED", "STATUS"), ("MESSAGES", "UNSEEN", "SIZE"), True)),
    (b'A002 LSUB "#news." "comp.mail.*"\r\n', c.Lsub("A002", "#news.", "comp.mail.*")),
    (b"A001 NAMESPACE\r\n", c.Namespace("A001")),
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", c.Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES"))),
    (b'a STATUS "INBOX" (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT MAILBOXID)\r\n',
     c.Status("a", "INBOX", ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                             "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID"))),
    (b"A002 IDLE\r\n", c.Idle("A002")),
    (b"FXXZ CHECK\r\n", c.Check("FXXZ")),
    (b"A341 CLOSE\r\n", c.Close("A341")),
    (b"A342 UNSELECT\r\n", c.Unselect("A342")),
    (b"A202 EXPUNGE\r\n", c.Expunge("A202")),
    (b"A003 UID EXPUNGE 3000:3002\r\n", c.Expunge("A003", True, S("3000:3002"))),
    (b"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
     c.Search("A282", k.SearchAnd((k.SearchFlag("\\Flagged"), k.SearchDate("internal", "since", date(1994, 2, 1)),
                                   k.SearchNot(k.SearchHeader("from", "Smith")))))),
    (b"A284 SEARCH TEXT \"string not in mailbox\"\r\n",
     c.Search("A284", k.SearchText("text", "string not in mailbox"))),
    (b"A285 SEARCH CHARSET UTF-8 TEXT {14+}\r\n\xd0\x9d\xd0\xb8\xd0\xba\xd0\xbe\xd0\xbb\xd0\xb0\xd0\xb9\r\n",
     c.Search("A285", k.SearchText("text", "Николай"), charset="UTF-8")),
    (b"a UID SEARCH 1:* NOT DELETED\r\n",
     c.Search("a", k.SearchAnd((k.SearchSequence(S("1:*")), k.SearchNot(k.SearchFlag("\\Deleted")))), uid=True)),
    (b"A1 UID SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n",
     c.Search("A1", k.SearchFlag("\\Seen", False), None, ("MIN", "MAX", "COUNT"), True)),
    (b"A1 SEARCH RETURN () FLAGGED\r\n", c.Search("A1", k.SearchFlag("\\Flagged"), None, ())),
    (b"A1 SEARCH RETURN (SAVE) FLAGGED\r\n", c.Search("A1", k.SearchFlag("\\Flagged"), None, ("SAVE",))),
    (b"A2 SEARCH $ SMALLER 4096\r\n",
     c.Search("A2", k.SearchAnd((k.SearchSequence(SequenceSet(saved=True)), k.SearchSize("smaller", 4096))))),
    (b"a SEARCH OR (SEEN ANSWERED) (KEYWORD $Forwarded) NEW OLD RECENT UNDRAFT\r\n",
     c.Search("a", k.SearchAnd((
         k.SearchOr(k.SearchAnd((k.SearchFlag("\\Seen"), k.SearchFlag("\\Answered"))), k.SearchFlag("$Forwarded")),
         k.SearchAnd((k.SearchFlag("\\Recent"), k.SearchFlag("\\Seen", False))),
         k.SearchFlag("\\Recent", False), k.SearchFlag("\\Recent"), k.SearchFlag("\\Draft", False))))),
    (b'a SEARCH HEADER Message-ID "<x@y>" SENTBEFORE "1-Jan-2020" LARGER 10 UID 5:* BODY hi CC c BCC b TO t SUBJECT s\r\n',
     c.Search("a", k.SearchAnd((
         k.SearchHeader("message-id", "<x@y>"), k.SearchDate("sent", "before", date(2020, 1, 1)),
         k.SearchSize("larger", 10), k.SearchSequence(S("5:*"), uid=True), k.SearchText("body", "hi"),
         k.SearchHeader("cc", "c"), k.SearchHeader("bcc", "b"), k.SearchHeader("to", "t"),
         k.SearchHeader("subject", "s"))))),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338 YOUNGER 3600 EMAILID M6d99ac3275bb4e\r\n',
     c.Search("a", k.SearchAnd((k.SearchModSeq(620162338, "/flags/\\draft", "all"), k.SearchAge("younger", 3600),
                                k.SearchObjectId("emailid", "M6d99ac3275bb4e"))))),
    (b"A001 FETCH 1 ALL\r\n", c.Fetch("A001", S("1"), tuple(FetchItem(n) for n in
                                                            ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")))),
    (b"A001 FETCH 1:2 fast\r\n", c.Fetch("A001", S("1:2"), tuple(FetchItem(n) for n in
                                                                 ("FLAGS", "INTERNALDATE", "RFC822.SIZE")))),
    (b"A001 FETCH * FULL\r\n", c.Fetch("A001", S("*"), tuple(FetchItem(n) for n in
                                                             ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")))),
    (b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
     c.Fetch("A654", S("2:4"), (FetchItem("FLAGS"), FetchBody(Section((), "HEADER.FIELDS", ("DATE", "FROM")))))),
    ((b"A1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
      b"Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n"),
     c.Fetch("A1", S("1:*"), (FetchItem("UID"), FetchItem("RFC822.SIZE"), FetchItem("FLAGS"),
                              FetchBody(Section((), "HEADER.FIELDS", HEADER_FIELDS), peek=True)), uid=True)),
    (b"3 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
     c.Fetch("3", S("1:*"), (FetchItem("FLAGS"), FetchItem("UID")), True, 12345, True)),
    (b"a FETCH 5 (BODYSTRUCTURE ENVELOPE INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ EMAILID THREADID)\r\n",
     c.Fetch("a", S("5"), tuple(FetchItem(n) for n in ("BODYSTRUCTURE", "ENVELOPE", "INTERNALDATE", "RFC822",
                                                        "RFC822.HEADER", "RFC822.TEXT", "MODSEQ", "EMAILID", "THREADID")))),
    (b"a FETCH 5 (BODY[] BODY.PEEK[1.2.MIME] BODY[TEXT]<0.2048> BODY[2.HEADER.FIELDS.NOT (X-A)] BODY[3.TEXT] BODY[HEADER])\r\n",
     c.Fetch("a", S("5"), (FetchBody(Section()), FetchBody(Section((1, 2), "MIME"), peek=True),
                           FetchBody(Section((), "TEXT"), (0, 2048)),
                           FetchBody(Section((2,), "HEADER.FIELDS.NOT", ("X-A",))),
                           FetchBody(Section((3,), "TEXT")), FetchBody(Section((), "HEADER"))))),
    (b"a UID FETCH 7 (BINARY.PEEK[1]<100.200> BINARY[] BINARY.SIZE[2] PREVIEW PREVIEW (LAZY) UID)\r\n",
     c.Fetch("a", S("7"), (FetchBody(Section((1,)), (100, 200), True, True), FetchBody(Section(), binary=True),
                           FetchBinarySize((2,)), FetchPreview(False), FetchPreview(True), FetchItem("UID")), True)),
    (b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", c.Store("A003", S("2:4"), "+", False, ("\\Deleted",))),
    (b"A003 STORE 2:4 -FLAGS.SILENT \\Seen $Junk\r\n", c.Store("A003", S("2:4"), "-", True, ("\\Seen", "$Junk"))),
    (b"A003 UID STORE 1:* FLAGS ()\r\n", c.Store("A003", S("1:*"), "", False, (), True)),
    (b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
     c.Store("d105", S("7,5,9"), "+", True, ("\\Deleted",), False, 320162338)),
    (b"A003 COPY 2:4 MEETING\r\n", c.Copy("A003", S("2:4"), "MEETING")),
    (b'a UID COPY 10:12 "Deleted Items"\r\n', c.Copy("a", S("10:12"), "Deleted Items", True)),
    (b"a UID MOVE 42 Trash\r\n", c.Move("a", S("42"), "Trash", True)),
    (b"a MOVE $ Archive\r\n", c.Move("a", SequenceSet(saved=True), "Archive")),
    (b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n",
     c.Sort("A283", (c.SortCriterion("SUBJECT"), c.SortCriterion("DATE", True)), "UTF-8", k.SearchAll())),
    (b"A285 UID SORT (ARRIVAL) US-ASCII SINCE 1-Feb-1994 FROM x\r\n",
     c.Sort("A285", (c.SortCriterion("ARRIVAL"),), "US-ASCII",
            k.SearchAnd((k.SearchDate("internal", "since", date(1994, 2, 1)), k.SearchHeader("from", "x"))), True)),
    (b"A1 SORT RETURN (MIN) (SIZE) UTF-8 ALL\r\n",
     c.Sort("A1", (c.SortCriterion("SIZE"),), "UTF-8", k.SearchAll(), False, ("MIN",))),
    (b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n",
     c.Thread("A283", "ORDEREDSUBJECT", "UTF-8", k.SearchDate("internal", "since", date(2000, 3, 5)))),
    (b"A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"\r\n",
     c.Thread("A284", "REFERENCES", "US-ASCII", k.SearchText("text", "gewp"), True)),
    (b"G GETQUOTA \"\"\r\n", c.GetQuota("G", "")),
    (b"A003 GETQUOTAROOT INBOX\r\n", c.GetQuotaRoot("A003", "INBOX")),
    (b'S SETQUOTA "" (STORAGE 512)\r\n', c.SetQuota("S", "", (("STORAGE", 512),))),
    (b"a COMPRESS DEFLATE\r\n", c.Compress("a", "DEFLATE")),
    # bare LF line end, as some scripts send
    (b"b NOOP\n", c.Noop("b")),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[line[:40].decode("latin-1") for line, _ in CASES])
def test_command_parsed_whole(line: bytes, expected: c.Command) -> None:
    assert parse_one(line) == expected


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[line[:40].decode("latin-1") for line, _ in CASES])
def test_command_parsed_byte_by_byte(line: bytes, expected: c.Command) -> None:
    assert run(Parser(), line, chunk=1) == [expected]


def test_all_commands_pipelined_in_one_buffer() -> None:
    data = b"".join(line for line, _ in CASES)
    assert run(Parser(), data) == [expected for _, expected in CASES]
    assert run(Parser(), data, chunk=7) == [expected for _, expected in CASES]


# --- literals -------------------------------------------------------------------

def test_synchronizing_literal_asks_before_data() -> None:
    p = Parser()
    p.feed(b"A001 LOGIN {11}\r\n")
    event = p.next_event()
    assert event == Continuation("A001", "LOGIN", 11, False, False)
    with pytest.raises(ParserStateError):
        p.next_event()
    p.accept_literal()
    assert p.next_event() is NEED_DATA
    p.feed(b"FRED FOOBAR {7}\r\n")
    assert p.next_event() == Continuation("A001", "LOGIN", 7, False, False)
    p.accept_literal()
    p.feed(b"fat man\r\n")
    assert p.next_event() == c.Login("A001", "FRED FOOBAR", "fat man")
    assert p.next_event() is NEED_DATA


def test_inside_command_from_the_literal_to_the_end_of_its_line() -> None:
    # The server has the kernel acknowledge at once while a client sends the rest of a command
    # (imap/server.py): the literal, and the CRLF a client may send after it on its own.
    p = Parser()
    p.feed(b"A1 NOOP")
    assert p.next_event() is NEED_DATA and not p.inside_command  # a line coming in pieces: no literal
    p.feed(b"\r\nA2 APPEND INBOX {5}\r\n")
    assert p.next_event() == c.Noop("A1")
    assert isinstance(p.next_event(), Continuation) and not p.inside_command
    p.accept_literal()
    assert p.inside_command
    p.feed(b"Sub")
    while (event := p.next_event()) is not NEED_DATA:
        assert isinstance(event, LiteralChunk)
    assert p.inside_command
    p.feed(b"j:")
    while (event := p.next_event()) is not NEED_DATA:
        pass
    assert p.inside_command  # the literal is in; its line is not finished
    p.feed(b"\r\n")
    assert isinstance(p.next_event(), c.Append)
    assert p.next_event() is NEED_DATA and not p.inside_command


def test_literal_mailbox_name_and_nonsync_literals() -> None:
    assert parse_one(b"A1 SELECT {5+}\r\nINBOX\r\n") == c.Select("A1", "INBOX")
    assert parse_one(b'A1 RENAME {3+}\r\nfoo {3+}\r\nbar\r\n') == c.Rename("A1", "foo", "bar")


def test_rejected_literal_drops_the_command() -> None:
    p = Parser()
    events = run(p, b"A1 LOGIN {5}\r\n", accept=False)
    assert events == [Continuation("A1", "LOGIN", 5, False, False)]
    assert run(p, b"A2 NOOP\r\n") == [c.Noop("A2")]


def test_append_streams_message_in_chunks() -> None:
    p = Parser()
    message = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n" * 8)[:310]
    events = run(p, b'A003 APPEND saved-messages (\\Seen) "17-Jul-1996 02:44:25 -0700" {310}\r\n')
    assert events == [Continuation("A003", "APPEND", 310, False, True)]
    events = run(p, message + b"\r\nA004 NOOP\r\n", chunk=100)
    chunks = [e for e in events if isinstance(e, LiteralChunk)]
    assert b"".join(ch.data for ch in chunks) == message
    assert all(len(ch.data) <= 100 for ch in chunks)
    assert [ch.final for ch in chunks] == [False] * (len(chunks) - 1) + [True]
    zone = timezone(-timedelta(hours=7))
    assert events[len(chunks):] == [
        c.Append("A003", "saved-messages", ("\\Seen",), datetime(1996, 7, 17, 2, 44, 25, tzinfo=zone), 310),
        c.Noop("A004"),
    ]


def test_append_chunks_never_hold_more_than_was_fed() -> None:
    p = Parser()
    run(p, b"A1 APPEND INBOX {1000000}\r\n")
    sizes = [len(e.data) for e in run(p, b"x" * 1000000, chunk=65536) if isinstance(e, LiteralChunk)]
    assert sum(sizes) == 1000000 and max(sizes) <= 65536


def test_append_nonsync_literal8_and_utf8_form() -> None:
    events = run(Parser(), b"A1 APPEND Drafts (\\Draft) ~{4+}\r\n\x00\x01\x02\x03\r\n")
    assert events == [LiteralChunk("A1", b"\x00\x01\x02\x03", 4, True),
                      c.Append("A1", "Drafts", ("\\Draft",), None, 4, binary=True)]
    events = run(Parser(utf8=True), b"A2 APPEND INBOX UTF8 (~{2+}\r\nhi)\r\n")
    assert events == [LiteralChunk("A2", b"hi", 2, True), c.Append("A2", "INBOX", (), None, 2, True, True)]


def test_append_empty_message_and_literal_mailbox() -> None:
    assert run(Parser(), b"A1 APPEND {5}\r\nINBOX {0}\r\n\r\n") == [
        Continuation("A1", "APPEND", 5, False, False), Continuation("A1", "APPEND", 0, False, True),
        c.Append("A1", "INBOX", (), None, 0)]


def test_append_bad_after_literal_is_an_error_with_the_tag() -> None:
    events = run(Parser(), b"A1 APPEND INBOX {2+}\r\nhi junk\r\nA2 NOOP\r\n")
    assert events[0] == LiteralChunk("A1", b"hi", 2, True)
    assert isinstance(events[1], CommandError) and events[1].tag == "A1"
    assert events[2] == c.Noop("A2")


def test_literal8_outside_append_is_refused() -> None:
    events = run(Parser(), b"A1 LOGIN ~{3}\r\nA2 NOOP\r\n")
    assert [type(e) for e in events] == [CommandError, c.Noop]


def test_literal_minus_limit() -> None:
    p = Parser(literal_minus=True)
    big = b"x" * 5000
    events = run(p, b"A1 LOGIN {5000+}\r\n" + big + b" pw\r\nA2 NOOP\r\n")
    assert events[0] == CommandError("A1", ErrorKind.LITERAL_TOO_BIG, events[0].text)
    assert events[1:] == [c.Noop("A2")]  # the 5000 octets were skipped, not parsed
    assert parse_one(b"A3 LOGIN {4096+}\r\n" + b"u" * 4096 + b" pw\r\n", literal_minus=True) == \
        c.Login("A3", "u" * 4096, "pw")


def test_small_literal_limit_without_continuation() -> None:
    p = Parser(max_literal=100)
    assert run(p, b"A1 LOGIN {101}\r\n") == [CommandError("A1", ErrorKind.LITERAL_TOO_BIG, "literal over 100 octets")]
    assert run(p, b"A2 NOOP\r\n") == [c.Noop("A2")]


# --- errors and resynchronisation ------------------------------------------------------

ERRORS = [
    (b"A1 FROB\r\n", ErrorKind.UNKNOWN_COMMAND),
    (b"A1 UID FROB 1\r\n", ErrorKind.UNKNOWN_COMMAND),
    (b"A1 LOGIN\r\n", ErrorKind.SYNTAX),
    (b"A1 LOGIN onlyuser\r\n", ErrorKind.SYNTAX),
    (b"A1 SELECT\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 0:3 FLAGS\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1:x FLAGS\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1,,2 FLAGS\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1 (FLAGS\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1 BODY[1.MIMEX]\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1 BODY[MIME]\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1 FROB\r\n", ErrorKind.SYNTAX),
    (b"A1 FETCH 1 FLAGS (VANISHED)\r\n", ErrorKind.SYNTAX),
    (b'A1 LOGIN "unterminated\r\n', ErrorKind.SYNTAX),
    (b"A1 LOGIN {abc}\r\n", ErrorKind.SYNTAX),
    (b"A1 LOGIN {123456789012345678901234567890}\r\n", ErrorKind.SYNTAX),
    (b"A1 SEARCH\r\n", ErrorKind.SYNTAX),
    (b"A1 SEARCH FROB\r\n", ErrorKind.SYNTAX),
    (b"A1 SEARCH SINCE 31-Feb-2020\r\n", ErrorKind.SYNTAX),
    (b"A1 SEARCH " + b"NOT " * 200 + b"ALL\r\n", ErrorKind.SYNTAX),
    (b"A1 STORE 1 FLAGS (\\*)\r\n", ErrorKind.SYNTAX),
    (b"A1 NOOP extra\r\n", ErrorKind.SYNTAX),
    (b"A1 SELECT &Jjo\r\n", ErrorKind.SYNTAX),
    (b"A1 SELECT caf\xc3\xa9\r\n", ErrorKind.SYNTAX),
    (b"A1 STATUS INBOX (FROB)\r\n", ErrorKind.SYNTAX),
    (b"A1 APPEND INBOX\r\n", ErrorKind.SYNTAX),
    (b'A1 APPEND INBOX "99-Jul-1996 02:44:25 -0700" {1}\r\n', ErrorKind.SYNTAX),
    (b"A1 LOGIN {3}\r\nab\x00\r\n", ErrorKind.SYNTAX),
]


@pytest.mark.parametrize(("line", "kind"), ERRORS, ids=[line[:40].decode("latin-1") for line, _ in ERRORS])
def test_error_then_next_command_parses(line: bytes, kind: ErrorKind) -> None:
    for chunk in (None, 1):
        events = run(Parser(), line + b"A2 NOOP\r\n", chunk=chunk)
        errors = [e for e in events if isinstance(e, CommandError)]
        assert len(errors) == 1, events
        assert errors[0].tag == "A1" and errors[0].kind == kind and errors[0].text
        assert events[-1] == c.Noop("A2")


def test_error_before_sync_literal_asks_for_nothing() -> None:
    # The client waits for "+": it never sends the literal, the next line is a new command.
    p = Parser()
    events = run(p, b"A1 FROB {5}\r\n")
    assert events == [CommandError("A1", ErrorKind.UNKNOWN_COMMAND, "unknown command 'FROB'")]
    assert run(p, b"A2 NOOP\r\n") == [c.Noop("A2")]
    events = run(Parser(), b"A1 FETCH 1 (FLAGS {5}\r\nA2 NOOP\r\n")
    assert [type(e) for e in events] == [CommandError, c.Noop]


def test_error_before_nonsync_literal_skips_its_data() -> None:
    # The literal holds text that looks like a command; it must not be run.
    events = run(Parser(), b"A1 FROB {14+}\r\nA9 DELETE foo\r\nA2 NOOP\r\n")
    assert [type(e) for e in events] == [CommandError, c.Noop]
    events = run(Parser(), b"A1 FROB {14+}\r\nA9 DELETE foo {3+}\r\nx\r\n\r\nA2 NOOP\r\n", chunk=3)
    assert [type(e) for e in events] == [CommandError, c.Noop]


def test_overlong_line_is_an_error_and_rest_is_discarded() -> None:
    p = Parser(max_line=1000)
    line = b"A1 SEARCH " + b"TEXT x " * 500 + b"ALL\r\n"
    for chunk in (None, 64):
        events = run(p, line + b"A2 NOOP\r\n", chunk=chunk)
        assert events == [CommandError("A1", ErrorKind.LINE_TOO_LONG, "line longer than 1000 octets"), c.Noop("A2")]


def test_overlong_line_announcing_nonsync_literal_skips_it() -> None:
    p = Parser(max_line=100)
    data = b"A1 LOGIN " + b"x" * 200 + b" {14+}\r\nA9 DELETE foo\r\nA2 NOOP\r\n"
    for chunk in (None, 1, 50):
        events = run(p, data, chunk=chunk)
        assert [type(e) for e in events] == [CommandError, c.Noop], chunk


def test_line_limit_counts_all_segments_of_a_command_but_not_literals() -> None:
    p = Parser(max_line=100)
    ok = b"A1 SEARCH TEXT {60+}\r\n" + b"y" * 60 + b" ALL\r\n"
    assert isinstance(run(p, ok)[0], c.Search)
    bad = b"A1 LOGIN {60+}\r\n" + b"u" * 60 + b" " + b"p" * 95 + b"\r\nA2 NOOP\r\n"
    events = run(p, bad)
    assert events[0].kind is ErrorKind.LINE_TOO_LONG and events[-1] == c.Noop("A2")


def test_missing_or_bad_tag_gives_untagged_error() -> None:
    events = run(Parser(), b"+FOO NOOP\r\n(x\r\nA2 NOOP\r\n")
    assert [e.tag for e in events[:2]] == [None, None]
    assert events[2] == c.Noop("A2")


def test_empty_lines_between_commands_are_ignored() -> None:
    assert run(Parser(), b"\r\n\r\nA1 NOOP\r\n") == [c.Noop("A1")]


# --- AUTHENTICATE and IDLE continuation lines ---------------------------------------

def test_authenticate_exchange_lines() -> None:
    p = Parser()
    assert run(p, b"A1 AUTHENTICATE PLAIN\r\n") == [c.Authenticate("A1", "PLAIN")]
    p.expect_sasl_response("A1")
    assert run(p, b"AHVzZXIAcGFzcw==\r\nA2 NOOP\r\n") == [SaslResponse(b"\x00user\x00pass"), c.Noop("A2")]
    p.expect_sasl_response("A3")
    assert run(p, b"*\r\n") == [SaslResponse(None)]
    p.expect_sasl_response("A4")
    assert run(p, b"\r\n") == [SaslResponse(b"")]
    p.expect_sasl_response("A5")
    assert run(p, b"not base64!\r\nA6 NOOP\r\n") == [
        CommandError("A5", ErrorKind.SYNTAX, "invalid BASE64 in SASL response"), c.Noop("A6")]


def test_sasl_line_is_not_parsed_as_a_command() -> None:
    p = Parser()
    run(p, b"A1 AUTHENTICATE LOGIN\r\n")
    p.expect_sasl_response("A1")
    assert run(p, b"A2 NOOP\r\n", chunk=1) == [CommandError("A1", ErrorKind.SYNTAX, "invalid BASE64 in SASL response")]


def test_idle_done() -> None:
    p = Parser()
    assert run(p, b"A1 IDLE\r\n") == [c.Idle("A1")]
    p.expect_idle_done("A1")
    assert run(p, b"do", chunk=1) == []
    assert run(p, b"ne\r\nA2 NOOP\r\n") == [IdleDone("A1"), c.Noop("A2")]
    p.expect_idle_done("A3")
    assert run(p, b"A4 NOOP\r\n") == [CommandError("A3", ErrorKind.SYNTAX, "expected DONE")]


def test_misuse_raises_state_error() -> None:
    p = Parser()
    with pytest.raises(ParserStateError):
        p.accept_literal()
    p.feed(b"A1 LOGIN {3}\r\n")
    p.next_event()
    with pytest.raises(ParserStateError):
        p.expect_idle_done("A1")


def test_take_buffered_after_starttls() -> None:
    p = Parser()
    p.feed(b"A1 STARTTLS\r\nA2 LOGIN injected command\r\n")
    assert p.next_event() == c.StartTLS("A1")
    assert p.take_buffered() == b"A2 LOGIN injected command\r\n"
    assert p.next_event() is NEED_DATA


# --- UTF-8 mode ---------------------------------------------------------------------

def test_mailbox_names_follow_the_mode() -> None:
    assert parse_one(b"A1 SELECT Entw&APw-rfe\r\n") == c.Select("A1", "Entwürfe")
    p = Parser()
    p.utf8 = True  # after ENABLE UTF8=ACCEPT (RFC 6855 §3)
    assert run(p, 'A1 SELECT "Entwürfe"\r\nA2 SELECT Entw&APw-rfe\r\n'.encode()) == [
        c.Select("A1", "Entwürfe"), c.Select("A2", "Entw&APw-rfe")]


# --- fuzzing ------------------------------------------------------------------------

EXPECTED_EVENTS = (c.Command, Continuation, LiteralChunk, CommandError, SaslResponse, IdleDone)

fragments = st.sampled_from([
    b"A1 ", b"UID ", b"FETCH ", b"1:* ", b"(", b")", b"BODY[", b"]", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n",
    b"\r\n", b"\n", b'"', b"\\", b"SEARCH ", b"APPEND INBOX ", b"LOGIN ", b"NOT ", b"OR ", b"*", b"$",
    b"<0.1>", b"&", b"\x00", b"\xff", b" ", b"x", b"DONE", b"SELECT ", b"LIST ", b"RETURN (", b"STATUS",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(fragments, st.binary(max_size=20)), max_size=40), st.integers(1, 9),
       st.booleans(), st.sampled_from([None, "sasl", "idle"]))
def test_arbitrary_bytes_give_only_documented_events(parts, chunk, accept, mode) -> None:
    p = Parser(max_line=200, max_literal=50)
    if mode == "sasl":
        p.expect_sasl_response("T")
    elif mode == "idle":
        p.expect_idle_done("T")
    data = b"".join(parts)
    steps = 0
    for i in range(0, len(data) + 1, chunk):
        p.feed(data[i:i + chunk])
        while True:
            steps += 1
            assert steps < 10_000, "parser loops"
            event = p.next_event()
            if event is NEED_DATA:
                break
            assert isinstance(event, EXPECTED_EVENTS)
            if isinstance(event, Continuation):
                (p.accept_literal if accept else p.reject_literal)()
    # A complete command afterwards still parses, once the stream is in sync.
    p.feed(b"\r\n" * 3 + b"Z9 NOOP\r\n")


garbage_lines = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"{", b"(")), max_size=6)


@settings(max_examples=200, deadline=None)
@given(garbage_lines, st.integers(1, 17))
def test_garbage_lines_never_swallow_the_next_command(lines, chunk) -> None:
    # Lines without a literal marker: each gives at most one event, and a good
    # command after them always parses.
    data = b"".join(line + b"\r\n" for line in lines) + b"Z9 UID FETCH 1:* (FLAGS)\r\n"
    events = run(Parser(max_line=30), data, chunk=chunk)
    assert len(events) <= len(lines) + 1
    assert events[-1] == c.Fetch("Z9", S("1:*"), (FetchItem("FLAGS"), FetchItem("UID")), True)
