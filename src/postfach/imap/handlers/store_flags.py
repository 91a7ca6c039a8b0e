"""STORE and UID STORE (RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE).

The store changes the flags in one transaction; the view learns the result
through `set_flags` so the change event coming back is not reported twice.
Unless .SILENT, every named message gets a FETCH with its flags (RFC 9051
§6.4.6: "as if a FETCH of those flags was done"), with UID for UID STORE and
MODSEQ once CONDSTORE is on.
"""

from __future__ import annotations

from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap import targets
from postfach.imap.handlers.fetch import flag_names
from postfach.imap.sequence import format_set
from postfach.imap.session import Bad, Done, ImapSession, No, handles
from postfach.model import SYSTEM_FLAG_NAMES, Flags
from postfach.store.base import FlagMode

_SYSTEM = {name.lower() for name in SYSTEM_FLAG_NAMES.values()}
_MODES = {"": FlagMode.REPLACE, "+": FlagMode.ADD, "-": FlagMode.REMOVE}


def requested_flags(names: tuple[str, ...]) -> Flags:
    """The flags a STORE names; \\Recent is the server's and is ignored (RFC 3501 §2.3.2)."""
    kept = []
    for name in names:
        if name.startswith("\\"):
            if name.lower() == "\\recent":
                continue
            if name.lower() not in _SYSTEM:
                raise Bad(f"{name} is not a flag that can be set")
        kept.append(name)
    return Flags.from_names(kept)


@handles(c.Store)
async def store(session: ImapSession, command: c.Store) -> Done:
    view = targets.selected(session)
    if view.read_only:
        raise No("the mailbox is open read-only (EXAMINE); flags cannot be changed")
    seqs = targets.sequence_numbers(session, command.sequence_set, command.uid)
    flags = requested_flags(command.flags)
    mode = _MODES[command.mode]
    uids = [view.uid_at(seq) for seq in seqs]
    failed: list[int] = []
    if command.unchangedsince is not None:
        session.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
        changed, failed = await session.store.set_flags_if_unchanged(
            view.folder_id, uids, flags, mode, command.unchangedsince
        )
    else:
        changed = await session.store.set_flags(view.folder_id, uids, flags, mode)
    for message in changed:
        view.set_flags(message.uid, message.flags, message.modseq)
    changed_uids = {message.uid for message in changed}
    refused = set(failed)
    for seq, uid in zip(seqs, uids):
        if uid in refused or view.is_expunged_elsewhere(uid):
            continue
        # RFC 7162 §3.1.3: with CONDSTORE, .SILENT still reports the new MODSEQ of changed messages.
        if command.silent and not (session.condstore and uid in changed_uids):
            continue
        items: list[tuple[str, object]] = []
        if not command.silent:
            items.append(("FLAGS", flag_names(view, seq, uid)))
        if command.uid:
            items.append(("UID", uid))
        if session.condstore:
            items.append(("MODSEQ", [view.modseq_at(seq)]))
        session.send(r.fetch(seq, items, utf8=session.utf8))
    if failed:
        # RFC 7162 §3.1.3: the messages that failed the test, as UIDs for UID STORE.
        numbers = failed if command.uid else [view.seq_of(uid) or 0 for uid in failed]
        return Done("conditional STORE failed for some messages", "MODIFIED " + format_set(numbers))
    return Done("STORE completed")
