"""Typed IMAP commands: what the parser returns, one frozen dataclass per command.

Names follow the wire (``Fetch`` is FETCH); the UID forms are the same class
with ``uid=True``. Mailbox names are Unicode: decoded from modified UTF-7, or
from UTF-8 once the client enabled UTF8=ACCEPT or IMAP4rev2; INBOX in any
case is "INBOX". Atoms that name options (status items, capabilities, return
options) are upper case. Flags are as written ("\\Seen", "$Junk"); turn them
into ``model.Flags`` with ``Flags.from_names``. Search keys and fetch items
live in ``search_keys`` and ``fetch_items``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from postfach.imap.fetch_items import FetchAttr
from postfach.imap.search_keys import SearchKey
from postfach.imap.sequence import SequenceSet

# Default for the sequence-set fields; the parser always fills them in.
NO_SET = SequenceSet()


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    NAME: ClassVar[str] = ""


# --- any state -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: ``params`` is None for ``ID NIL``; values may be None (NIL)."""

    params: tuple[tuple[str, str | None], ...] | None = None
    NAME: ClassVar[str] = "ID"


# --- not authenticated ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """``initial_response`` (RFC 4959 SASL-IR) is decoded BASE64; ``=`` gives b""."""

    mechanism: str = ""
    initial_response: bytes | None = None
    NAME: ClassVar[str] = "AUTHENTICATE"


@dataclass(frozen=True, slots=True)
class Login(Command):
    username: str = ""
    password: str = ""
    NAME: ClassVar[str] = "LOGIN"


# --- authenticated -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...] = ()
    NAME: ClassVar[str] = "ENABLE"


@dataclass(frozen=True, slots=True)
class Qresync:
    """RFC 7162 §3.2.5 QRESYNC select parameter."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    # (known sequence numbers, their UIDs), the client's sample of the mapping
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    mailbox: str = ""
    condstore: bool = False
    qresync: Qresync | None = None
    NAME: ClassVar[str] = "SELECT"


@dataclass(frozen=True, slots=True)
class Examine(Command):
    mailbox: str = ""
    condstore: bool = False
    qresync: Qresync | None = None
    NAME: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True, slots=True)
class Create(Command):
    """``special_use``: RFC 6154 §3 CREATE-SPECIAL-USE ``USE (\\Sent ...)``."""

    mailbox: str = ""
    special_use: tuple[str, ...] = ()
    NAME: ClassVar[str] = "CREATE"


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str = ""
    NAME: ClassVar[str] = "DELETE"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str = ""
    new_name: str = ""
    NAME: ClassVar[str] = "RENAME"


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str = ""
    NAME: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str = ""
    NAME: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with RFC 5258 LIST-EXTENDED and RFC 5819 LIST-STATUS.

    ``extended`` is True when selection options, several patterns or RETURN
    were given: RFC 5258 §3 responses then differ (e.g. CHILDINFO).
    ``status_items`` is the item list of RETURN (STATUS (...)), else None.
    """

    reference: str = ""
    patterns: tuple[str, ...] = ()
    select_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None
    extended: bool = False
    NAME: ClassVar[str] = "LIST"


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str = ""
    pattern: str = ""
    NAME: ClassVar[str] = "LSUB"


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: str = ""
    items: tuple[str, ...] = ()
    NAME: ClassVar[str] = "STATUS"


@dataclass(frozen=True, slots=True)
class Append(Command):
    """APPEND; the message itself came before as ``LiteralChunk`` events.

    ``binary``: sent as literal8 (RFC 3516 §4.4); ``utf8``: in the RFC 6855
    §4 ``UTF8 (~{n})`` form.
    """

    mailbox: str = ""
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    size: int = 0
    binary: bool = False
    utf8: bool = False
    NAME: ClassVar[str] = "APPEND"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Compress(Command):
    mechanism: str = ""
    NAME: ClassVar[str] = "COMPRESS"


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str = ""
    NAME: ClassVar[str] = "GETQUOTA"


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: str = ""
    NAME: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    root: str = ""
    limits: tuple[tuple[str, int], ...] = ()
    NAME: ClassVar[str] = "SETQUOTA"


# --- selected ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Check(Command):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE (RFC 4315 §2.1) with the UIDs in ``uids``."""

    uid: bool = False
    uids: SequenceSet | None = None
    NAME: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH; ``return_options`` None means no RETURN (a plain SEARCH answer),
    () means ``RETURN ()`` (RFC 4731 §3: same as ALL, answered with ESEARCH)."""

    key: SearchKey | None = None
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    NAME: ClassVar[str] = "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    sequence_set: SequenceSet = NO_SET
    items: tuple[FetchAttr, ...] = ()
    uid: bool = False
    changedsince: int | None = None  # RFC 7162 §3.1.4.1
    vanished: bool = False  # RFC 7162 §3.2.6, UID FETCH only
    NAME: ClassVar[str] = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """``mode`` is "" (replace), "+" (add) or "-" (remove)."""

    sequence_set: SequenceSet = NO_SET
    mode: str = ""
    silent: bool = False
    flags: tuple[str, ...] = ()
    uid: bool = False
    unchangedsince: int | None = None  # RFC 7162 §3.1.3
    NAME: ClassVar[str] = "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence_set: SequenceSet = NO_SET
    mailbox: str = ""
    uid: bool = False
    NAME: ClassVar[str] = "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    sequence_set: SequenceSet = NO_SET
    mailbox: str = ""
    uid: bool = False
    NAME: ClassVar[str] = "MOVE"


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """RFC 5256 SORT; ``return_options`` is RFC 5267 ESORT (None when absent)."""

    criteria: tuple[SortCriterion, ...] = ()
    charset: str = "UTF-8"
    key: SearchKey | None = None
    uid: bool = False
    return_options: tuple[str, ...] | None = None
    NAME: ClassVar[str] = "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    algorithm: str = "REFERENCES"  # or ORDEREDSUBJECT
    charset: str = "UTF-8"
    key: SearchKey | None = None
    uid: bool = False
    NAME: ClassVar[str] = "THREAD"
