"""Folders over real sockets: SELECT/EXAMINE, LIST/LSUB, CREATE/DELETE/RENAME, STATUS, APPEND, QUOTA,
\\Recent, and two sessions at once (imaplib, imapclient, and a raw client for exact bytes)."""

import asyncio
import imaplib
import re
import socket
from datetime import datetime, timedelta, timezone

import imapclient
import pytest

from postfach.imap import commands as c
from postfach.imap.session import ImapSession, State
from postfach.model import Flags, SystemFlag
from postfach.store.base import FlagMode
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import make_config
from tests.support.messages import make_message
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"



@pytest.fixture
async def server(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("imaps",))) as running:
        running.account = await make_account(running.store, USER, quota="5M")
        yield running


async def folder(server, name):
    return await server.store.get_folder(server.account.id, name)


async def deliver(server, name="INBOX", data=None, flags=None):
    return await server.store.append((await folder(server, name)).id, data or make_message(), flags or Flags())


class Raw:
    """A minimal IMAP client that shows the server's bytes exactly."""

    def __init__(self, server, login=True):
        address = server.addresses["imaps"]
        self.sock = insecure_context().wrap_socket(socket.create_connection((address.host, address.port), timeout=10))
        self.file = self.sock.makefile("rb")
        self.counter = 0
        self.file.readline()  # greeting
        if login:
            assert self.command(f'LOGIN {USER} "{PASSWORD}"')[-1].split()[1] == b"OK"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, text: str | bytes) -> list[bytes]:
        """Send one command; every line up to and including the tagged one, CRLF removed."""
        self.counter += 1
        tag = b"t%d" % self.counter
        self.send(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        lines = []
        while True:
            line = self.line()
            assert line, "connection closed"
            lines.append(line.rstrip(b"\r\n"))
            if line.startswith(tag + b" "):
                return lines

    def close(self):
        self.command("LOGOUT")
        self.sock.close()


def client(server) -> imaplib.IMAP4_SSL:
    address = server.addresses["imaps"]
    imap = imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def fancy(server) -> imapclient.IMAPClient:
    address = server.addresses["imaps"]
    imap = imapclient.IMAPClient(address.host, address.port, ssl=True, ssl_context=insecure_context(), timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def thread(function, *args):
    return asyncio.to_thread(function, *args)


def lists(lines, command=b"LIST"):
    return [line for line in lines if line.startswith(b"* " + command + b" ")]


# ---------------------------------------------------------------- SELECT / EXAMINE


async def test_select_and_examine_answer_exactly(server):
    inbox = await folder(server, "INBOX")
    await deliver(server, flags=Flags(SystemFlag.SEEN))
    await deliver(server, flags=Flags(keywords=frozenset({"$Junk"})))
    raw = await thread(Raw, server)
    lines = await thread(raw.command, "SELECT inbox")
    assert lines == [
        b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Junk)",
        b"* 2 EXISTS",
        b"* 2 RECENT",
        b"* OK [UNSEEN 2] message 2 is the first unseen",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags that can be changed",
        b"* OK [UIDVALIDITY %d] UIDs valid" % inbox.uidvalidity,
        b"* OK [UIDNEXT 3] predicted next UID",
        b"* OK [MAILBOXID (F%d)] the folder's id" % inbox.id,
        b"t2 OK [READ-WRITE] SELECT completed",
    ]
    # A second session: the messages were recent for the first one only; EXAMINE is read-only.
    other = await thread(Raw, server)
    lines = await thread(other.command, "EXAMINE INBOX (CONDSTORE)")
    assert b"* 0 RECENT" in lines
    assert b"* OK [PERMANENTFLAGS ()] flags that can be changed" in lines
    assert b"* OK [HIGHESTMODSEQ 3] highest" in lines
    assert lines[-1] == b"t2 OK [READ-ONLY] EXAMINE completed"
    # Selecting another folder closes the first; a missing one leaves nothing selected.
    assert (await thread(other.command, "SELECT Nowhere"))[-1].startswith(b"t3 NO [NONEXISTENT]")
    assert (await thread(other.command, "CLOSE"))[-1].startswith(b"t4 BAD")
    # IMAP4rev2 mode: no RECENT, no [UNSEEN]; a LIST response instead, [CLOSED] when switching.
    rev2 = await thread(Raw, server)
    await thread(rev2.command, "ENABLE IMAP4rev2")
    lines = await thread(rev2.command, "SELECT INBOX")
    assert not [line for line in lines if b"RECENT" in line or b"UNSEEN" in line]
    assert b'* LIST () "/" "INBOX"' in lines
    lines = await thread(rev2.command, "SELECT Sent")
    assert lines[0] == b"* OK [CLOSED] previous mailbox closed"
    for session in (raw, other, rev2):
        await thread(session.close)


async def test_close_expunges_silently_but_not_when_read_only(server):
    messages = [await deliver(server) for _ in range(3)]
    inbox = await folder(server, "INBOX")
    await server.store.set_flags(inbox.id, [messages[1].uid], Flags(SystemFlag.DELETED), FlagMode.ADD)
    raw = await thread(Raw, server)
    await thread(raw.command, "EXAMINE INBOX")
    assert await thread(raw.command, "CLOSE") == [b"t3 OK CLOSE completed"]
    assert (await server.store.folder_status(inbox.id)).messages == 3
    await thread(raw.command, "SELECT INBOX")
    assert await thread(raw.command, "UNSELECT") == [b"t5 OK UNSELECT completed"]
    assert (await server.store.folder_status(inbox.id)).messages == 3
    await thread(raw.command, "SELECT INBOX")
    assert await thread(raw.command, "CLOSE") == [b"t7 OK CLOSE completed"]  # no EXPUNGE responses
    assert (await server.store.message_sizes(inbox.id))[0] == [messages[0].uid, messages[2].uid]
    await thread(raw.close)


class _Output:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data

    def flush(self):
        pass

    async def drain(self):
        pass


async def test_qresync_select_reports_vanished_and_changed_flags(server):
    inbox = await folder(server, "INBOX")
    first = await deliver(server)
    second = await deliver(server)
    third = await deliver(server)
    known = (await folder(server, "INBOX")).highestmodseq
    await server.store.expunge(inbox.id, [second.uid])
    await server.store.set_flags(inbox.id, [third.uid], Flags(SystemFlag.FLAGGED), FlagMode.ADD)
    fourth = await deliver(server)

    output = _Output()
    session = ImapSession(server.imap.services, output, 99, "test", tls=True)
    session.account, session.state = server.account, State.AUTHENTICATED
    session.watch_account()
    session.enabled.add("QRESYNC")  # as ENABLE QRESYNC does once the capability is offered
    await session.run(c.Select("a1", "INBOX", qresync=c.Qresync(inbox.uidvalidity, known)))
    text = bytes(output.data)
    assert b"* VANISHED (EARLIER) %d\r\n" % second.uid in text
    assert b"* OK [HIGHESTMODSEQ " in text
    # Changed since `known`: the flagged one and the new one, nothing else.
    fetches = re.findall(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)", text)
    assert [(int(seq), int(uid), flags) for seq, uid, flags, _ in fetches] == [
        (2, third.uid, b"\\Flagged"), (3, fourth.uid, b""),
    ]
    assert first.uid not in [int(uid) for _, uid, _, _ in fetches]
    assert text.endswith(b"a1 OK [READ-WRITE] SELECT completed\r\n")
    # Without ENABLE QRESYNC the parameter is BAD (RFC 7162 §3.2.5).
    output.data.clear()
    session.enabled.clear()
    await session.run(c.Select("a2", "INBOX", qresync=c.Qresync(inbox.uidvalidity, known)))
    assert bytes(output.data).startswith(b"a2 BAD")
    session.close()
    # The same over the wire, after ENABLE QRESYNC.
    raw = await thread(Raw, server)
    assert b"* ENABLED QRESYNC" in await thread(raw.command, "ENABLE QRESYNC")
    lines = await thread(raw.command, f"SELECT INBOX (QRESYNC ({inbox.uidvalidity} {known} 1:{third.uid}))")
    assert b"* VANISHED (EARLIER) %d" % second.uid in lines
    assert [line for line in lines if b"FETCH" in line] == [
        b"* 2 FETCH (UID %d FLAGS (\\Flagged) MODSEQ (%d))" % (third.uid, (await folder(server, "INBOX")).highestmodseq - 1)
    ]
    await thread(raw.close)


# ---------------------------------------------------------------- LIST and LSUB


async def test_list_patterns_children_special_use_and_status(server):
    raw = await thread(Raw, server)
    for name in ("Work/2026/Q1", "Work/Old", "Private"):
        assert (await thread(raw.command, f'CREATE "{name}"'))[-1].endswith(b"OK CREATE completed")
    assert await thread(raw.command, 'LIST "" ""') == [b'* LIST (\\Noselect) "/" ""', b"t5 OK LIST completed"]
    top = lists(await thread(raw.command, 'LIST "" "%"'))
    assert top == [
        b'* LIST (\\HasNoChildren) "/" "INBOX"',
        b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"',
        b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        b'* LIST (\\HasNoChildren \\Junk) "/" "Junk"',
        b'* LIST (\\HasNoChildren) "/" "Private"',
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
        b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
        b'* LIST (\\HasChildren) "/" "Work"',
    ]
    assert lists(await thread(raw.command, 'LIST "Work/" "%"')) == [
        b'* LIST (\\HasChildren) "/" "Work/2026"',
        b'* LIST (\\HasNoChildren) "/" "Work/Old"',
    ]
    assert lists(await thread(raw.command, 'LIST "" "work/*"')) == []  # names other than INBOX are exact
    assert lists(await thread(raw.command, 'LIST "" "*Q1"')) == [b'* LIST (\\HasNoChildren) "/" "Work/2026/Q1"']
    assert lists(await thread(raw.command, 'LIST "" "inbox"')) == [b'* LIST (\\HasNoChildren) "/" "INBOX"']
    # RFC 6154 selection option; several patterns (RFC 5258).
    special = lists(await thread(raw.command, 'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)'))
    assert [line.rsplit(b" ", 1)[1] for line in special] == [b'"Archive"', b'"Drafts"', b'"Junk"', b'"Sent"', b'"Trash"']
    assert len(lists(await thread(raw.command, 'LIST "" ("Sent" "Trash" "Sent")'))) == 2
    # SUBSCRIBED with RECURSIVEMATCH: an unsubscribed parent with a subscribed child gets CHILDINFO.
    await thread(raw.command, 'UNSUBSCRIBE "Work"')
    await thread(raw.command, 'UNSUBSCRIBE "Work/Old"')
    lines = lists(await thread(raw.command, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'))
    assert b'* LIST (\\HasChildren) "/" "Work" ("CHILDINFO" ("SUBSCRIBED"))' in lines
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Private"' in lines
    lines = lists(await thread(raw.command, 'LIST (SUBSCRIBED) "" "Work/*"'))
    assert lines == [b'* LIST (\\HasChildren \\Subscribed) "/" "Work/2026"',
                     b'* LIST (\\HasNoChildren \\Subscribed) "/" "Work/2026/Q1"']
    lines = lists(await thread(raw.command, 'LIST "" "Work" RETURN (SUBSCRIBED)'))
    assert lines == [b'* LIST (\\HasChildren) "/" "Work"']
    assert len(lists(await thread(raw.command, 'LIST (REMOTE) "" "*"'))) == len(lists(await thread(raw.command, 'LIST "" "*"')))
    assert (await thread(raw.command, 'LIST (RECURSIVEMATCH) "" "*"'))[-1].split()[1] == b"BAD"
    # RFC 5819 LIST-STATUS: a STATUS after each selectable folder's LIST.
    size = (await deliver(server, "Private", make_message(2000))).size
    lines = await thread(raw.command, 'LIST "" "Pri*" RETURN (STATUS (MESSAGES UNSEEN SIZE))')
    assert lines == [
        b'* LIST (\\HasNoChildren) "/" "Private"',
        b'* STATUS "Private" (MESSAGES 1 UNSEEN 1 SIZE %d)' % size,
        lines[-1],
    ]
    # Not for a level that is no folder (RFC 5819 §2).
    await server.store.create_folder(server.account.id, "Deep/Level")
    lines = await thread(raw.command, 'LIST "" "Deep" RETURN (STATUS (MESSAGES))')
    assert lines[:-1] == [b'* LIST (\\NonExistent \\HasChildren) "/" "Deep"']
    # LSUB: a level above a subscribed name matched by % is \Noselect.
    assert lists(await thread(raw.command, 'LSUB "" "Work/%"'), b"LSUB") == [b'* LSUB () "/" "Work/2026"']
    assert lists(await thread(raw.command, 'LSUB "" "%"'), b"LSUB")[-1] == b'* LSUB (\\Noselect) "/" "Work"'
    assert lists(await thread(raw.command, 'LSUB "" "Work*"'), b"LSUB") == [
        b'* LSUB () "/" "Work/2026"', b'* LSUB () "/" "Work/2026/Q1"',
    ]
    await thread(raw.close)


async def test_list_with_imapclient_sees_flags_and_delimiter(server):
    def run():
        imap = fancy(server)
        imap.create_folder("Projects/Alpha")
        listed = imap.list_folders()
        found = {name: flags for flags, _, name in listed}
        assert found["Projects"] == (b"\\HasChildren",)
        assert b"\\Sent" in found["Sent"] and {delimiter for _, delimiter, _ in listed} == {b"/"}
        assert {name for _, _, name in imap.list_sub_folders()} >= {"INBOX", "Projects/Alpha"}
        assert imap.find_special_folder(imapclient.imapclient.SENT) == "Sent"
        imap.logout()

    await thread(run)


# ---------------------------------------------------------------- CREATE, RENAME, DELETE


async def test_create_nested_non_ascii_and_existing(server):
    raw = await thread(Raw, server)
    assert (await thread(raw.command, 'CREATE "B&APw-cher/&AMQ-rger"'))[-1] == b"t2 OK CREATE completed"
    assert await folder(server, "Bücher") is not None and await folder(server, "Bücher/Ärger") is not None
    assert lists(await thread(raw.command, 'LIST "" "B*"')) == [
        b'* LIST (\\HasChildren) "/" "B&APw-cher"', b'* LIST (\\HasNoChildren) "/" "B&APw-cher/&AMQ-rger"',
    ]
    lines = await thread(raw.command, 'CREATE "B&APw-cher"')
    assert lines[-1].startswith(b"t4 NO [ALREADYEXISTS]")
    assert (await thread(raw.command, "CREATE inbox"))[-1].startswith(b"t5 NO [ALREADYEXISTS]")
    assert (await thread(raw.command, 'CREATE "a//b"'))[-1].startswith(b"t6 NO [CANNOT]")
    # After ENABLE UTF8=ACCEPT names are UTF-8 both ways.
    await thread(raw.command, "ENABLE UTF8=ACCEPT")
    assert (await thread(raw.command, 'CREATE "Übung/Straße"'.encode()))[-1] == b"t8 OK CREATE completed"
    assert lists(await thread(raw.command, 'LIST "" "Übung/*"'.encode())) == [
        '* LIST (\\HasNoChildren) "/" "Übung/Straße"'.encode()
    ]
    # CREATE-SPECIAL-USE: a second \Sent folder is refused, a new use is given.
    assert (await thread(raw.command, 'CREATE "Outbox" (USE (\\Sent))'))[-1].startswith(b"t10 NO [USEATTR]")
    await server.store.delete_folder((await folder(server, "Archive")).id)
    assert (await thread(raw.command, 'CREATE "Old mail" (USE (\\Archive))'))[-1] == b"t11 OK CREATE completed"
    assert lists(await thread(raw.command, 'LIST "" "Old mail"')) == [b'* LIST (\\HasNoChildren \\Archive) "/" "Old mail"']
    await thread(raw.close)


async def test_rename_moves_children_and_rename_inbox_empties_it(server):
    raw = await thread(Raw, server)
    await thread(raw.command, 'CREATE "Work/2026"')
    await deliver(server, "Work/2026")
    assert (await thread(raw.command, "RENAME Work Job/Archived"))[-1] == b"t3 OK RENAME completed"
    names = {f.name for f in await server.store.list_folders(server.account.id)}
    assert {"Job", "Job/Archived", "Job/Archived/2026"} <= names and not {"Work", "Work/2026"} & names
    assert (await server.store.folder_status((await folder(server, "Job/Archived/2026")).id)).messages == 1
    assert (await thread(raw.command, "RENAME Job Sent"))[-1].startswith(b"t4 NO [ALREADYEXISTS]")
    assert (await thread(raw.command, "RENAME Nowhere Else"))[-1].startswith(b"t5 NO [NONEXISTENT]")
    # RENAME INBOX: its messages move to the new folder; INBOX stays, empty.
    kept = [await deliver(server, data=make_message(100 + n)) for n in range(3)]
    await thread(raw.command, "SELECT INBOX")
    lines = await thread(raw.command, "RENAME INBOX Saved")
    assert lines[-1] == b"t7 OK RENAME completed" and b"* 3 EXPUNGE" in lines and b"* 1 EXPUNGE" in lines
    saved = await folder(server, "Saved")
    inbox = await folder(server, "INBOX")
    assert (await server.store.folder_status(inbox.id)).messages == 0
    moved = await server.store.get_messages(saved.id, [1, 2, 3])
    assert [m.blob.sha256 for m in moved] == [m.blob.sha256 for m in kept]
    used = (await server.store.get_account(USER)).used_bytes
    assert used == sum(m.size for m in kept) + 0 + (await server.store.folder_status(
        (await folder(server, "Job/Archived/2026")).id)).size
    await thread(raw.close)


async def test_delete_inbox_refused_children_stay(server):
    raw = await thread(Raw, server)
    await thread(raw.command, 'CREATE "Work/2026"')
    assert (await thread(raw.command, "DELETE INBOX"))[-1].startswith(b"t3 NO")
    assert (await thread(raw.command, "DELETE Work"))[-1] == b"t4 OK DELETE completed"
    assert lists(await thread(raw.command, 'LIST "" "Work*"')) == [
        b'* LIST (\\Noselect \\HasChildren) "/" "Work"', b'* LIST (\\HasNoChildren) "/" "Work/2026"',
    ]
    assert lists(await thread(raw.command, 'LIST () "" "Work"')) == [b'* LIST (\\NonExistent \\HasChildren) "/" "Work"']
    assert (await thread(raw.command, "DELETE Work"))[-1].startswith(b"t7 NO [HASCHILDREN]")
    assert (await thread(raw.command, "SELECT Work"))[-1].startswith(b"t8 NO [NONEXISTENT]")
    assert (await thread(raw.command, "DELETE Work/2026"))[-1] == b"t9 OK DELETE completed"
    assert lists(await thread(raw.command, 'LIST "" "Work*"')) == []
    assert (await thread(raw.command, "DELETE Work"))[-1].startswith(b"t11 NO [NONEXISTENT]")
    await thread(raw.close)


# ---------------------------------------------------------------- one folder tree, many spellings


async def test_clients_with_and_without_the_inbox_prefix_share_every_folder(server):
    prefixed = await thread(Raw, server)
    plain = await thread(Raw, server)
    assert (await thread(prefixed.command, 'CREATE "INBOX/Projekte/2026"'))[-1].endswith(b"OK CREATE completed")
    assert await folder(server, "Projekte/2026") is not None and await folder(server, "INBOX/Projekte") is None
    assert b'* LIST (\\HasNoChildren) "/" "Projekte/2026"' in await thread(plain.command, 'LIST "" "*"')
    every = lists(await thread(prefixed.command, 'LIST "INBOX/" "*"'))
    assert b'* LIST (\\HasChildren) "/" "INBOX/Projekte"' in every
    assert b'* LIST (\\HasNoChildren \\Sent) "/" "INBOX/Sent"' in every
    assert lists(await thread(prefixed.command, 'LIST "" "Inbox/*"')) == [
        line.replace(b'"INBOX/', b'"Inbox/') for line in every
    ]
    await deliver(server, "Projekte/2026")
    lines = await thread(prefixed.command, 'STATUS "inbox/Projekte/2026" (MESSAGES)')
    assert lines[0] == b'* STATUS "inbox/Projekte/2026" (MESSAGES 1)'
    assert b"* 1 EXISTS" in await thread(plain.command, 'SELECT "Projekte/2026"')
    assert b"* 1 EXISTS" in await thread(prefixed.command, 'EXAMINE "INBOX/Projekte/2026"')
    assert (await thread(prefixed.command, "RENAME INBOX/Projekte INBOX/Alt"))[-1].endswith(b"OK RENAME completed")
    assert await folder(server, "Alt/2026") is not None
    assert (await thread(plain.command, "SUBSCRIBE INBOX/Alt"))[-1].endswith(b"OK SUBSCRIBE completed")
    for session in (prefixed, plain):
        await thread(session.close)


async def test_outlook_and_german_names_reach_the_special_use_folders(server):
    before = {f.name for f in await server.store.list_folders(server.account.id)}
    raw = await thread(Raw, server)
    for name in ("Sent Items", "Gesendete Elemente", "Deleted Items", "Gelöschte Objekte", "Papierkorb",
                 "Junk E-Mail", "Entwürfe", "Sent Messages", "Archiv", "INBOX/Spam"):
        lines = await thread(raw.command, "CREATE " + _mutf7(name))
        assert lines[-1].endswith(b"OK CREATE completed"), (name, lines)
    assert {f.name for f in await server.store.list_folders(server.account.id)} == before
    sent, trash, junk = (await folder(server, "Sent"), await folder(server, "Trash"), await folder(server, "Junk"))

    def run():
        imap = client(server)
        typ, data = imap.append('"Gesendete Elemente"', "(\\Seen)", None, make_message())
        assert typ == "OK" and b"APPENDUID %d 1" % sent.uidvalidity in data[0]
        typ, data = imap.select('"Deleted Items"')
        assert typ == "OK" and imap.untagged_responses["MAILBOXID"] == [b"(F%d)" % trash.id]
        typ, data = imap.status('"Junk E-Mail"', "(MAILBOXID)")
        assert data == [b'"Junk E-Mail" (MAILBOXID (F%d))' % junk.id]
        imap.logout()

    await thread(run)
    assert (await server.store.folder_status(sent.id)).messages == 1
    await thread(raw.close)


def _mutf7(name: str) -> str:
    from postfach.imap import mutf7

    return '"' + mutf7.encode(name).decode() + '"'


# ---------------------------------------------------------------- APPEND, STATUS, QUOTA


async def test_append_with_flags_and_date_is_byte_exact(server):
    message = make_message(5000).replace(b"This is", b"Diese N\xc3\xa4chricht ist")
    when = datetime(2024, 3, 5, 14, 15, 16, tzinfo=timezone(timedelta(hours=2)))

    def run():
        imap = client(server)
        typ, data = imap.append("INBOX", "(\\Flagged $Important \\Recent)", imaplib.Time2Internaldate(when), message)
        imap.logout()
        return typ, data

    typ, data = await thread(run)
    inbox = await folder(server, "INBOX")
    assert typ == "OK" and data == [b"[APPENDUID %d 1] APPEND completed" % inbox.uidvalidity]
    [stored] = await server.store.get_messages(inbox.id, [1])
    assert await server.store.read_blob(stored.blob.sha256) == message
    assert stored.flags == Flags(SystemFlag.FLAGGED, frozenset({"$Important"}))
    assert stored.internal_date == when and stored.internal_date.utcoffset() == timedelta(hours=2)
    raw = await thread(Raw, server)
    assert (await thread(raw.command, "APPEND Nowhere {3+}\r\nabc"))[-1].startswith(b"t2 NO [TRYCREATE]")
    await thread(raw.close)


async def test_append_of_a_message_spooled_to_disk_is_byte_exact(server):
    message = make_message(3 * 1024 * 1024)  # above SPOOL_IN_MEMORY: streamed from its spool file

    def run():
        imap = client(server)
        typ, data = imap.append("INBOX", None, None, message)
        imap.logout()
        return typ

    assert await thread(run) == "OK"
    inbox = await folder(server, "INBOX")
    [stored] = await server.store.get_messages(inbox.id, [1])
    assert await server.store.read_blob(stored.blob.sha256) == message


async def test_append_over_quota_stores_nothing(server):
    inbox = await folder(server, "INBOX")
    big = make_message(6 * 1024 * 1024)

    def run():
        imap = client(server)
        typ, data = imap.append("INBOX", None, None, big)
        assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")
        imap.logout()

    await thread(run)
    assert (await server.store.folder_status(inbox.id)).messages == 0
    assert (await server.store.get_account(USER)).used_bytes == 0


async def test_append_too_big_is_refused_before_the_client_sends(server):
    raw = await thread(Raw, server)
    size = server.imap.services.settings.append_limit + 1
    await thread(raw.send, b"t9 APPEND INBOX {%d}\r\n" % size)
    line = await thread(raw.line)
    assert line.startswith(b"t9 NO [TOOBIG]")  # no "+": the client never sends the message
    assert (await thread(raw.command, "NOOP"))[-1] == b"t2 OK NOOP completed"
    await thread(raw.close)


async def test_status_all_items(server):
    inbox = await folder(server, "INBOX")
    one = await deliver(server, data=make_message(3000), flags=Flags(SystemFlag.SEEN | SystemFlag.DELETED))
    two = await deliver(server, data=make_message(1000))
    highest = (await folder(server, "INBOX")).highestmodseq
    raw = await thread(Raw, server)
    lines = await thread(
        raw.command,
        "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ MAILBOXID APPENDLIMIT"
        " DELETED-STORAGE)",
    )
    assert lines[0] == (
        b'* STATUS "INBOX" (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY %d UNSEEN 1 DELETED 1 SIZE %d'
        b" HIGHESTMODSEQ %d MAILBOXID (F%d) APPENDLIMIT %d DELETED-STORAGE %d)"
        % (inbox.uidvalidity, one.size + two.size, highest, inbox.id,
           server.imap.services.settings.append_limit, one.size // 1024)
    )
    assert (await thread(raw.command, "STATUS Nowhere (MESSAGES)"))[-1].startswith(b"t3 NO [NONEXISTENT]")
    await thread(raw.close)


async def test_quota_root_reports_real_usage(server):
    await deliver(server, data=make_message(3000))
    used = (await server.store.get_account(USER)).used_bytes

    def run():
        imap = fancy(server)
        roots, quotas = imap.get_quota_root("INBOX")
        assert roots.quota_roots == [""]
        assert [(q.resource, q.usage, q.limit) for q in quotas] == [("STORAGE", -(-used // 1024), 5 * 1024)]
        imap.logout()

    await thread(run)
    raw = await thread(Raw, server)
    lines = await thread(raw.command, "GETQUOTAROOT INBOX")
    assert lines == [
        b'* QUOTAROOT "INBOX" ""',
        b'* QUOTA "" (STORAGE %d %d)' % (-(-used // 1024), 5 * 1024),
        b"t2 OK GETQUOTAROOT completed",
    ]
    assert (await thread(raw.command, 'GETQUOTA ""'))[0] == lines[1]
    assert (await thread(raw.command, 'SETQUOTA "" (STORAGE 99999999)'))[-1].startswith(b"t4 NO")
    await thread(raw.close)


# ---------------------------------------------------------------- two sessions


async def test_recent_goes_to_exactly_one_session(server):
    await deliver(server)
    first, second = await thread(Raw, server), await thread(Raw, server)
    assert b"* 1 RECENT" in await thread(first.command, "SELECT INBOX")
    assert b"* 0 RECENT" in await thread(second.command, "SELECT INBOX")
    await deliver(server)
    await asyncio.sleep(0.05)
    lines_first = await thread(first.command, "NOOP")
    lines_second = await thread(second.command, "NOOP")
    assert lines_first[:2] == [b"* 2 EXISTS", b"* 2 RECENT"]
    assert lines_second[:2] == [b"* 2 EXISTS", b"* 0 RECENT"]
    # STATUS RECENT from elsewhere: nothing is left unclaimed.
    third = await thread(Raw, server)
    assert (await thread(third.command, "STATUS INBOX (RECENT)"))[0] == b'* STATUS "INBOX" (RECENT 0)'
    for session in (first, second, third):
        await thread(session.close)


async def test_append_by_one_session_is_seen_by_another(server):
    watcher = await thread(Raw, server)
    assert b"* 0 EXISTS" in await thread(watcher.command, "SELECT INBOX")

    def append_elsewhere():
        imap = client(server)
        assert imap.append("INBOX", None, None, make_message())[0] == "OK"
        imap.select("INBOX")
        # Its own APPEND to the selected folder shows up in the same session.
        typ, _ = imap.append("INBOX", None, None, make_message())
        assert typ == "OK" and imap.untagged_responses.get("EXISTS", [])[-1:] == [b"2"]
        imap.logout()

    await thread(append_elsewhere)
    await asyncio.sleep(0.05)
    lines = await thread(watcher.command, "NOOP")
    assert lines[0] == b"* 2 EXISTS" and lines[-1] == b"t3 OK NOOP completed"
    await thread(watcher.close)
