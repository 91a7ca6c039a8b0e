"""The things Postfach keeps, as frozen values.

The store returns these and never rows; every door (IMAP, POP3, SMTP, web)
speaks in them. Addresses and domain names are held in their ASCII form
(IDN domains as punycode); `postfach.address` turns them back into Unicode
for people.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

MIN_QUOTA_BYTES = 5 * 1024 * 1024
MAX_FORWARD_TARGETS = 20


class SystemFlag(enum.IntFlag):
    """IMAP system flags (RFC 9051 §2.3.2) kept per message; \\Recent is per session."""

    NONE = 0
    SEEN = 1
    ANSWERED = 2
    FLAGGED = 4
    DELETED = 8
    DRAFT = 16


SYSTEM_FLAG_NAMES: dict[SystemFlag, str] = {
    SystemFlag.SEEN: "\\Seen",
    SystemFlag.ANSWERED: "\\Answered",
    SystemFlag.FLAGGED: "\\Flagged",
    SystemFlag.DELETED: "\\Deleted",
    SystemFlag.DRAFT: "\\Draft",
}


@dataclass(frozen=True, slots=True)
class Flags:
    """A message's flags: the system flags as bits, keywords as a set of atoms."""

    system: SystemFlag = SystemFlag.NONE
    keywords: frozenset[str] = frozenset()

    def names(self) -> list[str]:
        names = [name for flag, name in SYSTEM_FLAG_NAMES.items() if flag in self.system]
        return names + sorted(self.keywords)

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Flags:
        by_lower = {name.lower(): flag for flag, name in SYSTEM_FLAG_NAMES.items()}
        system = SystemFlag.NONE
        keywords: set[str] = set()
        for name in names:
            flag = by_lower.get(name.lower())
            if flag is not None:
                system |= flag
            else:
                keywords.add(name)
        return cls(system, frozenset(keywords))


class SpecialUse(enum.StrEnum):
    """RFC 6154 special-use attributes a folder can carry."""

    SENT = "\\Sent"
    DRAFTS = "\\Drafts"
    TRASH = "\\Trash"
    JUNK = "\\Junk"
    ARCHIVE = "\\Archive"


INBOX = "INBOX"

# Every new mailbox gets these folders, all subscribed (issue 2, point 4).
DEFAULT_FOLDERS: tuple[tuple[str, SpecialUse | None], ...] = (
    (INBOX, None),
    ("Sent", SpecialUse.SENT),
    ("Drafts", SpecialUse.DRAFTS),
    ("Trash", SpecialUse.TRASH),
    ("Junk", SpecialUse.JUNK),
    ("Archive", SpecialUse.ARCHIVE),
)


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str  # ASCII (punycode), lower case
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str  # local@domain, lower case, domain in punycode
    domain_id: int
    password_hash: str
    quota_bytes: int
    used_bytes: int
    enabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Alias:
    """Mail for `source` goes to `target`; a source of "@domain" catches all of that domain."""

    source: str
    target: str

    @property
    def is_catch_all(self) -> bool:
        return self.source.startswith("@")


@dataclass(frozen=True, slots=True)
class Forwarding:
    targets: tuple[str, ...]
    keep_copy: bool


@dataclass(frozen=True, slots=True)
class Vacation:
    """The autoresponder: it answers from `start` to `end`, both days included."""

    start: date
    end: date
    subject: str
    body: str

    def active_on(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class Mailbox:
    """An account as delivery sees it: where new mail goes and what filing it may set off, read
    with the account so that filing a message needs no further read."""

    account: Account
    inbox_id: int | None  # None only when the INBOX row is missing (the store refuses the copy)
    quota_warned: int  # the quota warning level last sent, percent (delivery/quota_warnings.py)
    vacation: Vacation | None  # the autoresponder's settings, when it has any


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What delivery needs to know of one address, read in one go."""

    domain_hosted: bool
    mailbox: Mailbox | None
    forwarding: Forwarding | None


@dataclass(frozen=True, slots=True)
class Folder:
    id: int
    account_id: int
    name: str  # full hierarchical name, "/" as the delimiter
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: SpecialUse | None
    subscribed: bool


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What STATUS and the panel need, counted in the store."""

    messages: int
    unseen: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A message's bytes, stored once, addressed by their SHA-256."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """A message's entry in a folder."""

    folder_id: int
    uid: int
    blob: BlobRef
    flags: Flags
    internal_date: datetime  # timezone-aware, in the zone it was given in
    modseq: int

    @property
    def size(self) -> int:
        return self.blob.size


@dataclass(slots=True)
class FolderIndex:
    """A folder's uid/flags/modseq, loaded once on SELECT and kept current from events.

    Parallel lists in ascending uid order; keywords are sparse (most messages
    have none), so they sit in a dict keyed by uid.
    """

    folder_id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    uids: list[int] = field(default_factory=list)
    system_flags: list[int] = field(default_factory=list)
    modseqs: list[int] = field(default_factory=list)
    keywords: dict[int, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    address: str
    state: str  # "pending", "delivered" or "failed"
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message in the outbound queue (postfach.queue), with what became of each recipient."""

    id: int
    sender: str  # "" for a bounce
    blob: BlobRef
    created_at: datetime
    next_attempt: datetime
    attempts: int
    last_error: str | None
    recipients: tuple[QueuedRecipient, ...]
    # The lease of the process trying it now; after `claimed_until` anyone may take it over.
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.state == "pending")

    def held_at(self, moment: datetime) -> bool:
        """Whether a process holds the entry's lease at `moment` (is trying it then)."""
        return self.claimed_until is not None and self.claimed_until > moment


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    private_key: str  # PEM


# --- login security (postfach.auth; issue 6) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class AppPassword:
    """A named password for one device or protocol; revocable on its own."""

    id: int
    account_id: int
    name: str
    lookup: str  # the generated password's first group: which hash to check
    password_hash: str
    created_at: datetime
    last_used_at: datetime | None = None
    last_used_from: str | None = None
    last_used_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialKey:
    """What one quarantine covers: a credential of an account, from one source or from all."""

    address: str
    credential: str = ""  # "": the account's password; else an app password's name
    source: str = ""  # "": every source (scope "account"); else one (scope "account+address")


@dataclass(frozen=True, slots=True)
class QuarantineRule:
    failures: int  # this many counted wrong passwords start a quarantine
    seconds: float  # its length; a new wrong password during it starts it again
    window: float  # failures older than this do not count


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What one wrong password did to its credential's quarantine."""

    counted: bool  # False: the same wrong password from the same source was counted already
    until: float | None  # Unix time the quarantine ends; None: not in quarantine
    started: bool = False
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Quarantine:
    key: CredentialKey
    since: datetime
    until: datetime
    failures: int


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One source address's recent wrong passwords (within the throttling window)."""

    failures: int  # distinct wrong passwords
    accounts: int  # distinct user names they were for
    last_failure: float | None  # Unix time
    banned_until: float | None  # Unix time; None: not banned


@dataclass(frozen=True, slots=True)
class SourceBan:
    source: str
    since: datetime
    until: datetime
    accounts: int


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One line of the login audit; never holds a password."""

    at: datetime
    address: str
    credential: str  # "" the account's password, else the app password's name
    source: str
    protocol: str  # "imap", "pop3", "smtp", "web"
    result: str  # "ok" or "failed"
    reason: str
