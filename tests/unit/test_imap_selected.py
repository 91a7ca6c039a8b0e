"""The selected folder's view: sequence numbers, and when changes from elsewhere may be reported."""

from datetime import datetime, timezone

from postfach.imap.selected import Exists, Expunged, FlagsUpdate, SelectedFolder
from postfach.model import BlobRef, Flags, FolderIndex, MessageMeta, SystemFlag
from postfach.store.changes import FlagsChanged, MessagesAdded, MessagesExpunged

FOLDER = 7
WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def view_of(*uids, read_only=False):
    index = FolderIndex(FOLDER, 1234, max(uids, default=0) + 1, 10, list(uids), [0] * len(uids), [5] * len(uids), {})
    return SelectedFolder.load(index, read_only=read_only)


def meta(uid, flags=SystemFlag.NONE, modseq=11, keywords=frozenset()):
    return MessageMeta(FOLDER, uid, BlobRef("0" * 64, 10), Flags(flags, keywords), WHEN, modseq)


def test_sequence_numbers_follow_uid_order():
    view = view_of(3, 8, 20)
    assert len(view) == 3
    assert [view.uid_at(seq) for seq in (1, 2, 3)] == [3, 8, 20]
    assert view.seq_of(8) == 2 and view.seq_of(9) is None and view.seq_of(21) is None


def test_new_messages_are_reported_as_exists_after_their_flags_are_read():
    view = view_of(1, 2)
    view.note(MessagesAdded(1, FOLDER, (3, 4), 11))
    view.note(MessagesAdded(1, FOLDER + 1, (99,), 11))  # another folder: not ours
    assert view.wanted_uids == {3, 4}
    view.refresh([meta(3, SystemFlag.SEEN), meta(4, keywords=frozenset({"$Junk"}))])
    assert view.take_updates(expunges_allowed=False) == [Exists(4)]
    assert view.flags_at(3).system == SystemFlag.SEEN and view.flags_at(4).keywords == {"$Junk"}
    assert view.take_updates(expunges_allowed=True) == []


def test_expunges_wait_until_allowed_and_keep_sequence_numbers_meanwhile():
    view = view_of(1, 2, 3, 4)
    view.note(MessagesExpunged(1, FOLDER, (2, 4), 12))
    view.note(MessagesAdded(1, FOLDER, (5,), 13))
    view.refresh([meta(5)])
    # During FETCH/STORE/SEARCH by sequence number: numbers stay, new mail may be announced.
    assert view.take_updates(expunges_allowed=False) == [Exists(5)]
    assert view.uid_at(2) == 2 and view.is_expunged_elsewhere(2)
    # Later: highest first, so every number is valid when the client reads it; each EXPUNGE
    # also lowers the count, so no EXISTS follows (RFC 9051 §7.5.1).
    assert view.take_updates(expunges_allowed=True) == [Expunged(4, 4), Expunged(2, 2)]
    assert list(view.uids) == [1, 3, 5]


def test_flag_changes_from_elsewhere_are_reported_but_not_our_own():
    view = view_of(1, 2)
    view.set_flags(1, Flags(SystemFlag.SEEN), modseq=11)  # this session's STORE
    view.note(FlagsChanged(1, FOLDER, (1,), 11))  # ... comes back as an event: nothing to say
    view.note(FlagsChanged(1, FOLDER, (2,), 12))  # another session's change
    assert view.wanted_uids == {2}
    view.refresh([meta(2, SystemFlag.FLAGGED, modseq=12)])
    assert view.take_updates(expunges_allowed=True) == [FlagsUpdate(2, 2, Flags(SystemFlag.FLAGGED), 12)]
    assert view.highestmodseq == 12


def test_a_message_added_and_expunged_before_it_was_seen_never_appears():
    view = view_of(1)
    view.note(MessagesAdded(1, FOLDER, (2,), 11))
    view.note(MessagesExpunged(1, FOLDER, (2,), 12))
    assert view.wanted_uids == set()
    view.refresh([])
    assert view.take_updates(expunges_allowed=True) == []
    assert list(view.uids) == [1]


def test_flags_of_a_message_expunged_meanwhile_are_dropped():
    view = view_of(1, 2)
    view.note(FlagsChanged(1, FOLDER, (2,), 12))
    view.refresh([])  # the store no longer has it
    assert view.take_updates(expunges_allowed=False) == []


def test_the_index_costs_a_few_bytes_a_message_and_gives_the_garbage_collector_nothing_per_message():
    # Issue 7 point 3: every IDLE session holds its folder's index; 10,000 of them must fit.
    import gc
    import sys

    view = view_of(*range(1, 10_001))
    columns = (view.uids, view.system_flags, view.modseqs)
    assert sum(sys.getsizeof(column) for column in columns) / len(view) < 20
    assert all(len(gc.get_referents(column)) <= 1 for column in columns)  # no object per message to visit


def test_the_largest_uid_and_mod_sequence_fit():
    # RFC 9051 §2.3.1.1: uids are 32-bit; RFC 7162 §3.1.1: mod-sequences are 63-bit.
    view = view_of(1, 2**32 - 1)
    view.note(MessagesAdded(1, FOLDER, (2**32 - 2,), 2**63 - 1))
    view.refresh([meta(2**32 - 2, SystemFlag.SEEN | SystemFlag.DRAFT, modseq=2**63 - 1)])
    assert view.take_updates(expunges_allowed=True) == [Exists(3)]
    assert view.seq_of(2**32 - 2) == 2 and view.modseq_at(2) == 2**63 - 1
    assert view.flags_at(2).system == SystemFlag.SEEN | SystemFlag.DRAFT


def test_a_message_this_session_appended_is_taken_as_filed():
    view = view_of(1)
    view.note(MessagesAdded(1, FOLDER, (2, 3), 11))  # 2: ours; 3: delivered at the same time
    view.adopt(meta(2, SystemFlag.DRAFT))
    assert view.has_pending and view.wanted_uids == {3}
    view.refresh([meta(3)])
    assert view.take_updates(expunges_allowed=False) == [Exists(3)]
    assert view.flags_at(2).system == SystemFlag.DRAFT


def test_an_appended_message_changed_elsewhere_meanwhile_is_read_back():
    view = view_of(1)
    view.note(MessagesAdded(1, FOLDER, (2,), 11))
    view.note(FlagsChanged(1, FOLDER, (2,), 12))  # another session flagged it already
    view.adopt(meta(2, modseq=11))
    assert view.wanted_uids == {2}
    view.refresh([meta(2, SystemFlag.FLAGGED, modseq=12)])
    assert view.take_updates(expunges_allowed=False) == [Exists(2)]
    assert view.flags_at(2).system == SystemFlag.FLAGGED


def test_an_appended_message_expunged_meanwhile_is_not_shown():
    view = view_of(1)
    view.note(MessagesAdded(1, FOLDER, (2,), 11))
    view.note(MessagesExpunged(1, FOLDER, (2,), 12))
    view.adopt(meta(2))
    assert len(view) == 1 and not view.has_pending
