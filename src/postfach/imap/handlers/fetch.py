"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY; RFC 7162 CONDSTORE/QRESYNC;
RFC 8474 OBJECTID; RFC 8970 PREVIEW).

Flags, UIDs and modseqs come from the session's in-memory view; sizes, dates
and blob addresses from one store query per command; ENVELOPE and
BODYSTRUCTURE from the parse cached at delivery. Section data is read from
the message file by byte range (imap/fetch_sections.py) and large ranges are
streamed in chunks, each written and drained before the next is read, so a
50 MB message never sits in memory and BODY[1.MIME] reads only that header.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from postfach.content_cache import ContentCache
from postfach.imap import commands as c
from postfach.imap import fetch_sections as sections
from postfach.imap import responses as r
from postfach.imap import targets
from postfach.imap.bodystructure import body_structure, envelope
from postfach.imap.fetch_items import FetchAttr, FetchBinarySize, FetchBody, FetchItem, FetchPreview
from postfach.imap.session import Done, ImapSession, No, handles
from postfach.imap.selected import SelectedFolder
from postfach.imap.sequence import format_set
from postfach.mime.model import ParsedMessage
from postfach.model import Flags, MessageMeta, SystemFlag
from postfach.store.base import FlagMode, NotFound

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # bytes read from the message file per step of a streamed literal
INLINE = 64 * 1024  # ranges up to this are read at once, before the response starts
VIEW_LINES_PER_WRITE = 1000  # FETCH of flags only: lines written (and drained) at a time
MAX_DECODED = 64 * 1024 * 1024  # BINARY decodes in memory; a part is at most a message

# Items answered from the view alone; anything else needs the message's row.
_VIEW_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
# Items that read the message's body and so set \Seen (RFC 9051 §6.4.5); RFC822.HEADER does not.
_SEEN_ITEMS = frozenset({"RFC822", "RFC822.TEXT"})


@dataclass(frozen=True, slots=True)
class _Stream:
    """A large range of the message file, sent as a literal read chunk by chunk."""

    sha256: str
    span: sections.Span


def email_id(sha256: str) -> str:
    """RFC 8474 §5.1: the same content keeps its EMAILID in every folder (content addressed)."""
    return "M" + sha256[:32]


def sets_seen(items: Iterable[FetchAttr]) -> bool:
    return any(
        (isinstance(item, FetchBody) and not item.peek) or (isinstance(item, FetchItem) and item.name in _SEEN_ITEMS)
        for item in items
    )


@handles(c.Fetch)
async def fetch(session: ImapSession, command: c.Fetch) -> Done:
    view = targets.selected(session)
    seqs = targets.sequence_numbers(session, command.sequence_set, command.uid)
    items = list(command.items)
    modseq_wanted = command.changedsince is not None or any(
        isinstance(item, FetchItem) and item.name == "MODSEQ" for item in items
    )
    if modseq_wanted:
        session.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
        if not any(isinstance(item, FetchItem) and item.name == "MODSEQ" for item in items):
            items.append(FetchItem("MODSEQ"))
    if command.changedsince is not None:
        if command.vanished and session.qresync:
            await _report_vanished(session, command)
        seqs = [seq for seq in seqs if view.modseq_at(seq) > command.changedsince]
    if not seqs:
        return Done("FETCH completed")

    marked: set[int] = set()
    if sets_seen(items) and not view.read_only:
        marked = await _mark_seen(session, view, seqs)
    if all(isinstance(item, FetchItem) and item.name in _VIEW_ITEMS for item in items):
        await _send_view_items(session, view, seqs, [item.name for item in items])  # type: ignore[union-attr]
        return Done("FETCH completed")
    found = await session.store.get_messages(view.folder_id, (view.uid_at(seq) for seq in seqs))
    rows: dict[int, MessageMeta] = {message.uid: message for message in found}
    parsed_cache: dict[str, ParsedMessage] = {}
    if rows and any(_needs_parse(item) for item in items):
        # One query for every message's cached parse, not one per message.
        parsed_cache.update(await session.store.parsed_messages(row.blob.sha256 for row in rows.values()))
    missing = 0
    for seq in seqs:
        uid = view.uid_at(seq)
        row = rows.get(uid)
        if row is None:
            # Expunged elsewhere and not yet reported (RFC 9051 §7.5.1 keeps its number):
            # its content is gone, so it is left out (RFC 2180 §4.1.2).
            missing += 1
            continue
        wanted = items
        if uid in marked and not any(isinstance(item, FetchItem) and item.name == "FLAGS" for item in items):
            # RFC 9051 §6.4.5: the implicit \Seen is reported in the same FETCH response.
            wanted = [*items, FetchItem("FLAGS")]
        try:
            answer = await _answer(session, view, seq, uid, row, wanted, parsed_cache)
        except NotFound:
            missing += 1
            continue
        await _send(session, seq, answer)
    if missing:
        return Done("FETCH completed; some messages were expunged meanwhile", "EXPUNGEISSUED")
    return Done("FETCH completed")


async def _send_view_items(session: ImapSession, view: SelectedFolder, seqs: list[int], names: list[str]) -> None:
    """FETCH of UID, FLAGS and MODSEQ only, a client's flag sync: from the view, a line each,
    without the per-message steps that reading a message's row or file needs."""
    lines: list[bytes] = []
    for seq in seqs:
        uid = view.uid_at(seq)
        parts = []
        for name in names:
            if name == "UID":
                parts.append(b"UID %d" % uid)
            elif name == "FLAGS":
                parts.append(b"FLAGS " + flag_names(view, seq, uid))
            else:
                parts.append(b"MODSEQ (%d)" % view.modseq_at(seq))
        lines.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
        if len(lines) == VIEW_LINES_PER_WRITE:
            session.output.write(b"".join(lines))
            lines.clear()
            await session.output.drain()  # FETCH 1:* FLAGS of 100,000: memory stays flat
    session.output.write(b"".join(lines))


async def _report_vanished(session: ImapSession, command: c.Fetch) -> None:
    """RFC 7162 §3.2.6: UIDs of the set expunged since CHANGEDSINCE, as VANISHED (EARLIER)."""
    view = targets.selected(session)
    assert command.changedsince is not None
    gone = await session.store.expunged_since(view.folder_id, command.changedsince)
    star = max(view.uids[-1] if view.uids else 0, gone[-1] if gone else 0)
    named = [uid for uid in gone if command.sequence_set.contains(uid, star) and view.seq_of(uid) is None]
    if named:
        session.send(b"* VANISHED (EARLIER) " + format_set(named).encode("ascii") + b"\r\n")


async def _mark_seen(session: ImapSession, view: SelectedFolder, seqs: list[int]) -> set[int]:
    unseen = [view.uid_at(seq) for seq in seqs if SystemFlag.SEEN not in view.flags_at(seq).system]
    if not unseen:
        return set()
    changed = await session.store.set_flags(view.folder_id, unseen, Flags(SystemFlag.SEEN), FlagMode.ADD)
    for message in changed:
        view.set_flags(message.uid, message.flags, message.modseq)
    return {message.uid for message in changed}


# FETCH items answered from the message's cached parse (the others need only the view or the row).
_PARSE_ITEMS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"})


def _needs_parse(item: object) -> bool:
    if isinstance(item, FetchItem):
        return item.name in _PARSE_ITEMS
    return isinstance(item, (FetchBody, FetchBinarySize, FetchPreview))


async def _parsed(session: ImapSession, row: MessageMeta, cache: dict[str, ParsedMessage]) -> ParsedMessage:
    sha256 = row.blob.sha256
    if sha256 not in cache:
        found = await session.store.parsed_messages([sha256])
        if sha256 not in found:
            raise NotFound("the message no longer exists")
        cache[sha256] = found[sha256]
    return cache[sha256]


# ENVELOPE, BODY and BODYSTRUCTURE as sent, per message content: a client's folder view
# fetches the same messages' envelopes again and again, and spelling one out cost more than
# the rest of its FETCH.
RENDERED_CACHE_SIZE = 10_000
_RENDERED: ContentCache[r.Raw] = ContentCache(RENDERED_CACHE_SIZE)


async def _rendered(session: ImapSession, row: MessageMeta, name: str, cache: dict[str, ParsedMessage]) -> r.Raw:
    key = f"{row.blob.sha256} {name} {session.utf8}"
    rendered = _RENDERED.get(key)
    if rendered is None:
        parsed = await _parsed(session, row, cache)
        if name == "ENVELOPE":
            rendered = r.Raw(envelope(parsed.envelope, session.utf8))
        else:
            rendered = r.Raw(body_structure(parsed.structure, name == "BODYSTRUCTURE", session.utf8))
        _RENDERED.put(key, rendered)
    return rendered


def flag_names(view: SelectedFolder, seq: int, uid: int) -> r.Raw:
    return _flag_list(view.system_flags[seq - 1], view.keywords.get(uid, _NO_KEYWORDS), uid in view.recent)


_NO_KEYWORDS: frozenset[str] = frozenset()


# A folder's messages share a handful of flag combinations: each is spelled out once, not
# once per message of every FETCH (that was a fifth of a worker's time under the load mix).
@functools.lru_cache(maxsize=1024)
def _flag_list(system: int, keywords: frozenset[str], recent: bool) -> r.Raw:
    names = Flags(SystemFlag(system), keywords).names()
    if recent:
        names.append("\\Recent")
    return r.flag_list(names)


async def _answer(
    session: ImapSession,
    view: SelectedFolder,
    seq: int,
    uid: int,
    row: MessageMeta | None,
    items: list[FetchAttr],
    cache: dict[str, ParsedMessage],
) -> list[tuple[str, object]]:
    """(label, value) per item; a value is an encodable value or a _Stream."""
    out: list[tuple[str, object]] = []
    for item in items:
        if isinstance(item, FetchItem):
            name = item.name
            if name == "UID":
                out.append((name, uid))
            elif name == "FLAGS":
                out.append((name, flag_names(view, seq, uid)))
            elif name == "MODSEQ":
                out.append((name, [view.modseq_at(seq)]))
            elif name == "INTERNALDATE":
                out.append((name, r.format_internaldate(row.internal_date)))
            elif name == "RFC822.SIZE":
                out.append((name, row.size))
            elif name == "EMAILID":
                out.append((name, r.Raw(b"(" + email_id(row.blob.sha256).encode("ascii") + b")")))
            elif name in ("THREADID", "SAVEDATE"):
                out.append((name, None))  # RFC 8474 §5.2: NIL when the server does not thread
            elif name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
                out.append((name, await _rendered(session, row, name, cache)))
            else:  # RFC822, RFC822.HEADER, RFC822.TEXT: BODY[], BODY.PEEK[HEADER], BODY[TEXT]
                root = (await _parsed(session, row, cache)).structure
                span = {
                    "RFC822": sections.Span(0, row.size),
                    "RFC822.HEADER": sections.Span(root.header_start, root.header_end),
                    "RFC822.TEXT": sections.Span(root.header_end, root.body_end),
                }[name]
                out.append((name, await _data(session, row, span, None)))
        elif isinstance(item, FetchBody):
            root = (await _parsed(session, row, cache)).structure
            if item.binary:
                try:
                    where = sections.locate_binary(root, row.size, item.section.part)
                except sections.UnknownEncoding as error:
                    raise No(f"unknown Content-Transfer-Encoding {error}", "UNKNOWN-CTE") from None
            else:
                where = sections.locate(root, row.size, item.section)
            out.append((item.label(), await _data(session, row, where, item.partial, binary=item.binary)))
        elif isinstance(item, FetchBinarySize):
            root = (await _parsed(session, row, cache)).structure
            try:
                where = sections.locate_binary(root, row.size, item.part)
            except sections.UnknownEncoding as error:
                raise No(f"unknown Content-Transfer-Encoding {error}", "UNKNOWN-CTE") from None
            if where is None:
                out.append((item.label(), None))
            elif isinstance(where, sections.Decoded):
                out.append((item.label(), len(await _decoded(session, row, where))))
            else:
                out.append((item.label(), len(where)))  # type: ignore[arg-type]
        elif isinstance(item, FetchPreview):
            out.append((item.label(), (await _parsed(session, row, cache)).preview))
    return out


async def _data(
    session: ImapSession,
    row: MessageMeta,
    where: sections.Location | None,
    partial: tuple[int, int] | None,
    binary: bool = False,
) -> object:
    if where is None:
        return None
    store = session.store
    if isinstance(where, sections.Span):
        span = where.cut(partial)
        if len(span) > INLINE:
            return _Stream(row.blob.sha256, span)
        data = await store.read_blob_range(row.blob.sha256, span.start, span.end) if len(span) else b""
    elif isinstance(where, sections.HeaderSubset):
        block = await store.read_blob_range(row.blob.sha256, where.start, where.end)
        data = sections.cut(sections.filter_header(block, where.names, where.exclude), partial)
    else:
        data = sections.cut(await _decoded(session, row, where), partial)
    # RFC 3516 §4.3: decoded content with NUL goes as literal8.
    return r.Literal(data, binary=binary and b"\x00" in data)


async def _decoded(session: ImapSession, row: MessageMeta, where: sections.Decoded) -> bytes:
    if where.end - where.start > MAX_DECODED:
        raise No("the part is too large to decode")
    raw = await session.store.read_blob_range(row.blob.sha256, where.start, where.end)
    return sections.decode(raw, where.encoding)


async def _send(session: ImapSession, seq: int, answer: list[tuple[str, object]]) -> None:
    out = session.output
    utf8 = session.utf8
    head = b"* %d FETCH (" % seq
    pending: list[bytes] = [head]
    for index, (label, value) in enumerate(answer):
        prefix = (b" " if index else b"") + label.encode("ascii") + b" "
        if not isinstance(value, _Stream):
            pending.append(prefix + r.encode(value, utf8))
            continue
        span = value.span
        out.write(b"".join(pending) + prefix + r.literal_prefix(len(span)))
        pending = []
        for start in range(span.start, span.end, CHUNK):
            out.write(await session.store.read_blob_range(value.sha256, start, min(span.end, start + CHUNK)))
            await out.drain()
    pending.append(b")\r\n")
    out.write(b"".join(pending))
