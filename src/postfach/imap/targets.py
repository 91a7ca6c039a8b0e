"""Which messages of the selected folder a command names: sequence numbers, UIDs, or ``$``.

RFC 9051 §6.4.5: a sequence number beyond the mailbox is a client error (BAD);
RFC 9051 §6.4.9: UIDs that do not exist are ignored, so a UID range with no
messages names nothing and the command still succeeds.
RFC 5182 §2.1: ``$`` is the result saved by SEARCH RETURN (SAVE); messages
expunged since drop out of it, and before any SAVE (or after a new SELECT) it
is empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from postfach.imap.selected import SelectedFolder
from postfach.imap.sequence import SequenceSet, SequenceSetError
from postfach.imap.session import Bad, ImapSession


def selected(session: ImapSession) -> SelectedFolder:
    assert session.selected is not None, "the state table admits this command only with a folder selected"
    return session.selected


def saved_uids(session: ImapSession) -> list[int]:
    view = session.selected
    if view is None or session.saved_search is None or session.saved_search[0] is not view:
        return []
    return [uid for uid in session.saved_search[1] if view.seq_of(uid) is not None]


def save_search(session: ImapSession, uids: Iterable[int]) -> None:
    if session.selected is not None:
        session.saved_search = (session.selected, tuple(sorted(set(uids))))


def sequence_numbers(session: ImapSession, numbers: SequenceSet, uid: bool) -> list[int]:
    """Sequence numbers named by a set of sequence numbers (``uid`` False) or UIDs, ascending."""
    view = selected(session)
    if numbers.saved:
        return [seq for seq in (view.seq_of(u) for u in saved_uids(session)) if seq is not None]
    if uid:
        return [view.seq_of(u) for u in numbers.resolve_uids(view.uids)]  # type: ignore[misc]
    try:
        return numbers.resolve_numbers(len(view))
    except SequenceSetError as error:
        raise Bad(str(error)) from None
