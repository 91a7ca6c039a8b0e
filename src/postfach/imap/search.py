"""Evaluating SEARCH keys against the selected folder (RFC 9051 §6.4.4).

What each key reads:

- flags, \\Recent, sequence numbers, UIDs, MODSEQ: the session's in-memory view;
- sizes, internal dates, EMAILID: the store's message rows (one query);
- header keys and SENT*: the header block of each message, read by its
  parse-once offsets (only when such a key is present);
- BODY and TEXT: the store's full-text index (one query per key).

Strings match as case-insensitive substrings (RFC 9051 §6.4.4); header values
are compared after RFC 2047 encoded-words are decoded, so CHARSET UTF-8
finds an encoded subject. Dates ignore time and zone: a message's internal
date counts in its own zone, and so does its Date: header.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import compress

from postfach.content_cache import ContentCache
from postfach.imap import search_keys as k
from postfach.imap import targets
from postfach.imap.selected import SelectedFolder
from postfach.imap.session import ImapSession
from postfach.mime.headers import decode_value
from postfach.mime.model import ParsedMessage
from postfach.mime.text import decode_header_text
from postfach.model import SYSTEM_FLAG_NAMES, MessageMeta

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")
# Plain ints: `int & SystemFlag` builds an enum member per message (most of a SEARCH UNSEEN's time).
_FLAG_BITS = {name.lower(): int(flag) for flag, name in SYSTEM_FLAG_NAMES.items()}
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_ROW_KEYS = (k.SearchSize, k.SearchDate, k.SearchAge, k.SearchObjectId)
# Decoded header fields of the messages searched last, per process: a client that searches
# its INBOX again (every few seconds for a filter or a smart folder) reads no header twice.
HEADER_CACHE_SIZE = 10_000
_HEADER_FIELDS: ContentCache[list[tuple[str, str]]] = ContentCache(HEADER_CACHE_SIZE)


def walk(key: k.SearchKey) -> Iterator[k.SearchKey]:
    yield key
    if isinstance(key, k.SearchNot):
        yield from walk(key.key)
    elif isinstance(key, k.SearchOr):
        yield from walk(key.left)
        yield from walk(key.right)
    elif isinstance(key, k.SearchAnd):
        for inner in key.keys:
            yield from walk(inner)


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """Every field of a header block (repeated ones too): (lower-case name, decoded value)."""
    fields = []
    for line in _FOLD.sub(b"", block).splitlines():
        name, colon, value = line.partition(b":")
        if colon and name and not name[:1].isspace():
            fields.append((name.strip().decode("latin-1").lower(), decode_header_text(decode_value(value.strip()))))
    return fields


def sent_date(value: str | None) -> datetime | None:
    """The Date: header as a datetime in its own zone, or None when it cannot be read."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class MessageFacts:
    """What the keys of one search need to know about the messages, loaded once per command."""

    rows: dict[int, MessageMeta] = field(default_factory=dict)
    headers: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    text_hits: dict[k.SearchText, set[int]] = field(default_factory=dict)
    parsed: dict[int, ParsedMessage] = field(default_factory=dict)


async def load_headers(session: ImapSession, shas: dict[int, str]) -> tuple[
    dict[int, list[tuple[str, str]]], dict[int, ParsedMessage]
]:
    """Each message's header fields and parse, read by the offsets cached at delivery.

    Two trips to the store for the whole folder (parses, then header blocks not in
    _HEADER_FIELDS), not two per message: a SEARCH FROM over a large folder must not queue
    behind other sessions.
    """
    store = session.store
    parses = await store.parsed_messages(set(shas.values()))
    fields: dict[str, list[tuple[str, str]]] = {}
    for sha in parses:
        if (known := _HEADER_FIELDS.get(sha)) is not None:
            fields[sha] = known
    unread = [sha for sha in parses if sha not in fields]
    blocks = await store.read_blob_ranges(
        [(sha, parses[sha].structure.header_start, parses[sha].structure.header_end) for sha in unread]
    ) if unread else []
    for sha, block in zip(unread, blocks):
        fields[sha] = header_fields(block)
        _HEADER_FIELDS.put(sha, fields[sha])
    headers: dict[int, list[tuple[str, str]]] = {}
    parsed: dict[int, ParsedMessage] = {}
    for uid, sha in shas.items():
        if sha in parses:  # gone meanwhile: matches no header key
            headers[uid], parsed[uid] = fields[sha], parses[sha]
    return headers, parsed


async def gather_facts(session: ImapSession, key: k.SearchKey) -> MessageFacts:
    view = targets.selected(session)
    facts = MessageFacts()
    keys = list(walk(key))
    wants_headers = any(isinstance(x, k.SearchHeader) or (isinstance(x, k.SearchDate) and x.scope == "sent")
                        for x in keys)
    wants_rows = any(isinstance(x, _ROW_KEYS) for x in keys)
    if wants_rows:
        found = await session.store.get_messages(view.folder_id, view.uids)
        facts.rows = {row.uid: row for row in found}
    if wants_headers:
        if wants_rows:
            shas = {uid: row.blob.sha256 for uid, row in facts.rows.items()}
        else:  # header keys need only which file each message is: no entries to build
            uids, _, blob_shas = await session.store.message_files(view.folder_id)
            shas = dict(zip(uids, blob_shas))
        facts.headers, facts.parsed = await load_headers(session, shas)
    for x in keys:
        if isinstance(x, k.SearchText) and x not in facts.text_hits and x.value:
            hits = await session.store.search_text(view.folder_id, x.value, body_only=x.scope == "body")
            facts.text_hits[x] = set(hits)
    return facts


async def search(session: ImapSession, key: k.SearchKey) -> list[int]:
    """Sequence numbers of the messages matching ``key``, ascending."""
    view = targets.selected(session)
    facts = await gather_facts(session, key)
    saved = set(targets.saved_uids(session)) if any(
        isinstance(x, k.SearchSequence) and x.sequence_set.saved for x in walk(key)
    ) else set()
    candidates = _narrow(view, facts, key)
    if candidates is not None and candidates.exact:
        return sorted(candidates.seqs)
    matcher = _Matcher(view, facts, saved, time.time())
    seqs = range(1, len(view) + 1) if candidates is None else sorted(candidates.seqs)
    return [seq for seq in seqs if matcher.matches(key, seq, view.uid_at(seq))]


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The only messages that can match a key; `exact`: exactly those that do."""

    seqs: set[int]
    exact: bool


def _narrow(view: SelectedFolder, facts: MessageFacts, key: k.SearchKey) -> _Candidates | None:
    """Narrow a large folder down by whole sets (text hits, flags) before any key is tried per message.

    SEARCH TEXT over 100,000 messages must not call the matcher 100,000 times; None: no narrowing.
    """
    if isinstance(key, k.SearchText) and key.value:
        return _Candidates(_seqs_of(view, facts.text_hits.get(key, set())), True)
    if isinstance(key, k.SearchFlag):
        bit = _FLAG_BITS.get(key.flag.lower())
        if bit is None:
            return None  # \Recent and keywords: the matcher
        present = key.present
        return _Candidates({seq for seq, bits in enumerate(view.system_flags, 1) if bool(bits & bit) == present}, True)
    if isinstance(key, k.SearchAnd):
        parts = [part for part in (_narrow(view, facts, inner) for inner in key.keys) if part is not None]
        if not parts:
            return None
        parts.sort(key=lambda part: len(part.seqs))
        seqs = set(parts[0].seqs).intersection(*(part.seqs for part in parts[1:]))
        return _Candidates(seqs, len(parts) == len(key.keys) and all(part.exact for part in parts))
    if isinstance(key, k.SearchOr):
        left, right = _narrow(view, facts, key.left), _narrow(view, facts, key.right)
        if left is None or right is None:
            return None
        return _Candidates(left.seqs | right.seqs, left.exact and right.exact)
    return None


def _seqs_of(view: SelectedFolder, uids: set[int]) -> set[int]:
    """The sequence numbers of those of `uids` that the view holds."""
    if len(uids) * 16 < len(view):
        return {seq for seq in map(view.seq_of, uids) if seq is not None}
    # One pass over the view in C (compress and a bound __contains__): a third of the time a
    # comprehension takes over 100,000 messages.
    return set(compress(range(1, len(view) + 1), map(uids.__contains__, view.uids)))


def _day(moment: datetime) -> date:
    return moment.date()


@dataclass
class _Matcher:
    view: SelectedFolder
    facts: MessageFacts
    saved: set[int]
    now: float

    def matches(self, key: k.SearchKey, seq: int, uid: int) -> bool:  # noqa: C901 - one branch per key type
        view = self.view
        if isinstance(key, k.SearchAll):
            return True
        if isinstance(key, k.SearchAnd):
            return all(self.matches(inner, seq, uid) for inner in key.keys)
        if isinstance(key, k.SearchOr):
            return self.matches(key.left, seq, uid) or self.matches(key.right, seq, uid)
        if isinstance(key, k.SearchNot):
            return not self.matches(key.key, seq, uid)
        if isinstance(key, k.SearchFlag):
            return self._has_flag(key.flag, seq, uid) == key.present
        if isinstance(key, k.SearchSequence):
            if key.sequence_set.saved:
                return uid in self.saved
            if key.uid:
                return key.sequence_set.contains(uid, view.uids[-1])
            return key.sequence_set.contains(seq, len(view))
        if isinstance(key, k.SearchModSeq):
            return view.modseq_at(seq) >= key.modseq
        if isinstance(key, k.SearchText):
            return not key.value or uid in self.facts.text_hits.get(key, ())
        if isinstance(key, k.SearchHeader):
            return self._header(key, uid)
        row = self.facts.rows.get(uid)
        if row is None:  # expunged elsewhere: nothing more is known of it
            return False
        if isinstance(key, k.SearchSize):
            return row.size > key.size if key.relation == "larger" else row.size < key.size
        if isinstance(key, k.SearchAge):  # RFC 5032 §3
            age = self.now - row.internal_date.timestamp()
            return age >= key.seconds if key.relation == "older" else age <= key.seconds
        if isinstance(key, k.SearchDate):
            if key.scope == "internal":
                day = _day(row.internal_date)
            else:
                parsed = self.facts.parsed.get(uid)
                sent = sent_date(parsed.envelope.date if parsed else None)
                if sent is None:
                    return False
                day = _day(sent)
            if key.relation == "before":
                return day < key.day
            if key.relation == "on":
                return day == key.day
            return day >= key.day
        if isinstance(key, k.SearchObjectId):
            from postfach.imap.handlers.fetch import email_id

            return key.kind == "emailid" and email_id(row.blob.sha256) == key.value
        raise AssertionError(f"unknown search key {key!r}")

    def _has_flag(self, name: str, seq: int, uid: int) -> bool:
        lower = name.lower()
        if lower == "\\recent":
            return uid in self.view.recent
        bit = _FLAG_BITS.get(lower)
        if bit is not None:
            return bool(self.view.system_flags[seq - 1] & bit)
        return any(keyword.lower() == lower for keyword in self.view.keywords.get(uid, ()))

    def _header(self, key: k.SearchHeader, uid: int) -> bool:
        fields = self.facts.headers.get(uid, [])
        needle = key.value.casefold()
        return any(name == key.name and needle in value.casefold() for name, value in fields)
