"""Folder indexes kept in memory by each process, so that SELECT of a large folder reads no rows.

An entry is a folder's uid/flags/modseq in compact arrays (13 bytes a message:
a 100,000-message folder is 1.3 MB), exact as of one `modseq` of the folder.
What keeps it right:

- Every change to a folder's messages gives the folder a new highestmodseq,
  one higher than before, and stamps it on the rows it touched (or on the
  `expunged` row); the store publishes the change, with that modseq, after
  the commit (store/base.py).
- Events keep an entry current in between: a change whose modseq is the next
  one is applied here (on the event loop, in every worker process: events
  from other workers arrive through the broker); new messages and flag
  changes must carry the flags (changes.py). Anything else (a gap, an event
  out of order from another worker, a change without flags) is left alone.
- Nothing trusts an entry blindly: the store reads the folder's highestmodseq
  in the read snapshot it answers from, and reads what changed since the
  entry's modseq (two indexed queries, usually of nothing). A late or lost
  event costs a small read, never a wrong index.

This module does no I/O; the store (sqlite_index.py) reads and persists. It is
shared by the event loop thread and the store's reader threads, so every
access to entries holds the lock, and an entry leaves the lock only as a copy.
"""

from __future__ import annotations

import bisect
import json
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from postfach.model import FolderIndex
from postfach.store.changes import (
    Change,
    FlagsChanged,
    FolderDeleted,
    MessagesAdded,
    MessagesExpunged,
)

# IMAP uids are 32-bit (RFC 9051 §2.3.1.1), modseqs 63-bit (RFC 7162 §3.1.1).
UID_TYPE = "I" if array("I").itemsize == 4 else "L"
MODSEQ_TYPE = "Q"
assert array(UID_TYPE).itemsize == 4 and array(MODSEQ_TYPE).itemsize == 8

DEFAULT_MAX_MESSAGES = 2_000_000  # per process: about 26 MB of arrays


@dataclass(slots=True)
class IndexEntry:
    """One folder's index, exact as of the folder's highestmodseq `modseq`."""

    account_id: int
    uidvalidity: int
    uidnext: int
    modseq: int
    uids: array = field(default_factory=lambda: array(UID_TYPE))  # ascending
    flags: array = field(default_factory=lambda: array("B"))  # SystemFlag bits
    modseqs: array = field(default_factory=lambda: array(MODSEQ_TYPE))
    keywords: dict[int, frozenset[str]] = field(default_factory=dict)  # sparse
    # Messages changed since the snapshot on disk was taken (all of them: there is none).
    unsaved: int = 0

    def __len__(self) -> int:
        return len(self.uids)

    def copy(self) -> IndexEntry:
        return IndexEntry(
            self.account_id, self.uidvalidity, self.uidnext, self.modseq,
            array(UID_TYPE, self.uids), array("B", self.flags), array(MODSEQ_TYPE, self.modseqs),
            dict(self.keywords), self.unsaved,
        )

    def folder_index(self, folder_id: int) -> FolderIndex:
        return FolderIndex(
            folder_id, self.uidvalidity, self.uidnext, self.modseq,
            self.uids.tolist(), self.flags.tolist(), self.modseqs.tolist(), dict(self.keywords),
        )

    # ---------------------------------------------------------------- changes

    def put(self, uid: int, flags: int, modseq: int, keywords: frozenset[str]) -> None:
        """A message's current state: a new one (its uid is above the others, as uids only grow) or a change."""
        uids = self.uids
        if not uids or uid > uids[-1]:
            uids.append(uid)
            self.flags.append(flags)
            self.modseqs.append(modseq)
        else:
            position = bisect.bisect_left(uids, uid)
            if position < len(uids) and uids[position] == uid:
                self.flags[position] = flags
                self.modseqs[position] = modseq
            else:
                uids.insert(position, uid)
                self.flags.insert(position, flags)
                self.modseqs.insert(position, modseq)
        if keywords:
            self.keywords[uid] = keywords
        else:
            self.keywords.pop(uid, None)
        self.uidnext = max(self.uidnext, uid + 1)

    def remove(self, gone: Iterable[int]) -> None:
        gone = set(gone)
        uids = self.uids
        if len(gone) > 64:
            keep = [position for position, uid in enumerate(uids) if uid not in gone]
            if len(keep) != len(uids):
                self.uids = array(UID_TYPE, [uids[p] for p in keep])
                self.flags = array("B", [self.flags[p] for p in keep])
                self.modseqs = array(MODSEQ_TYPE, [self.modseqs[p] for p in keep])
        else:
            for uid in gone:
                position = bisect.bisect_left(uids, uid)
                if position < len(uids) and uids[position] == uid:
                    del uids[position], self.flags[position], self.modseqs[position]
        for uid in gone:
            self.keywords.pop(uid, None)

    def apply(self, change: Change) -> bool:
        """Apply the change that follows this entry's modseq; False (nothing done) if it cannot be."""
        if isinstance(change, MessagesExpunged):
            self.remove(change.uids)
        elif isinstance(change, (MessagesAdded, FlagsChanged)):
            if len(change.flags) != len(change.uids):
                return False  # published without the flags: the next load reads them
            keywords = dict(change.keywords)
            for uid, flags in zip(change.uids, change.flags):
                self.put(uid, flags, change.modseq, keywords.get(uid, frozenset()))
        else:
            return False
        self.modseq = change.modseq
        self.unsaved += len(change.uids)
        return True

    # ---------------------------------------------------------------- the snapshot on disk

    def packed(self) -> tuple[bytes, bytes, bytes, str]:
        """uids, flags, modseqs as little-endian bytes, keywords as JSON (see migration 008)."""
        uids, modseqs = self.uids, self.modseqs
        if sys.byteorder == "big":
            uids, modseqs = array(UID_TYPE, uids), array(MODSEQ_TYPE, modseqs)
            uids.byteswap()
            modseqs.byteswap()
        keywords = json.dumps({str(uid): " ".join(sorted(words)) for uid, words in self.keywords.items()})
        return uids.tobytes(), self.flags.tobytes(), modseqs.tobytes(), keywords

    @classmethod
    def unpacked(
        cls, account_id: int, uidvalidity: int, uidnext: int, modseq: int,
        uids: bytes, flags: bytes, modseqs: bytes, keywords: str,
    ) -> IndexEntry | None:
        """The entry a snapshot holds; None if it is not one (damaged, or written by something else)."""
        if len(uids) % 4 or len(modseqs) % 8 or len(uids) // 4 != len(flags) or len(modseqs) // 8 != len(flags):
            return None
        entry = cls(account_id, uidvalidity, uidnext, modseq, array(UID_TYPE), array("B", flags), array(MODSEQ_TYPE))
        entry.uids.frombytes(uids)
        entry.modseqs.frombytes(modseqs)
        if sys.byteorder == "big":
            entry.uids.byteswap()
            entry.modseqs.byteswap()
        try:
            entry.keywords = {int(uid): frozenset(words.split()) for uid, words in json.loads(keywords).items()}
        except (ValueError, AttributeError):
            return None
        return entry


class IndexCache:
    """The entries of one process, least recently used first out, up to `max_messages` messages in all."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, IndexEntry] = OrderedDict()
        self._messages = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, folder_id: int) -> bool:
        with self._lock:
            return folder_id in self._entries

    def accounts(self) -> set[int]:
        with self._lock:
            return {entry.account_id for entry in self._entries.values()}

    def copy_of(self, folder_id: int, uidvalidity: int) -> IndexEntry | None:
        """A copy of the folder's entry, if there is one for this uidvalidity."""
        with self._lock:
            entry = self._entries.get(folder_id)
            if entry is None:
                return None
            if entry.uidvalidity != uidvalidity:
                self._drop(folder_id)
                return None
            self._entries.move_to_end(folder_id)
            return entry.copy()

    def install(self, folder_id: int, entry: IndexEntry) -> None:
        """Keep `entry` (no copy: the caller hands it over) unless the cache has a newer one."""
        if len(entry) > self.max_messages:
            return
        with self._lock:
            current = self._entries.get(folder_id)
            if current is not None:
                if current.uidvalidity == entry.uidvalidity and current.modseq >= entry.modseq:
                    return
                self._drop(folder_id)
            self._entries[folder_id] = entry
            self._messages += len(entry)
            while self._messages > self.max_messages:
                oldest = next(iter(self._entries))
                self._drop(oldest)

    def apply(self, change: Change) -> None:
        """A committed change (an event); see the module docstring for what is applied."""
        folder_id = getattr(change, "folder_id", None)
        with self._lock:
            entry = self._entries.get(folder_id)  # type: ignore[arg-type]
            if entry is None:
                return
            if isinstance(change, FolderDeleted):
                self._drop(folder_id)  # type: ignore[arg-type]
                return
            modseq = getattr(change, "modseq", None)
            if modseq is None or modseq != entry.modseq + 1:
                return  # nothing to do (renamed, created), old news, or a gap the next load fills
            before = len(entry)
            if entry.apply(change):
                self._messages += len(entry) - before

    def forget(self, folder_id: int) -> None:
        with self._lock:
            self._drop(folder_id)

    def _drop(self, folder_id: int) -> None:
        entry = self._entries.pop(folder_id, None)
        if entry is not None:
            self._messages -= len(entry)
