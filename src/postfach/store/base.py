"""The storage seam: what every door may ask of the store, and how it can fail.

Invariants every implementation keeps (tests/store runs one contract suite
against each):

- UIDs in a folder are strictly increasing and never reused; `uidnext` only
  grows. A folder's `highestmodseq` grows with every change to it, and the
  message it touched carries the new value.
- An account's `used_bytes` is the sum of the sizes of its messages, changed
  in the same transaction as the message rows.
- A message's bytes are durable (fsynced) before the row that names them is
  committed, are stored once however many folders hold them, and go away when
  the last reference does.
- A change is published on `events` only after it is committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import BinaryIO, Protocol

from postfach.mime import ParsedMessage
from postfach.model import (
    Account,
    Alias,
    AppPassword,
    BlobRef,
    CredentialKey,
    FailureOutcome,
    LoginAttempt,
    Quarantine,
    QuarantineRule,
    SourceBan,
    SourceRecord,
    DkimKey,
    Domain,
    Flags,
    Folder,
    FolderIndex,
    FolderStatus,
    Forwarding,
    MessageMeta,
    QueuedMessage,
    RecipientFacts,
    SpecialUse,
    Vacation,
)
from postfach.store.events import Subscriber, Subscription


class StoreError(Exception):
    """A request the store refused; the message is one sentence meant for the user."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The request contradicts what is stored (a folder that still has children, ...)."""


class LeaseLost(Conflict):
    """A queue entry's lease ran out and another process holds it now: its attempt counts, not ours."""


class QuotaExceeded(StoreError):
    def __init__(self, address: str, used: int, quota: int, size: int) -> None:
        super().__init__(
            f"the mailbox {address} is full: {used} of {quota} bytes used, "
            f"and this message needs {size} more"
        )
        self.address = address
        self.used = used
        self.quota = quota
        self.size = size


class StagedBlob:
    """Message bytes on disk, durable and parsed, that no folder holds yet (see Store.append)."""

    __slots__ = ("ref", "parsed", "staged_at")

    def __init__(self, ref: BlobRef, parsed: str) -> None:
        self.ref = ref
        self.parsed = parsed
        self.staged_at = time.monotonic()


class FlagMode(Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


class EventBus(Protocol):
    def subscribe(self, account_id: int, callback: Subscriber) -> Subscription: ...

    def publish(self, change: object) -> None: ...


class Store(Protocol):
    events: EventBus

    async def close(self) -> None: ...
    async def check(self) -> None:
        """Raise StoreError unless the store can read and write (the health endpoint asks)."""

    # Domains: names are ASCII (punycode), lower case.
    async def add_domain(self, name: str) -> Domain: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def list_domains(self) -> list[Domain]: ...
    async def remove_domain(self, name: str) -> None: ...

    # Accounts: a new one gets the default folders (model.DEFAULT_FOLDERS).
    async def add_account(self, address: str, password_hash: str, quota_bytes: int) -> Account: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def recipient_facts(self, address: str) -> RecipientFacts:
        """Whether the address's domain is hosted, its account and its forwarding, in one read."""
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def remove_account(self, address: str) -> None:
        """The account goes with everything of it: folders, messages, app passwords, and its
        login state (failures, quarantines), in one transaction, so that a new account with
        the same address starts clean."""
    async def set_password_hash(self, address: str, password_hash: str) -> None: ...
    async def set_quota(self, address: str, quota_bytes: int) -> None: ...
    async def set_enabled(self, address: str, enabled: bool) -> None: ...

    # Aliases: a source "@domain" is that domain's catch-all.
    async def add_alias(self, source: str, target: str) -> Alias: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def remove_alias(self, source: str, target: str) -> None: ...

    # Forwarding and the autoresponder, per account.
    async def set_forwarding(self, address: str, forwarding: Forwarding | None) -> None: ...
    async def get_forwarding(self, address: str) -> Forwarding | None: ...
    async def list_forwardings(self) -> dict[str, Forwarding]: ...
    async def set_vacation(self, address: str, vacation: Vacation | None) -> None: ...
    async def get_vacation(self, address: str) -> Vacation | None: ...
    async def claim_vacation_reply(self, account_id: int, sender: str, now: int, period: int) -> bool:
        """Record that the account's autoresponder answers `sender` (compared without case) at
        `now` (unix seconds): True unless it answered that sender in the `period` seconds before
        (then nothing changes). Setting or clearing the vacation forgets every sender."""

    async def forget_vacation_reply(self, account_id: int, sender: str, replied_at: int) -> None:
        """Undo the claim `claim_vacation_reply` made at `replied_at` (the reply was not sent), so
        the sender's next message is answered; a later claim stays."""

    # Folders: names are full paths with "/" between levels.
    async def list_folders(self, account_id: int) -> list[Folder]: ...
    async def get_folder(self, account_id: int, name: str) -> Folder | None: ...
    async def get_folder_by_id(self, folder_id: int) -> Folder | None: ...
    async def create_folder(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Folder: ...
    async def rename_folder(self, folder_id: int, new_name: str) -> Folder: ...
    async def delete_folder(self, folder_id: int) -> None: ...
    async def set_subscribed(self, folder_id: int, subscribed: bool) -> None: ...
    async def folder_status(self, folder_id: int) -> FolderStatus: ...
    async def rename_inbox(self, account_id: int, new_name: str) -> Folder:
        """RFC 9051 §6.3.5: a new folder takes all of INBOX's messages (new uids); INBOX stays, empty."""

    # \Recent (IMAP4rev1): a message is recent for exactly one session.
    async def claim_recent(self, folder_id: int) -> list[int]:
        """The uids no session has claimed yet, now claimed by the caller (atomically)."""

    async def append_claiming_recent(
        self, folder_id: int, message: bytes | StagedBlob, flags: Flags = Flags(), internal_date: datetime | None = None
    ) -> tuple[MessageMeta, list[int]]:
        """`append`, then `claim_recent` of the same folder in the same transaction: an APPEND to
        the folder the session has selected, which would claim the new message right after.
        Nothing is claimed when the append is refused."""

    async def count_recent(self, folder_id: int) -> int:
        """How many messages are recent and unclaimed (STATUS RECENT, EXAMINE); claims nothing."""

    async def expunged_since(self, folder_id: int, modseq: int) -> list[int]:
        """The uids expunged with a modseq above `modseq`, ascending (RFC 7162 VANISHED)."""

    # Messages.
    async def store_blob(self, data: bytes | BinaryIO) -> StagedBlob:
        """Write the bytes durably (fsync, rename) and parse them once; idempotent."""

    async def file_message(self, data: bytes | BinaryIO,
                           folder_ids: Sequence[int]) -> tuple[StagedBlob, list[MessageMeta | StoreError]]:
        """Store the bytes once (durable, parsed: the StagedBlob, for the outbound queue too)
        and append them to every folder (quota enforced), each append on its own: a failed one
        (QuotaExceeded, NotFound) is returned in its place."""

    async def append(
        self,
        folder_id: int,
        message: bytes | StagedBlob | BlobRef,
        flags: Flags = Flags(),
        internal_date: datetime | None = None,
        *,
        enforce_quota: bool = True,
    ) -> MessageMeta:
        """Add a message to a folder: its bytes (stored and parsed on the way), a StagedBlob
        (one message for many folders), or the BlobRef of a message already stored (COPY).
        QuotaExceeded unless `enforce_quota` is False (moving to Trash must never fail)."""

    async def load_index(self, folder_id: int) -> FolderIndex: ...
    async def get_messages(self, folder_id: int, uids: Iterable[int]) -> list[MessageMeta]: ...
    async def set_flags(
        self, folder_id: int, uids: Iterable[int], flags: Flags, mode: FlagMode
    ) -> list[MessageMeta]:
        """Change flags; returns the messages whose flags changed, with their new modseq."""

    async def expunge(self, folder_id: int, uids: Iterable[int]) -> list[int]:
        """Remove messages; returns the uids that were there and are now gone."""

    async def expunge_deleted(self, folder_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (of `uids`, or all); returns the uids gone.
        The flag is checked in the same transaction, so one undeleted meanwhile stays."""

    async def set_flags_if_unchanged(
        self, folder_id: int, uids: Iterable[int], flags: Flags, mode: FlagMode, unchanged_since: int
    ) -> tuple[list[MessageMeta], list[int]]:
        """RFC 7162 §3.1.3 conditional STORE: change only messages whose modseq is at most
        `unchanged_since`; returns (messages changed, uids that failed the test)."""

    async def copy_messages(
        self, source_folder_id: int, uids: Iterable[int], target_folder_id: int, *, enforce_quota: bool = True
    ) -> list[tuple[int, int]]:
        """Copy messages with their flags and internal dates, all or none (RFC 9051 §6.4.7);
        returns (source uid, new uid) pairs in source uid order."""

    async def move_messages(
        self, source_folder_id: int, uids: Iterable[int], target_folder_id: int
    ) -> list[tuple[int, int]]:
        """Copy and expunge in one transaction (RFC 6851 §3.3: atomic); publishes both changes."""

    async def search_pending_count(self) -> int:
        """Messages not yet in the full-text index."""

    async def search_text(self, folder_id: int, needle: str, *, body_only: bool) -> list[int]:
        """UIDs whose indexed text contains `needle`, case-insensitively: the body text
        (`body_only`), else header or body text (IMAP SEARCH BODY / TEXT)."""

    async def message_sizes(self, folder_id: int) -> tuple[list[int], list[int]]:
        """Every message's uid and size, in uid order."""

    async def message_files(self, folder_id: int) -> tuple[list[int], list[int], list[str]]:
        """Every message's uid, size and sha256, in uid order."""

    async def read_blob(self, sha256: str) -> bytes: ...
    async def read_blob_range(self, sha256: str, start: int, end: int) -> bytes:
        """Bytes start..end of a message file; fewer at its end."""

    async def read_blob_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Several (sha256, start, end) ranges at once, in order."""

    async def get_parsed(self, sha256: str) -> str:
        """The message's parse cached at delivery (JSON of postfach.mime.ParsedMessage)."""

    async def get_parsed_many(self, sha256s: Iterable[str]) -> dict[str, str]:
        """Cached parses of many messages; a message no longer stored is left out."""

    async def parsed_messages(self, sha256s: Iterable[str]) -> dict[str, ParsedMessage]:
        """Like get_parsed_many, parsed, and kept in memory for the next ask."""

    async def collect_garbage(self) -> int:
        """Remove message files no row refers to; returns how many went."""

    # The outbound queue (postfach.queue). An entry holds a reference to its message file
    # until no recipient is pending; states are "pending", "delivered", "failed".
    async def enqueue(
        self, sender: str, recipients: Sequence[str], message: StagedBlob, next_attempt: float | None = None
    ) -> QueuedMessage: ...
    async def get_queued(self, queue_id: int) -> QueuedMessage | None: ...
    async def list_queue(self, due_before: float | None = None, limit: int = 1000) -> list[QueuedMessage]: ...
    async def next_queue_attempt(self) -> float | None: ...
    async def record_attempt(
        self, queue_id: int, outcomes: Mapping[str, tuple[str, str | None]], next_attempt: float,
        error: str | None = None, *, owner: str | None = None,
    ) -> QueuedMessage | None:
        """New states per recipient; the entry (and its file reference) goes when none is pending,
        else its lease is released. With `owner`: LeaseLost, nothing recorded, unless it holds it."""

    # Leases: one process (or node) at a time tries an entry. A claim holds it until `now + lease`;
    # the holder renews while its attempt runs, and record_attempt releases it. A holder that
    # died leaves a lease that runs out; then any process may claim the entry. Atomic across
    # processes: no two claims ever return the same entry while its lease holds.
    async def claim_queue(self, owner: str, now: float, lease: float, limit: int = 100) -> list[QueuedMessage]:
        """Up to `limit` due entries nobody holds, soonest first, now held by `owner`."""

    async def claim_queued(self, queue_id: int, owner: str, now: float, lease: float) -> QueuedMessage:
        """One entry, due or not (the operator's bounce); Conflict while another holds it."""

    async def renew_queue_leases(self, owner: str, queue_ids: Sequence[int], until: float) -> list[int]:
        """Extend `owner`'s leases; returns the entries it still holds."""

    async def release_queue_claims(self, owner: str, queue_ids: Sequence[int] | None = None) -> int: ...

    # What the operator does; an entry held by a process is refused (Conflict).
    async def retry_queued(self, now: float, queue_id: int | None = None) -> int:
        """Make the entry (None: every entry nobody holds) due at `now`; returns how many."""

    async def remove_queued(self, queue_id: int, now: float) -> QueuedMessage:
        """Delete the entry without a bounce; returns it as it was."""

    # DKIM keys per domain, and the quota warning level (percent) per account.
    async def set_dkim_key(self, domain: str, selector: str, private_key: str) -> DkimKey: ...
    async def get_dkim_key(self, domain: str) -> DkimKey | None: ...
    async def get_quota_warning(self, account_id: int) -> int: ...
    async def set_quota_warning(self, account_id: int, level: int, *, only_if: int | None = None) -> bool: ...

    # Login security (postfach.auth), shared by every door, process and restart. Times are
    # Unix seconds (float). Sources are IPv4 addresses or IPv6 /64 networks.
    async def add_app_password(self, address: str, name: str, lookup: str, password_hash: str) -> AppPassword: ...
    async def list_app_passwords(self, address: str) -> list[AppPassword]: ...
    async def find_app_password(self, account_id: int, lookup: str) -> AppPassword | None: ...
    async def remove_app_password(self, address: str, name: str) -> None: ...
    async def note_app_password_use(
        self, app_password_id: int, at: float, source: str, protocol: str, password_hash: str | None = None
    ) -> None:
        """Its last use; a new hash when the login rehashed it."""

    async def record_login_failure(
        self, key: CredentialKey, source: str, password_mac: str, at: float, rule: QuarantineRule | None
    ) -> FailureOutcome:
        """Count a wrong password and apply `rule` atomically: `rule.failures` counted failures
        within `rule.window` since the credential's last good login or last quarantine start a
        quarantine of `rule.seconds`; a new one during it starts it again. The same
        (source, password_mac) counts once until the epoch ends. `rule` None: only remember
        the failure (for the source's throttling), e.g. for an unknown user name."""

    async def record_login_success(self, key: CredentialKey, at: float) -> None: ...
    async def quarantined_until(self, key: CredentialKey, at: float) -> float | None: ...
    async def list_quarantines(self, at: float, address: str | None = None) -> list[Quarantine]: ...
    async def release_quarantines(self, address: str, at: float) -> int: ...
    async def source_record(self, source: str, at: float, window: float) -> SourceRecord: ...
    async def ban_source(self, source: str, at: float, until: float, accounts: int) -> None: ...
    async def list_bans(self, at: float) -> list[SourceBan]: ...
    async def release_ban(self, source: str, at: float) -> bool: ...
    async def prune_login_failures(self, before: float) -> int: ...
    async def add_login_attempt(self, attempt: LoginAttempt) -> None: ...
    async def list_login_attempts(self, address: str | None = None, limit: int = 50) -> list[LoginAttempt]:
        """Newest first."""

    async def prune_login_attempts(self, before: float) -> int:
        """Delete the audit's attempts older than `before` (in slices, so that other writes are
        not held up); returns how many went."""
