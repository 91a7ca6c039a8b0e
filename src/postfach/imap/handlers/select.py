"""SELECT, EXAMINE (with RFC 7162 CONDSTORE and QRESYNC parameters), CLOSE, UNSELECT.

SELECT loads the folder's index once into a SelectedFolder (imap/selected.py).
\\Recent (IMAP4rev1 only; RFC 9051 dropped it): SELECT claims the messages no
other session has seen as recent (store.claim_recent), so exactly one session
sees each new message as recent; EXAMINE claims nothing (RFC 3501 §6.3.2) and
reports how many are waiting. A session in IMAP4rev2 mode claims nothing.
"""

from __future__ import annotations

from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap.handlers.mailboxes import find, mailbox_id
from postfach.imap.selected import SelectedFolder
from postfach.imap.sequence import format_set
from postfach.imap.session import Bad, Done, ImapSession, No, State, handles
from postfach.model import SYSTEM_FLAG_NAMES, SystemFlag

PERMANENT_FLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)"


@handles(c.Select, c.Examine)
async def select(session: ImapSession, command: c.Select | c.Examine) -> Done:
    read_only = isinstance(command, c.Examine)
    if command.qresync is not None and not session.qresync:
        # RFC 7162 §3.2.5: the QRESYNC parameter without ENABLE QRESYNC is BAD.
        raise Bad("QRESYNC must be enabled first")
    if session.selected is not None:
        # RFC 9051 §6.3.2: the selected folder is closed first, without expunging, even if
        # this SELECT fails; RFC 7162 §3.2.11 / RFC 9051 §7.1: say so with [CLOSED].
        session.deselect()
        if session.qresync or session.rev2:
            session.send(r.untagged_status("OK", "previous mailbox closed", "CLOSED"))
    name, folder = await find(session, command.mailbox)
    if folder is None:
        raise No(f"there is no folder {name}", "NONEXISTENT")
    if command.condstore or command.qresync is not None:
        session.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8: a CONDSTORE-enabling command

    store = session.store
    index, view = await session.open_view(folder, read_only=read_only)
    # Selected at once, so that no change committed from here on goes unnoticed.
    session.folder, session.selected, session.state = folder, view, State.SELECTED
    waiting = 0
    if not session.rev2:
        if read_only:
            waiting = await store.count_recent(folder.id)
        else:
            # Claimed after loading: a message added in between is recent here and arrives as an event.
            view.recent.update(await store.claim_recent(folder.id))

    keywords = sorted({keyword for words in index.keywords.values() for keyword in words})
    flags = [*SYSTEM_FLAG_NAMES.values(), *keywords]
    session.send(b"* FLAGS " + bytes(r.flag_list(flags)) + b"\r\n")
    session.send(b"* %d EXISTS\r\n" % len(view))
    if not session.rev2:
        shown = sum(1 for uid in view.recent if view.seq_of(uid) is not None)
        session.send(b"* %d RECENT\r\n" % (waiting if read_only else shown))
        first_unseen = _first_unseen(view)
        if first_unseen is not None:
            session.send(r.untagged_status("OK", f"message {first_unseen} is the first unseen", f"UNSEEN {first_unseen}"))
    else:
        # RFC 9051 §6.3.2: a LIST response with the folder's name is required.
        session.send(r.list_response([], "/", command.mailbox, session.utf8))
    permanent = "()" if read_only else PERMANENT_FLAGS
    session.send(r.untagged_status("OK", "flags that can be changed", f"PERMANENTFLAGS {permanent}"))
    session.send(r.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {index.uidvalidity}"))
    session.send(r.untagged_status("OK", "predicted next UID", f"UIDNEXT {index.uidnext}"))
    if session.condstore:
        session.send(r.untagged_status("OK", "highest", f"HIGHESTMODSEQ {index.highestmodseq}"))
    session.send(r.untagged_status("OK", "the folder's id", f"MAILBOXID ({mailbox_id(folder)})"))
    if command.qresync is not None and command.qresync.uidvalidity == index.uidvalidity:
        await _resync(session, view, command.qresync, index.uidnext)

    mode = "READ-ONLY" if read_only else "READ-WRITE"
    return Done(f"{command.NAME} completed", mode)


# Each message's flags byte -> 1 if \Seen else 0: the first 0 is the first unseen message.
_SEEN_OR_NOT = bytes(1 if bits & SystemFlag.SEEN else 0 for bits in range(256))


def _first_unseen(view: SelectedFolder) -> int | None:
    """The sequence number of the first message without \\Seen, found in C, not per message in Python
    (`int & SystemFlag` builds an enum member each time: 80 ms for 100,000 messages)."""
    position = bytes(view.system_flags).translate(_SEEN_OR_NOT).find(0)
    return None if position < 0 else position + 1


async def _resync(session: ImapSession, view: SelectedFolder, qresync: c.Qresync, uidnext: int) -> None:
    """RFC 7162 §3.2.5.2: what was expunged and what changed since the client's modseq.

    The store keeps every expunged uid, so the optional sequence match data is
    not needed to narrow VANISHED down and is ignored (§3.2.5.2 allows that).
    """
    highest_uid = max(uidnext - 1, 1)
    known = qresync.known_uids

    def wanted(uid: int) -> bool:
        return known is None or known.contains(uid, highest_uid)

    vanished = [uid for uid in await session.store.expunged_since(view.folder_id, qresync.modseq) if wanted(uid)]
    if vanished:
        session.send(b"* VANISHED (EARLIER) " + format_set(vanished).encode("ascii") + b"\r\n")
    for seq, uid in enumerate(view.uids, 1):
        if view.modseq_at(seq) > qresync.modseq and wanted(uid):
            items = [("UID", uid), ("FLAGS", r.flag_list(view.flags_at(seq).names())), ("MODSEQ", [view.modseq_at(seq)])]
            session.send(r.fetch(seq, items, session.utf8))


@handles(c.Close)
async def close(session: ImapSession, command: c.Command) -> Done:
    # RFC 9051 §6.4.1: messages marked \Deleted are removed, silently (no EXPUNGE responses),
    # unless the folder was opened read-only.
    view = session.selected
    assert view is not None
    session.deselect()
    if not view.read_only:
        # Flag checked in the store's transaction: a message undeleted elsewhere meanwhile stays.
        await session.store.expunge_deleted(view.folder_id)
    return Done("CLOSE completed")


@handles(c.Unselect)
async def unselect(session: ImapSession, command: c.Command) -> Done:
    # RFC 3691 / RFC 9051 §6.4.2: like CLOSE, but nothing is expunged.
    session.deselect()
    return Done("UNSELECT completed")
