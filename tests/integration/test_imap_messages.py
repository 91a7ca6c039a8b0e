"""The message commands over real sockets: FETCH, STORE, SEARCH, SORT, THREAD, COPY, MOVE, EXPUNGE.

imapclient and imaplib drive an in-process server; two sessions at once where
what one does must reach the other. Messages are real MIME: nested
multiparts, a message/rfc822, encoded words, base64 and quoted-printable.
"""

import asyncio
import base64
import imaplib
import re
import time
import uuid

import imapclient
import pytest

from postfach.imap import session as session_module
from postfach.imap.handlers import fetch as fetch_module
from postfach.model import Flags, SystemFlag
from postfach.store.changes import MessagesExpunged
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import make_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"

PLAIN = "Gr=C3=BC=C3=9Fe aus K=C3=B6ln, sch=C3=B6n=\r\nes Wetter.\r\nZeile zwei\r\n"
PLAIN_DECODED = "Grüße aus Köln, schönes Wetter.\r\nZeile zwei\r\n".encode()
HTML = "<p>Hello <b>world</b></p>\r\n"
ATTACHMENT = bytes(range(256)) * 4
ATTACHMENT_B64 = base64.encodebytes(ATTACHMENT).decode().replace("\n", "\r\n")
INNER_HEADER = (
    "Subject: =?utf-8?q?Innere_Nachricht_=C3=A4?=\r\nFrom: Inner <inner@example.org>\r\n"
    "To: alice@example.com\r\nDate: Tue, 03 Mar 2026 08:00:00 +0000\r\nMessage-ID: <inner@test>\r\n\r\n"
)
INNER_BODY = "Inner body line\r\n"
ALTERNATIVE = (
    "--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    f"{PLAIN}\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{HTML}\r\n--alt--\r\n"
)
TOP_HEADER = (
    "From: Ann <ann@example.org>\r\nTo: Alice <alice@example.com>\r\n"
    "Subject: =?utf-8?q?Sch=C3=B6ne_Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
    "Message-ID: <nested@test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
)
NESTED = (
    TOP_HEADER + "preamble\r\n"
    "--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" + ALTERNATIVE + "\r\n"
    "--mix\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n" + ATTACHMENT_B64 + "\r\n"
    "--mix\r\nContent-Type: message/rfc822\r\n\r\n" + INNER_HEADER + INNER_BODY + "\r\n--mix--\r\n"
).encode()


def lines(text: str) -> int:
    return text.count("\n")


def expected_bodystructure() -> bytes:
    plain = f'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" {len(PLAIN)} {lines(PLAIN)} NIL NIL NIL NIL)'
    html = f'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" {len(HTML)} {lines(HTML)} NIL NIL NIL NIL)'
    alternative = f'({plain}{html} "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)'
    attachment = (
        f'("APPLICATION" "OCTET-STREAM" ("NAME" "data.bin") NIL NIL "BASE64" {len(ATTACHMENT_B64)} NIL'
        ' ("ATTACHMENT" ("FILENAME" "data.bin")) NIL NIL)'
    )
    inner_from = '(("Inner" NIL "inner" "example.org"))'
    envelope = (
        f'("Tue, 03 Mar 2026 08:00:00 +0000" "=?utf-8?q?Innere_Nachricht_=C3=A4?=" {inner_from} {inner_from}'
        f' {inner_from} ((NIL NIL "alice" "example.com")) NIL NIL NIL "<inner@test>")'
    )
    inner_body = f'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" {len(INNER_BODY)} {lines(INNER_BODY)} NIL NIL NIL NIL)'
    inner = INNER_HEADER + INNER_BODY
    message = f'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" {len(inner)} {envelope} {inner_body} {lines(inner)} NIL NIL NIL NIL)'
    return f'({alternative}{attachment}{message} "MIXED" ("BOUNDARY" "mix") NIL NIL NIL)'.encode()



@pytest.fixture
async def server(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("imaps",))) as running:
        account = await make_account(running.store, USER)
        running.account = account
        running.inbox = await running.store.get_folder(account.id, "INBOX")
        yield running


def connect(server) -> imapclient.IMAPClient:
    address = server.addresses["imaps"]
    client = imapclient.IMAPClient(address.host, address.port, ssl=True, ssl_context=insecure_context(), timeout=30)
    client.login(USER, PASSWORD)
    return client


def connect_imaplib(server) -> imaplib.IMAP4_SSL:
    address = server.addresses["imaps"]
    client = imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=30)
    client.login(USER, PASSWORD)
    return client


async def deliver(server, data: bytes, **options):
    return await server.store.append(server.inbox.id, data, **options)


def raw(client: imaplib.IMAP4, line: str) -> bytes:
    """One command's whole answer, as bytes on the wire (literals included)."""
    tag = client._new_tag()
    client.send(tag + b" " + line.encode() + b"\r\n")
    out = b""
    while True:
        got = client.readline()
        out += got
        size = re.search(rb"~?\{(\d+)\}\r\n$", got)
        if size:
            out += client.read(int(size.group(1)))
            continue
        if got.startswith(tag + b" "):
            return out


# ---------------------------------------------------------------- FETCH


def check_fetch_items(server, uid):
    client = connect(server)
    client.select_folder("INBOX")
    data = NESTED
    answer = client.fetch([uid], [
        "BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[1.1]", "BODY.PEEK[1.2.MIME]",
        "BODY.PEEK[2]", "BODY.PEEK[3]", "BODY.PEEK[3.HEADER]", "BODY.PEEK[3.TEXT]", "BODY.PEEK[3.1]",
        "BODY.PEEK[HEADER.FIELDS (Subject FROM)]", "BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Date Message-ID)]",
        "BODY.PEEK[3.HEADER.FIELDS (message-id)]", "BODY.PEEK[9]", "RFC822.SIZE", "INTERNALDATE", "FLAGS",
        "EMAILID", "THREADID", "PREVIEW",
    ])[uid]
    assert answer[b"BODY[]"] == data
    header_end = data.index(b"\r\n\r\n") + 4
    assert answer[b"BODY[HEADER]"] == data[:header_end]
    assert answer[b"BODY[TEXT]"] == data[header_end:]
    assert answer[b"BODY[1.1]"] == PLAIN.encode()
    assert answer[b"BODY[1.2.MIME]"] == b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    assert answer[b"BODY[2]"] == ATTACHMENT_B64.encode()
    assert answer[b"BODY[3]"] == (INNER_HEADER + INNER_BODY).encode()
    assert answer[b"BODY[3.HEADER]"] == INNER_HEADER.encode()
    assert answer[b"BODY[3.TEXT]"] == answer[b"BODY[3.1]"] == INNER_BODY.encode()
    assert answer[b"BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b"From: Ann <ann@example.org>\r\nSubject: =?utf-8?q?Sch=C3=B6ne_Gr=C3=BC=C3=9Fe?=\r\n\r\n"
    )
    assert answer[b"BODY[HEADER.FIELDS.NOT (SUBJECT FROM TO DATE MESSAGE-ID)]"] == (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
    )
    assert answer[b"BODY[3.HEADER.FIELDS (MESSAGE-ID)]"] == b"Message-ID: <inner@test>\r\n\r\n"
    assert answer[b"BODY[9]"] is None
    assert answer[b"RFC822.SIZE"] == len(data)
    assert answer[b"INTERNALDATE"].year >= 2026
    assert b"\\Seen" not in answer[b"FLAGS"]  # every item above was a PEEK
    assert answer[b"EMAILID"] == (b"M" + server.sha[:32].encode(),)
    assert answer[b"THREADID"] is None
    assert answer[b"PREVIEW"].startswith("Grüße aus Köln".encode()) or answer[b"PREVIEW"].startswith(b"Gr")

    # BODYSTRUCTURE and ENVELOPE as sent, byte for byte (imaplib keeps the raw line).
    lib = connect_imaplib(server)
    lib.select("INBOX")
    wire = raw(lib, f"UID FETCH {uid} (BODYSTRUCTURE ENVELOPE)")
    assert b"BODYSTRUCTURE " + expected_bodystructure() + b" " in wire
    assert b'ENVELOPE ("Mon, 02 Mar 2026 10:00:00 +0100" "=?utf-8?q?Sch=C3=B6ne_Gr=C3=BC=C3=9Fe?="' in wire
    # Partial fetches (RFC 9051 §6.4.5): <origin.octets>, answered as <origin>.
    wire = raw(lib, f"UID FETCH {uid} (BODY.PEEK[]<0.10> BODY.PEEK[1.1]<5.6> BODY.PEEK[TEXT]<100000.5>)")
    assert b"BODY[]<0> {10}\r\n" + data[:10] in wire
    assert b"BODY[1.1]<5> {6}\r\n" + PLAIN.encode()[5:11] in wire
    assert b'BODY[TEXT]<100000> ""' in wire or b"BODY[TEXT]<100000> {0}\r\n" in wire
    # BINARY (RFC 3516): decoded base64 (with NUL: literal8) and quoted-printable.
    wire = raw(lib, f"UID FETCH {uid} (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1.1] BINARY.SIZE[1.1])")
    assert b"BINARY[2] ~{%d}\r\n" % len(ATTACHMENT) + ATTACHMENT in wire
    assert b"BINARY.SIZE[2] %d" % len(ATTACHMENT) in wire
    assert b"BINARY[1.1] {%d}\r\n" % len(PLAIN_DECODED) + PLAIN_DECODED in wire
    assert b"BINARY.SIZE[1.1] %d" % len(PLAIN_DECODED) in wire
    assert b" OK " in wire.splitlines()[-1]
    # Sequence numbers beyond the folder are a client error; UIDs that do not exist are not.
    assert raw(lib, "FETCH 5 FLAGS").split(b" ")[1] == b"BAD"
    wire = raw(lib, "UID FETCH 400:500 FLAGS")
    assert b"* " not in wire and b" OK " in wire
    lib.logout()
    client.logout()


async def test_fetch_every_item_byte_exact(server):
    message = await deliver(server, NESTED)
    server.sha = message.blob.sha256
    await asyncio.to_thread(check_fetch_items, server, message.uid)


def check_unknown_cte(server, uid):
    lib = connect_imaplib(server)
    lib.select("INBOX")
    wire = raw(lib, f"UID FETCH {uid} BINARY.PEEK[1]")
    assert b"NO [UNKNOWN-CTE]" in wire
    lib.logout()


async def test_binary_of_an_unknown_encoding_is_refused(server):
    message = await deliver(server, b"Subject: x\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n")
    await asyncio.to_thread(check_unknown_cte, server, message.uid)


def check_seen(server, uid):
    client = connect_imaplib(server)
    client.select("INBOX")
    wire = raw(client, f"UID FETCH {uid} BODY.PEEK[1.1]")
    assert b"FLAGS" not in wire
    wire = raw(client, f"UID FETCH {uid} BODY[1.1]")
    # RFC 9051 §6.4.5: the implicit \Seen is reported in the same FETCH response.
    assert re.search(rb"\* 1 FETCH \(.*FLAGS \(\\Seen[ )]", wire.replace(b"\r\n", b" "))
    wire = raw(client, f"UID FETCH {uid} BODY[1.1]")
    assert b"FLAGS" not in wire  # already seen: no change to report
    client.logout()
    # EXAMINE is read-only: BODY[] does not set \Seen there.
    client = connect_imaplib(server)
    client.select("INBOX")
    client.uid("STORE", str(uid), "-FLAGS.SILENT", "(\\Seen)")
    client.close()
    client.select("INBOX", readonly=True)
    raw(client, f"UID FETCH {uid} BODY[]")
    typ, data = client.uid("FETCH", str(uid), "FLAGS")
    assert b"\\Seen" not in data[0]
    client.logout()


async def test_body_sets_seen_and_peek_does_not(server):
    message = await deliver(server, NESTED)
    await asyncio.to_thread(check_seen, server, message.uid)


def check_large_part(server, uid, small_part):
    client = connect(server)
    client.select_folder("INBOX")
    server.read_bytes.clear()
    answer = client.fetch([uid], ["BODY.PEEK[1.MIME]", "BODY.PEEK[2]"])[uid]
    assert answer[b"BODY[2]"] == small_part
    assert sum(server.read_bytes) < 10_000, server.read_bytes
    server.read_bytes.clear()
    answer = client.fetch([uid], ["BODY.PEEK[1]"])[uid]
    assert len(answer[b"BODY[1]"]) > 20_000_000
    assert max(server.read_bytes) <= 256 * 1024  # streamed in chunks
    client.logout()


async def test_fetch_of_a_part_of_a_20_mb_message_reads_only_that_part(server):
    big = b"y" * 76 + b"\r\n"
    small_part = b"just this\r\n"
    data = (
        b"Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\n" + big * (20_500_000 // len(big)) + b"\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\n" + small_part + b"\r\n--b--\r\n"
    )
    message = await deliver(server, data)
    store = server.store
    server.read_bytes = []
    real_range = store.read_blob_range

    async def counting_range(sha256, start, end):
        result = await real_range(sha256, start, end)
        server.read_bytes.append(len(result))
        return result

    async def no_whole_reads(sha256):
        raise AssertionError("FETCH read a whole message")

    store.read_blob_range = counting_range
    store.read_blob = no_whole_reads
    try:
        await asyncio.to_thread(check_large_part, server, message.uid, small_part)
    finally:
        del store.read_blob_range, store.read_blob


# ---------------------------------------------------------------- STORE, and two sessions


def check_store_modes(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    typ, data = client.store("1", "+FLAGS", "(\\Flagged $Work)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Work" in data[0]
    typ, data = client.store("1", "-FLAGS", "($Work)")
    assert b"$Work" not in data[0] and b"\\Flagged" in data[0]
    typ, data = client.store("1:2", "FLAGS", "(\\Answered)")
    assert len(data) == 2 and all(b"(\\Answered" in item and b"Flagged" not in item for item in data)
    wire = raw(client, "STORE 1 +FLAGS.SILENT (\\Seen)")
    assert b"FETCH" not in wire
    wire = raw(client, "UID STORE 1:* +FLAGS (\\Draft)")
    assert wire.count(b"FETCH") == 2 and b"UID " in wire
    wire = raw(client, "STORE 1 +FLAGS (\\Bogus)")
    assert b" BAD " in wire
    # Under EXAMINE nothing changes.
    client.select("INBOX", readonly=True)
    assert b" NO " in raw(client, "STORE 1 +FLAGS (\\Deleted)")
    client.logout()


async def test_store_modes_and_silent(server):
    await deliver(server, NESTED)
    await deliver(server, b"Subject: two\r\n\r\nbody\r\n")
    await asyncio.to_thread(check_store_modes, server)


def check_two_sessions(server):
    a, b = connect_imaplib(server), connect_imaplib(server)
    a.select("INBOX")
    b.select("INBOX")
    a.store("2", "+FLAGS.SILENT", "(\\Flagged)")
    typ, data = b.noop()
    fetched = b.untagged_responses.pop("FETCH", [])
    assert any(b"\\Flagged" in item for item in fetched), fetched
    # A's own change is not echoed back to A.
    a.noop()
    assert "FETCH" not in a.untagged_responses
    # An EXPUNGE in A: never during B's FETCH by sequence number, but at B's NOOP.
    a.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    typ, data = a.expunge()
    assert data == [b"1"]
    wire = raw(b, "FETCH 1:3 (UID FLAGS)")
    assert b"EXPUNGE" not in wire and wire.count(b"FETCH (") >= 2
    wire = raw(b, "NOOP")
    assert b"* 1 EXPUNGE" in wire
    a.logout()
    b.logout()


async def test_changes_in_one_session_reach_the_other(server):
    for n in range(3):
        await deliver(server, b"Subject: m%d\r\n\r\nbody\r\n" % n)
    await asyncio.to_thread(check_two_sessions, server)


def check_condstore(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    wire = raw(client, "FETCH 1:2 (MODSEQ)")
    modseqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", wire)]
    assert len(modseqs) == 2
    other = connect_imaplib(server)
    other.select("INBOX")
    other.store("2", "+FLAGS.SILENT", "(\\Flagged)")
    other.logout()
    wire = raw(client, f"STORE 1:2 (UNCHANGEDSINCE {max(modseqs)}) +FLAGS (\\Seen)")
    assert b"[MODIFIED 2]" in wire
    assert re.search(rb"\* 1 FETCH \(FLAGS \(\\Seen[^)]*\) MODSEQ \(\d+\)\)", wire)
    wire = raw(client, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {max(modseqs)})")
    assert wire.count(b" FETCH (") == 2 and b"MODSEQ" in wire
    wire = raw(client, f"SEARCH MODSEQ {max(modseqs) + 1}")
    assert re.search(rb"\* SEARCH 1 2 \(MODSEQ \d+\)", wire)
    client.logout()


async def test_condstore_unchangedsince_conflict(server):
    await deliver(server, b"Subject: a\r\n\r\nbody\r\n")
    await deliver(server, b"Subject: b\r\n\r\nbody\r\n")
    await asyncio.to_thread(check_condstore, server)


# ---------------------------------------------------------------- SEARCH, SORT, THREAD


def b64_message(subject: str, text: str, date: str, sender: str = "Bob <bob@example.org>", extra: str = "") -> bytes:
    body = base64.encodebytes(text.encode()).decode().replace("\n", "\r\n")
    return (
        f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {subject}\r\nDate: {date}\r\n{extra}"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    ).encode()


def search(client: imaplib.IMAP4, criteria: str, charset=None) -> list[int]:
    typ, data = client.search(charset, criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def check_search_keys(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    client.store("2", "+FLAGS.SILENT", "(\\Flagged)")
    assert search(client, "FLAGGED") == [2]
    assert search(client, "OR FLAGGED FROM carol") == [2, 4]
    assert search(client, "NOT FLAGGED") == [1, 3, 4]
    assert search(client, "SENTBEFORE 2-Jan-2026") == [1]
    assert search(client, "SENTON 5-Jan-2026") == [2]
    assert search(client, "SENTSINCE 5-Jan-2026") == [2, 3, 4]
    assert search(client, "SINCE 1-Jan-2000 LARGER 10") == [1, 2, 3, 4]
    assert search(client, "SMALLER 10") == []
    assert search(client, 'HEADER X-Tag "blue"') == [4]
    assert search(client, 'HEADER X-Tag ""') == [4]
    assert search(client, "2:3 UNSEEN") == [2, 3]
    assert search(client, "UID 1,4") == [1, 4]
    assert search(client, 'SUBJECT "Grüße"'.encode(), "UTF-8") == [3]
    typ, data = client._simple_command("SEARCH", "CHARSET", "ISO-8859-1", "ALL")
    assert typ == "NO" and b"BADCHARSET" in (client.untagged_responses.pop("NO", [b""])[0] + b"".join(data))
    # ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
    wire = raw(client, "SEARCH RETURN (MIN MAX COUNT ALL) NOT FLAGGED")
    assert b"* ESEARCH (TAG " in wire and all(x in wire for x in (b" MIN 1", b" MAX 4", b" COUNT 3", b" ALL 1,3:4"))
    wire = raw(client, "UID SEARCH RETURN (SAVE) FROM bob")
    assert b"ESEARCH" not in wire and b" OK " in wire
    wire = raw(client, "FETCH $ (UID)")
    assert wire.count(b" FETCH (") == 3
    wire = raw(client, "UID SEARCH RETURN (COUNT) UID $ NOT FLAGGED")
    assert b"UID COUNT 2" in wire
    client.logout()


async def test_search_keys_full_text_esearch_and_saved_results(server):
    await deliver(server, b64_message("Meeting at noon", "Plain words only.", "Thu, 01 Jan 2026 09:00:00 +0000"))
    await deliver(server, b64_message("Re: notes", "Achtung Zebrastreifen!", "Mon, 05 Jan 2026 09:00:00 +0000"))
    await deliver(server, b64_message("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "hallo", "Tue, 06 Jan 2026 09:00:00 +0000"))
    await deliver(server, b64_message("other", "x", "Wed, 07 Jan 2026 09:00:00 +0000",
                                      sender="Carol <carol@example.net>", extra="X-Tag: dark blue\r\n"))
    await asyncio.to_thread(check_search_keys, server)
    await asyncio.to_thread(check_full_text, server)


def check_full_text(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    assert search(client, 'BODY "zebrastreifen"') == [2]  # inside a base64 body
    assert search(client, 'TEXT "ZEBRA"') == [2]
    assert search(client, 'BODY "Meeting"') == []  # only in a subject: not the body
    assert search(client, 'TEXT "meeting"') == [1]
    assert search(client, 'OR BODY "zebra" BODY "hallo"') == [2, 3]
    client.logout()


def check_sort_thread(server):
    client = connect(server)
    client.select_folder("INBOX")
    assert client.sort(["SUBJECT"]) == [3, 1, 2, 4]  # base subjects: apple, banana, banana, cherry
    assert client.sort(["REVERSE", "DATE"]) == [4, 3, 2, 1]
    assert client.sort(["FROM", "DATE"]) == [2, 4, 1, 3]
    client.logout()
    lib = connect_imaplib(server)
    lib.select("INBOX")
    wire = raw(lib, "THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert b"* THREAD (1 2)(3)(4)" in wire  # threads in the order of their first message
    wire = raw(lib, "THREAD REFERENCES UTF-8 ALL")
    assert b"* THREAD (1 2 4)(3)" in wire
    lib.logout()


async def test_sort_and_thread(server):
    def m(subject, date, sender, extra=""):
        return (f"From: {sender}\r\nSubject: {subject}\r\nDate: {date}\r\n{extra}\r\nbody\r\n").encode()

    await deliver(server, m("Banana", "Thu, 01 Jan 2026 09:00:00 +0000", "zed@example.org", "Message-ID: <b@t>\r\n"))
    await deliver(server, m("Re: banana", "Fri, 02 Jan 2026 09:00:00 +0000", "amy@example.org",
                            "Message-ID: <r@t>\r\nIn-Reply-To: <b@t>\r\n"))
    await deliver(server, m("[list] Apple", "Sat, 03 Jan 2026 09:00:00 +0000", "zed@example.org",
                            "Message-ID: <a@t>\r\n"))
    await deliver(server, m("Cherry", "Sun, 04 Jan 2026 09:00:00 +0000", "bob@example.org",
                            "Message-ID: <c@t>\r\nReferences: <b@t> <r@t>\r\n"))
    await asyncio.to_thread(check_sort_thread, server)


# ---------------------------------------------------------------- COPY, MOVE, EXPUNGE


def check_copy_move(server, data):
    client = connect(server)
    client.select_folder("INBOX")
    lib = connect_imaplib(server)
    lib.select("INBOX")
    wire = raw(lib, "UID COPY 1:2 Archive")
    uidvalidity = server.archive.uidvalidity
    assert f"[COPYUID {uidvalidity} 1:2 1:2]".encode() in wire
    assert b"[TRYCREATE]" in raw(lib, "COPY 1 Nowhere")
    client.select_folder("Archive")
    copies = client.fetch([1, 2], ["BODY.PEEK[]", "FLAGS"])
    assert copies[1][b"BODY[]"] == data[0] and copies[2][b"BODY[]"] == data[1]
    assert b"\\Flagged" in copies[1][b"FLAGS"]
    # MOVE: COPYUID first, then the expunge, and the other session sees it at NOOP.
    client.select_folder("INBOX")
    wire = raw(lib, "MOVE 1 Trash")
    trash = server.trash.uidvalidity
    assert re.search(rb"\* OK \[COPYUID %d 1 1\].*\r\n\* 1 EXPUNGE\r\n" % trash, wire, re.S)
    assert client.noop()[1] == [(1, b"EXPUNGE")]
    # EXPUNGE removes only \Deleted; UID EXPUNGE only the named ones.
    lib.store("1:2", "+FLAGS.SILENT", "(\\Deleted)")
    wire = raw(lib, "UID EXPUNGE 2")
    assert b"* 1 EXPUNGE" in wire
    wire = raw(lib, "EXPUNGE")
    assert b"* 1 EXPUNGE" in wire
    typ, data = lib.select("INBOX")
    assert data == [b"1"]
    lib.logout()
    client.logout()


async def test_copy_move_and_expunge(server):
    data = [b"Subject: c%d\r\nFrom: x@example.org\r\n\r\nbody %d\r\n" % (n, n) for n in range(4)]
    await deliver(server, data[0], flags=Flags(SystemFlag.FLAGGED))
    for item in data[1:]:
        await deliver(server, item)
    server.archive = await server.store.get_folder(server.account.id, "Archive")
    server.trash = await server.store.get_folder(server.account.id, "Trash")
    await asyncio.to_thread(check_copy_move, server, data)


def check_move_atomic(server):
    lib = connect_imaplib(server)
    lib.select("INBOX")
    wire = raw(lib, "MOVE 1:2 Archive")
    assert b" OK " in wire.splitlines()[-1]
    lib.logout()


async def test_move_is_atomic_and_copy_to_trash_ignores_quota(server):
    store = server.store
    await deliver(server, b"Subject: a\r\n\r\nbody\r\n")
    await deliver(server, b"Subject: b\r\n\r\nbody\r\n")
    seen = []
    store.events.subscribe(server.account.id, seen.append)
    await asyncio.to_thread(check_move_atomic, server)
    # One transaction: one MessagesAdded and one MessagesExpunged, nothing in between.
    assert [type(change).__name__ for change in seen] == ["MessagesAdded", "MessagesExpunged"]
    archive = await store.get_folder(server.account.id, "Archive")
    assert len((await store.load_index(archive.id)).uids) == 2
    assert (await store.load_index(server.inbox.id)).uids == []


def check_flag_sync(server, count):
    client = connect_imaplib(server)
    client.select("INBOX")
    wire = raw(client, "UID FETCH 1:* (UID FLAGS MODSEQ)")
    # The same flags as FETCH answers when it also reads each message's row.
    full = raw(client, "UID FETCH 1:* (FLAGS MODSEQ RFC822.SIZE)")
    client.logout()
    lines = wire.split(b"\r\n")
    assert len(lines) == count + 2 and lines[-2].endswith(b" OK FETCH completed") and lines[-1] == b""
    for seq, line in enumerate(lines[:-2], start=1):
        # This session is the first to see them, so every one is \Recent (RFC 3501 §2.3.2).
        flags = b"\\Seen \\Recent" if seq % 3 == 0 else b"\\Answered \\Flagged $Label1 \\Recent" if seq % 3 == 1 else b"\\Recent"
        assert re.fullmatch(rb"\* %d FETCH \(UID %d FLAGS \(%s\) MODSEQ \(\d+\)\)" % (seq, seq, re.escape(flags)), line), line
    assert re.findall(rb"FLAGS \([^)]*\) MODSEQ \(\d+\)", wire) == re.findall(rb"FLAGS \([^)]*\) MODSEQ \(\d+\)", full)


async def test_a_flag_sync_fetch_answers_every_message_from_the_view(server):
    count = fetch_module.VIEW_LINES_PER_WRITE + 7  # more lines than one write holds
    labelled = Flags(SystemFlag.ANSWERED | SystemFlag.FLAGGED, frozenset({"$Label1"}))
    for n in range(1, count + 1):
        flags = Flags(SystemFlag.SEEN) if n % 3 == 0 else labelled if n % 3 == 1 else Flags()
        await deliver(server, b"Subject: m%d\r\n\r\nbody\r\n" % n, flags=flags)
    await asyncio.to_thread(check_flag_sync, server, count)


def search_from_twice(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    first = client.search(None, "FROM", "ann@example.org")
    second = client.search(None, "FROM", "ann@example.org")
    client.logout()
    return first, second


async def test_a_repeated_header_search_reads_no_header_twice(server, monkeypatch):
    # Content of their own: the cache is per process, and other tests deliver NESTED too.
    unique = uuid.uuid4().hex.encode()
    await deliver(server, b"Message-ID: <%s@test>\r\n" % unique + NESTED)
    await deliver(server, b"From: Bob <bob@example.org>\r\nSubject: %s\r\n\r\nbody\r\n" % unique)
    ranges_read = []
    read_blob_ranges = server.store.read_blob_ranges

    async def counting(ranges):
        ranges_read.extend(ranges)
        return await read_blob_ranges(ranges)

    monkeypatch.setattr(server.store, "read_blob_ranges", counting)
    first, second = await asyncio.to_thread(search_from_twice, server)
    assert first == second == ("OK", [b"1"])
    assert len(ranges_read) == 2  # each message's header once, by the first search


def append_to_the_selected_folder(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    client.response("EXISTS"), client.response("RECENT")  # SELECT's, taken out of the way
    client.append("INBOX", "(\\Seen)", None, b"Subject: mine\r\n\r\nbody\r\n")
    exists, recent = client.response("EXISTS")[1], client.response("RECENT")[1]
    flags = client.fetch("1:*", "(FLAGS)")[1]
    client.logout()
    return exists, recent, flags


async def test_an_append_to_the_selected_folder_is_reported_without_reading_it_back(server, monkeypatch):
    await deliver(server, b"Subject: delivered\r\n\r\nbody\r\n")
    calls = []
    for name in ("claim_recent", "get_messages"):
        original = getattr(server.store, name)

        async def counted(*args, original=original, name=name):
            calls.append(name)
            return await original(*args)

        monkeypatch.setattr(server.store, name, counted)
    exists, recent, flags = await asyncio.to_thread(append_to_the_selected_folder, server)
    assert exists == [b"2"] and recent == [b"2"]
    assert flags == [b"1 (FLAGS (\\Recent))", b"2 (FLAGS (\\Seen \\Recent))"]
    assert calls == ["claim_recent"]  # by SELECT; the APPEND claimed its message as it filed it


def envelopes_with_and_without_utf8(server):
    plain, utf8 = connect_imaplib(server), connect_imaplib(server)
    assert utf8.xatom("ENABLE", "UTF8=ACCEPT")[0] == "OK"
    answers = []
    for client in (plain, utf8, plain, utf8):  # each twice: the second from the cache
        client.select("INBOX")
        answers.append(raw(client, "FETCH 1 (ENVELOPE)").rsplit(b"\r\n", 2)[0])  # without the tagged OK
    plain.logout(), utf8.logout()
    return answers


async def test_a_kept_envelope_is_kept_apart_for_utf8_sessions(server):
    await deliver(server, "Subject: Grüße aus Köln\r\nFrom: a@example.org\r\n\r\nbody\r\n".encode())
    first_plain, first_utf8, second_plain, second_utf8 = await asyncio.to_thread(envelopes_with_and_without_utf8, server)
    subject = "Grüße aus Köln".encode()
    assert b"{%d}\r\n%s" % (len(subject), subject) in first_plain  # a literal: 8-bit is not quotable
    assert b'"%s"' % subject in first_utf8  # RFC 9051 quoted UTF-8
    assert (second_plain, second_utf8) == (first_plain, first_utf8)


def expunge_then_noops_elsewhere(server, noops=1):
    """The watcher's EXPUNGE responses to each NOOP, and how long each NOOP took."""
    actor, watcher = connect_imaplib(server), connect_imaplib(server)
    for client in (actor, watcher):
        client.select("INBOX")
    actor.store("1", "+FLAGS", "(\\Deleted)")
    actor.expunge()
    reports, waits = [], []
    for _ in range(noops):
        started = time.monotonic()
        assert watcher.noop()[0] == "OK"
        waits.append(time.monotonic() - started)
        reports.append(watcher.response("EXPUNGE")[1])
    actor.logout(), watcher.logout()
    return reports, waits


async def test_noop_waits_for_a_change_still_on_its_way_from_another_worker(server, monkeypatch):
    # Between worker processes a change event travels through the supervisor, a moment after
    # the COMMIT; here every event is held back that long (and longer) in one process.
    await deliver(server, b"Subject: one\r\n\r\nbody\r\n")
    events = server.store.events
    publish = events.publish
    delay = 0.2
    monkeypatch.setattr(events, "publish", lambda change: asyncio.get_running_loop().call_later(delay, publish, change))
    [reported], [waited] = await asyncio.to_thread(expunge_then_noops_elsewhere, server)
    assert reported == [b"1"]
    assert waited < delay + session_module.CATCH_UP_SECONDS


async def test_noop_waits_once_for_a_change_whose_event_never_comes(server, monkeypatch):
    await deliver(server, b"Subject: one\r\n\r\nbody\r\n")
    monkeypatch.setattr(session_module, "CATCH_UP_SECONDS", 0.3)
    publish = server.store.events.publish
    monkeypatch.setattr(server.store.events, "publish",
                        lambda change: None if isinstance(change, MessagesExpunged) else publish(change))
    _, (first, second) = await asyncio.to_thread(expunge_then_noops_elsewhere, server, 2)
    assert 0.3 <= first < 0.3 + 0.25
    assert second < 0.1  # the store's modseq was waited for once; the next NOOP does not wait again


def select_then_noop(server):
    client = connect_imaplib(server)
    client.select("INBOX")
    selected_with = client.response("EXISTS")[1]
    client.noop()
    reported = client.response("EXPUNGE")[1]
    count = len(client.search(None, "ALL")[1][0].split())
    client.logout()
    return selected_with, reported, count


async def test_a_change_committed_while_select_reads_the_index_is_reported(server, monkeypatch):
    first = await deliver(server, b"Subject: one\r\n\r\nbody\r\n")
    await deliver(server, b"Subject: two\r\n\r\nbody\r\n")
    load_index = server.store.load_index

    async def expunged_right_after_the_snapshot(folder_id):
        index = await load_index(folder_id)
        await server.store.expunge(folder_id, [first.uid])  # its event comes before the index does
        return index

    monkeypatch.setattr(server.store, "load_index", expunged_right_after_the_snapshot)
    selected_with, reported, count = await asyncio.to_thread(select_then_noop, server)
    assert (selected_with, reported, count) == ([b"2"], [b"1"], 1)
