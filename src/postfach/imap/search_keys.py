"""SEARCH criteria as a tree (RFC 9051 §6.4.4, RFC 3501 §6.4.4 and extensions).

The parser maps every key onto a few node types: the many flag keys
(SEEN, UNANSWERED, KEYWORD x, ...) become ``SearchFlag``; FROM/TO/CC/BCC/
SUBJECT become ``SearchHeader``; NEW becomes RECENT and UNSEEN; a list of
keys is ``SearchAnd``. \\Recent is per session: the evaluator knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from postfach.imap.sequence import SequenceSet


@dataclass(frozen=True, slots=True)
class SearchAll:
    pass


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """A system flag ("\\Seen", "\\Recent", ...) or keyword is set (``present``) or not."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """Header ``name`` (lower case) contains ``value``; "" matches any message having it."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """``scope`` "body" (BODY) or "text" (TEXT: header and body)."""

    scope: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchDate:
    """``scope`` "internal" (BEFORE/ON/SINCE) or "sent" (SENTBEFORE/...);
    ``relation`` "before", "on" or "since"; dates ignore time and zone."""

    scope: str
    relation: str
    day: date


@dataclass(frozen=True, slots=True)
class SearchSize:
    """``relation`` "larger" or "smaller" than ``size`` octets (RFC822.SIZE)."""

    relation: str
    size: int


@dataclass(frozen=True, slots=True)
class SearchAge:
    """RFC 5032 WITHIN: ``relation`` "older" or "younger" than ``seconds``."""

    relation: str
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """Message sequence numbers (``uid`` False) or UIDs; may be ``$`` (RFC 5182)."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """RFC 7162 §3.1.5 MODSEQ [entry-name entry-type] mod-sequence-valzer."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchObjectId:
    """RFC 8474 §5 EMAILID / THREADID; ``kind`` "emailid" or "threadid"."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll | SearchFlag | SearchHeader | SearchText | SearchDate | SearchSize | SearchAge
    | SearchSequence | SearchModSeq | SearchObjectId | SearchNot | SearchOr | SearchAnd
)
