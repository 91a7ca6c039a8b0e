"""A session's view of its selected folder: Dovecot's index idea, kept in memory.

On SELECT the session loads uid/flags/modseq once (store.load_index); from
then on sequence numbers, flag lookups and flag searches never go back to
the store. Changes made elsewhere arrive as store events; they are noted
at once and reported to the client only where IMAP allows:

- RFC 9051 §7.5.1: no EXPUNGE while no command is in progress, nor while
  answering FETCH, STORE or SEARCH by sequence number (the UID forms may
  report expunges, §6.4.9); until then the message keeps its sequence
  number and the client sees it as if nothing happened.
- EXISTS and FETCH (FLAGS) may be sent at the end of any command.

This module does no I/O: the session fetches the flags of messages the view
asks about (`wanted_uids`) and hands them in with `refresh`.

The per-message columns are arrays of machine integers, 16 bytes a message,
where lists of int objects took about 80 and gave the garbage collector one
more object to visit for each: the indexes of 10,000 IDLE sessions on
2,000-message INBOXes take 0.4 GB instead of 1.3 (issue 7 point 3;
bench/idle_load.py --messages 2000).
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field

from postfach.model import Flags, FolderIndex, MessageMeta, SystemFlag
from postfach.store.changes import Change, FlagsChanged, MessagesAdded, MessagesExpunged


@dataclass(frozen=True, slots=True)
class Expunged:
    """Report EXPUNGE of this sequence number (or, with QRESYNC, VANISHED of the uid)."""

    seq: int
    uid: int


@dataclass(frozen=True, slots=True)
class Exists:
    count: int


@dataclass(frozen=True, slots=True)
class FlagsUpdate:
    """Report FETCH (UID FLAGS [MODSEQ]) for a message whose flags changed elsewhere."""

    seq: int
    uid: int
    flags: Flags
    modseq: int


Update = Expunged | Exists | FlagsUpdate


# RFC 9051 §2.3.1.1: a uid is a 32-bit number; RFC 7162 §3.1.1: a mod-sequence fits 63 bits.
UID_ARRAY = "I"
FLAGS_ARRAY = "I"
MODSEQ_ARRAY = "Q"


@dataclass
class SelectedFolder:
    folder_id: int
    uidvalidity: int
    read_only: bool
    # Parallel columns in ascending uid order, as FolderIndex has them (see the module docstring).
    uids: array[int]
    system_flags: array[int]
    modseqs: array[int]
    keywords: dict[int, frozenset[str]]
    highestmodseq: int
    recent: set[int] = field(default_factory=set)
    # Noted from events, not yet reported:
    _gone: set[int] = field(default_factory=set)
    _stale: set[int] = field(default_factory=set)
    _new: set[int] = field(default_factory=set)
    _changed_while_new: set[int] = field(default_factory=set)
    # The store's highest modseq a NOOP last waited for (ImapSession.catch_up).
    awaited_modseq: int = 0
    _reported_count: int = 0

    @classmethod
    def load(cls, index: FolderIndex, *, read_only: bool, recent: set[int] | None = None) -> SelectedFolder:
        view = cls(
            folder_id=index.folder_id,
            uidvalidity=index.uidvalidity,
            read_only=read_only,
            uids=array(UID_ARRAY, index.uids),
            system_flags=array(FLAGS_ARRAY, index.system_flags),
            modseqs=array(MODSEQ_ARRAY, index.modseqs),
            keywords=dict(index.keywords),
            highestmodseq=index.highestmodseq,
            recent=set(recent or ()),
        )
        view._reported_count = len(view.uids)
        return view

    # ---------------------------------------------------------------- the client's view

    def __len__(self) -> int:
        return len(self.uids)

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        position = bisect.bisect_left(self.uids, uid)
        if position < len(self.uids) and self.uids[position] == uid:
            return position + 1
        return None

    def flags_at(self, seq: int) -> Flags:
        uid = self.uids[seq - 1]
        return Flags(SystemFlag(self.system_flags[seq - 1]), self.keywords.get(uid, frozenset()))

    def modseq_at(self, seq: int) -> int:
        return self.modseqs[seq - 1]

    def is_expunged_elsewhere(self, uid: int) -> bool:
        """Still numbered for the client, but gone from the store (RFC 9051 §7.5.1 leaves it readable)."""
        return uid in self._gone

    def count_with(self, flag: SystemFlag, present: bool = True) -> int:
        return sum(1 for value in self.system_flags if bool(value & flag) == present)

    # ---------------------------------------------------------------- this session's own changes

    def set_flags(self, uid: int, flags: Flags, modseq: int) -> None:
        """A change this session made (its STORE answer already told the client)."""
        seq = self.seq_of(uid)
        if seq is None:
            return
        self.system_flags[seq - 1] = int(flags.system)
        if flags.keywords:
            self.keywords[uid] = flags.keywords
        else:
            self.keywords.pop(uid, None)
        self.modseqs[seq - 1] = modseq
        self.highestmodseq = max(self.highestmodseq, modseq)
        self._stale.discard(uid)

    # ---------------------------------------------------------------- changes from elsewhere

    def note(self, change: Change) -> None:
        """Remember a committed change to this folder; nothing is reported yet."""
        if getattr(change, "folder_id", None) != self.folder_id:
            return
        if isinstance(change, MessagesAdded):
            self._new.update(uid for uid in change.uids if self.seq_of(uid) is None)
        elif isinstance(change, FlagsChanged):
            # A message not yet in the view gets its flags when it is loaded; one whose modseq
            # is already this new is this session's own change, reported by its STORE.
            for uid in change.uids:
                seq = self.seq_of(uid)
                if seq is not None and self.modseqs[seq - 1] < change.modseq:
                    self._stale.add(uid)
                elif uid in self._new:
                    self._changed_while_new.add(uid)
        elif isinstance(change, MessagesExpunged):
            for uid in change.uids:
                if self.seq_of(uid) is not None:
                    self._gone.add(uid)
                self._new.discard(uid)
                self._stale.discard(uid)
        if hasattr(change, "modseq"):
            self.highestmodseq = max(self.highestmodseq, change.modseq)

    @property
    def wanted_uids(self) -> set[int]:
        """Messages whose current flags the session must read from the store before reporting."""
        return (self._new | self._stale) - self._gone

    @property
    def has_pending(self) -> bool:
        return bool(self._new or self._stale or self._gone) or len(self.uids) != self._reported_count

    def adopt(self, message: MessageMeta) -> None:
        """A message this session appended, as the store filed it: the view takes it without
        reading it back, unless its flags changed elsewhere since (then `refresh` reads it)."""
        if message.uid in self._new and message.uid not in self._changed_while_new:
            self._new.discard(message.uid)
            self._insert(message)

    def refresh(self, messages: list[MessageMeta]) -> None:
        """Hand in the store's current state of `wanted_uids` (a missing one was expunged meanwhile)."""
        found = {message.uid: message for message in messages}
        for uid in sorted(self._new):
            message = found.get(uid)
            if message is not None:  # else added and expunged again before we looked: never shown
                self._insert(message)
        self._new.clear()
        self._changed_while_new.clear()
        for uid in list(self._stale):
            message = found.get(uid)
            if message is None:
                self._stale.discard(uid)
                continue
            seq = self.seq_of(uid)
            if seq is None:
                self._stale.discard(uid)
                continue
            self.system_flags[seq - 1] = int(message.flags.system)
            self.modseqs[seq - 1] = message.modseq
            if message.flags.keywords:
                self.keywords[uid] = message.flags.keywords
            else:
                self.keywords.pop(uid, None)

    def _insert(self, message: MessageMeta) -> None:
        uid = message.uid
        position = bisect.bisect_left(self.uids, uid)
        self.uids.insert(position, uid)
        self.system_flags.insert(position, int(message.flags.system))
        self.modseqs.insert(position, message.modseq)
        if message.flags.keywords:
            self.keywords[uid] = message.flags.keywords

    def take_updates(self, *, expunges_allowed: bool) -> list[Update]:
        """What to tell the client now, in a safe order; call after `refresh`."""
        updates: list[Update] = []
        if expunges_allowed and self._gone:
            # Highest first: each EXPUNGE renumbers the messages above it (RFC 9051 §7.5.1).
            for uid in sorted(self._gone, reverse=True):
                seq = self.seq_of(uid)
                if seq is None:
                    continue
                updates.append(Expunged(seq, uid))
                del self.uids[seq - 1], self.system_flags[seq - 1], self.modseqs[seq - 1]
                self.keywords.pop(uid, None)
                self.recent.discard(uid)
            self._gone.clear()
            self._reported_count = len(self.uids)
        if len(self.uids) != self._reported_count:
            updates.append(Exists(len(self.uids)))
            self._reported_count = len(self.uids)
        for uid in sorted(self._stale):
            seq = self.seq_of(uid)
            if seq is not None:
                updates.append(FlagsUpdate(seq, uid, self.flags_at(seq), self.modseqs[seq - 1]))
        self._stale.clear()
        return updates
