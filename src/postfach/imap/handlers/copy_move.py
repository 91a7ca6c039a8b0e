"""COPY, MOVE, EXPUNGE and their UID forms (RFC 9051 §6.4.3, §6.4.7, §6.4.8;
RFC 6851 MOVE; RFC 4315 UIDPLUS).

Each is one store transaction: a COPY copies all messages or none, a MOVE
copies and expunges at once (no client ever sees a message in both folders
or in neither), an EXPUNGE removes exactly the messages still flagged
\\Deleted when it runs. The untagged EXPUNGE (or VANISHED, with QRESYNC)
responses come from the change events, through `session.report_changes`.
"""

from __future__ import annotations

from postfach.imap import commands as c
from postfach.imap import targets
from postfach.imap.sequence import SequenceSet
from postfach.imap.session import Done, ImapSession, No, handles
from postfach.model import Folder, SpecialUse


async def _target(session: ImapSession, wire_name: str) -> Folder:
    from postfach.imap.handlers.mailboxes import find  # names, aliases and INBOX/ live there

    _, folder = await find(session, wire_name)
    if folder is None:
        # RFC 9051 §6.4.7: the client may CREATE it and try again.
        raise No(f"there is no mailbox {wire_name}", "TRYCREATE")
    return folder


def _copyuid(folder: Folder, pairs: list[tuple[int, int]]) -> str:
    """RFC 4315 §3: COPYUID uidvalidity source-uids dest-uids, in the same order."""
    sources = ",".join(str(source) for source, _ in pairs)
    targets_ = ",".join(str(new) for _, new in pairs)
    if len(pairs) > 1 and all(b[0] == a[0] + 1 and b[1] == a[1] + 1 for a, b in zip(pairs, pairs[1:])):
        sources = f"{pairs[0][0]}:{pairs[-1][0]}"
        targets_ = f"{pairs[0][1]}:{pairs[-1][1]}"
    return f"COPYUID {folder.uidvalidity} {sources} {targets_}"


@handles(c.Copy)
async def copy(session: ImapSession, command: c.Copy) -> Done:
    view = targets.selected(session)
    seqs = targets.sequence_numbers(session, command.sequence_set, command.uid)
    folder = await _target(session, command.mailbox)
    uids = [view.uid_at(seq) for seq in seqs]
    if not uids:
        return Done("COPY completed, nothing to copy")
    if not command.uid and any(view.is_expunged_elsewhere(uid) for uid in uids):
        # RFC 2180 §4.4.1: a COPY by number of a message expunged meanwhile fails as a whole.
        raise No("some of the messages were expunged meanwhile", "EXPUNGEISSUED")
    # Deleting in a client is often a COPY to Trash: that must work in a full mailbox.
    pairs = await session.store.copy_messages(
        view.folder_id, uids, folder.id, enforce_quota=folder.special_use is not SpecialUse.TRASH
    )
    if not pairs:
        return Done("COPY completed, nothing to copy")
    return Done("COPY completed", _copyuid(folder, pairs))


@handles(c.Move)
async def move(session: ImapSession, command: c.Move) -> Done:
    view = targets.selected(session)
    if view.read_only:
        raise No("the mailbox is open read-only (EXAMINE); messages cannot be moved out")
    seqs = targets.sequence_numbers(session, command.sequence_set, command.uid)
    folder = await _target(session, command.mailbox)
    uids = [view.uid_at(seq) for seq in seqs]
    if not uids:
        return Done("MOVE completed, nothing to move")
    pairs = await session.store.move_messages(view.folder_id, uids, folder.id)
    if pairs:
        # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
        session.send(b"* OK [" + _copyuid(folder, pairs).encode("ascii") + b"] moved\r\n")
    # RFC 6851 §3.3: MOVE reports the expunges of the moved messages itself, by sequence
    # number too (unlike FETCH, STORE and SEARCH, RFC 9051 §7.5.1).
    await session.report_changes(expunges_allowed=True)
    return Done("MOVE completed")


@handles(c.Expunge)
async def expunge(session: ImapSession, command: c.Expunge) -> Done:
    view = targets.selected(session)
    if view.read_only:
        raise No("the mailbox is open read-only (EXAMINE); nothing can be expunged")
    uids = None
    if command.uid:
        # RFC 4315 §2.1: only the named messages that are flagged \Deleted.
        named = command.uids or SequenceSet()
        uids = targets.saved_uids(session) if named.saved else named.resolve_uids(view.uids)
    gone = await session.store.expunge_deleted(view.folder_id, uids)
    return Done(f"EXPUNGE completed ({len(gone)} removed)")
