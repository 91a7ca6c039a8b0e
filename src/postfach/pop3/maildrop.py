"""A POP3 session's maildrop: the INBOX snapshot taken at login, and the lock that makes it exclusive."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Iterator

from postfach.connection_limits import LocalSlots, Slots
from postfach.model import BlobRef

SHA256_HEX_LENGTH = 64


class Maildrop:
    """INBOX as it was at login (RFC 1939 §4: numbers stay fixed for the session).

    Message n is `uids[n - 1]`. Deletion marks are kept here until QUIT. The message
    files' names come along, so RETR reads a message without asking the database first;
    what other sessions expunge meanwhile is told by `note_expunged` (from the change events).
    """

    def __init__(self, folder_id: int, uidvalidity: int, uids: list[int], sizes: list[int], shas: list[str]) -> None:
        self.folder_id = folder_id
        self.uidvalidity = uidvalidity
        self._uids = uids
        self._sizes = sizes
        # One string, not 10,000: 64 bytes a message instead of 113.
        self._shas = "".join(shas)
        self._deleted: set[int] = set()
        self._expunged: set[int] = set()
        self._total = sum(sizes)

    def __len__(self) -> int:
        return len(self._uids)

    def exists(self, number: int) -> bool:
        """A message number that names a message not marked deleted."""
        return 1 <= number <= len(self._uids) and number not in self._deleted

    def is_deleted(self, number: int) -> bool:
        return number in self._deleted

    def uid(self, number: int) -> int:
        return self._uids[number - 1]

    def size(self, number: int) -> int:
        return self._sizes[number - 1]

    def blob(self, number: int) -> BlobRef:
        start = (number - 1) * SHA256_HEX_LENGTH
        return BlobRef(self._shas[start : start + SHA256_HEX_LENGTH], self._sizes[number - 1])

    def note_expunged(self, uids: Iterable[int]) -> None:
        """Another session removed these messages from the folder."""
        for uid in uids:
            index = bisect.bisect_left(self._uids, uid)
            if index < len(self._uids) and self._uids[index] == uid:
                self._expunged.add(index + 1)

    def is_expunged(self, number: int) -> bool:
        return number in self._expunged

    def unique_id(self, number: int) -> str:
        # RFC 1939 §7 UIDL: 1 to 70 characters from 0x21 to 0x7E, never reused. Uids in a
        # folder never are, and INBOX keeps its uidvalidity (it cannot be deleted or renamed).
        return f"{self.uidvalidity}.{self._uids[number - 1]}"

    def stat(self) -> tuple[int, int]:
        """(messages, octets), not counting those marked deleted (RFC 1939 §5 STAT)."""
        return len(self._uids) - len(self._deleted), self._total

    def delete(self, number: int) -> None:
        if number not in self._deleted:
            self._deleted.add(number)
            self._total -= self._sizes[number - 1]

    def reset(self) -> None:
        self._deleted.clear()
        self._total = sum(self._sizes)

    def deleted_uids(self) -> list[int]:
        return sorted(self._uids[number - 1] for number in self._deleted)

    def numbers(self) -> Iterator[int]:
        """Every message number not marked deleted, in order."""
        deleted = self._deleted
        return (number for number in range(1, len(self._uids) + 1) if number not in deleted)

    def list_lines(self) -> bytes:
        sizes = self._sizes
        return b"".join(b"%d %d\r\n" % (number, sizes[number - 1]) for number in self.numbers())

    def uidl_lines(self) -> bytes:
        uids, prefix = self._uids, b"%d." % self.uidvalidity
        return b"".join(b"%d %s%d\r\n" % (number, prefix, uids[number - 1]) for number in self.numbers())


class MaildropLocks:
    """RFC 1939 §8: one session per maildrop at a time, when configured (`pop3.exclusive_lock`).

    Off by default, as in Dovecot: a maildrop here is a snapshot and QUIT deletes
    by UID, so two sessions cannot corrupt it, and a phone, a PC and a Fritz!Fon
    polling one account at once should not get "in use" errors. A message one
    session deleted is then answered "-ERR ... removed" in the other.

    The lock is a slot of one (connection_limits.Slots), so it holds across the
    worker processes of one server as the connection limits do.
    """

    # A client that drops its connection and logs in again at once (fetchmail after a
    # timeout, a phone switching networks) finds the old session still holding the lock
    # for the moment it takes the server to notice the close: wait that long first.
    WAIT_SECONDS = 3.0

    POLL_SECONDS = 0.05
    KIND = "pop3-maildrop"

    def __init__(self, exclusive: bool = True, slots: Slots | None = None) -> None:
        self.exclusive = exclusive
        self._slots = slots or LocalSlots()

    async def acquire(self, account_id: int, wait: float = WAIT_SECONDS) -> bool:
        if not self.exclusive:
            return True
        deadline = asyncio.get_running_loop().time() + wait
        while not await self._slots.acquire(self.KIND, str(account_id), 1):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(self.POLL_SECONDS)
        return True

    def release(self, account_id: int) -> None:
        if self.exclusive:
            self._slots.release(self.KIND, str(account_id))
