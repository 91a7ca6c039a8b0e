"""SEARCH, SORT and THREAD, and their UID forms (RFC 9051 §6.4.4, RFC 4731 ESEARCH,
RFC 5182 SEARCHRES, RFC 7162 §3.1.5 MODSEQ, RFC 5256 SORT/THREAD, RFC 5957 DISPLAYFROM/TO).

Keys are evaluated by imap/search.py; this module picks the answer's form:
``* SEARCH`` for IMAP4rev1 clients without RETURN, ``* ESEARCH`` with RETURN
or once IMAP4rev2 is enabled (RFC 9051 §7.3.4 has no SEARCH response).
"""

from __future__ import annotations

from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap import search_keys as k
from postfach.imap import targets
from postfach.imap.search import SUPPORTED_CHARSETS, load_headers, search, sent_date, walk
from postfach.imap.sequence import format_set
from postfach.imap.session import Done, ImapSession, No, handles
from postfach.imap.threads import (
    ThreadInput,
    base_subject,
    format_threads,
    message_id,
    ordered_subject,
    reference_ids,
    references,
)
from postfach.mime.model import EnvelopeAddress, ParsedMessage
from postfach.mime.text import decode_header_text
from postfach.model import MessageMeta


def _check_charset(charset: str | None) -> None:
    if charset is not None and charset.upper() not in SUPPORTED_CHARSETS:
        raise No(f"the charset {charset} is not supported", "BADCHARSET (UTF-8 US-ASCII)")


def _has_modseq_key(key: k.SearchKey | None) -> bool:
    if key is not None and any(isinstance(x, k.SearchModSeq) for x in walk(key)):
        return True
    return False


@handles(c.Search)
async def search_command(session: ImapSession, command: c.Search) -> Done:
    options = command.return_options
    try:
        _check_charset(command.charset)
        assert command.key is not None
        seqs = await search(session, command.key)
    except Exception:
        if options and "SAVE" in options:
            targets.save_search(session, ())  # RFC 5182 §2.1: a failed SAVE leaves $ empty
        raise
    view = targets.selected(session)
    modseq_key = _has_modseq_key(command.key)
    if modseq_key:
        session.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    numbers = [view.uid_at(seq) for seq in seqs] if command.uid else seqs
    # RFC 7162 §3.1.5: the highest mod-sequence of the messages found.
    highest = max((view.modseq_at(seq) for seq in seqs), default=None) if modseq_key else None
    if options is None and "IMAP4rev2" not in session.enabled:
        session.send(r.search_response(numbers, highest))
        return Done("SEARCH completed")
    wanted = set(options or ()) or {"ALL"}
    if options is None:
        wanted = {"ALL"}
    if "SAVE" in wanted:
        # RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT, only those are saved.
        uids = [view.uid_at(seq) for seq in seqs]
        if wanted & {"MIN", "MAX"} and not wanted & {"ALL", "COUNT"}:
            uids = sorted({*(uids[:1] if "MIN" in wanted else []), *(uids[-1:] if "MAX" in wanted else [])})
        targets.save_search(session, uids)
        if wanted == {"SAVE"}:
            return Done("SEARCH completed, result saved")  # RFC 5182 §2.4: no ESEARCH then
    results: list[tuple[str, int | str]] = []
    if numbers:
        if "MIN" in wanted:
            results.append(("MIN", numbers[0]))
        if "MAX" in wanted:
            results.append(("MAX", numbers[-1]))
        if "ALL" in wanted:
            results.append(("ALL", format_set(numbers)))
    if "COUNT" in wanted:
        results.append(("COUNT", len(numbers)))
    if highest is not None:
        results.append(("MODSEQ", highest))
    session.send(r.esearch_response(command.tag, command.uid, results))
    return Done("SEARCH completed")


# ---------------------------------------------------------------- SORT


def _first_mailbox(addresses: tuple[EnvelopeAddress, ...]) -> str:
    """RFC 5256 §3: the addr-mailbox of the first address, compared i;ascii-casemap."""
    for address in addresses:
        if address.mailbox is not None and address.host is not None:
            return address.mailbox.lower()
    return ""


def _display(addresses: tuple[EnvelopeAddress, ...]) -> str:
    """RFC 5957 §3: the display name of the first address, else its address."""
    for address in addresses:
        if address.mailbox is None or address.host is None:
            continue
        if address.name:
            return decode_header_text(address.name).casefold()
        return f"{address.mailbox}@{address.host}".casefold()
    return ""


def _sent(parsed: ParsedMessage, row: MessageMeta) -> float:
    """RFC 5256 §2.2: the Date: header in UTC, else the internal date."""
    sent = sent_date(parsed.envelope.date)
    if sent is None or sent.tzinfo is None:
        return row.internal_date.timestamp()
    return sent.timestamp()


async def _facts(session: ImapSession, seqs: list[int]) -> tuple[dict[int, MessageMeta], dict[int, ParsedMessage]]:
    view = targets.selected(session)
    rows = {row.uid: row for row in await session.store.get_messages(view.folder_id, map(view.uid_at, seqs))}
    parses = await session.store.parsed_messages(row.blob.sha256 for row in rows.values())
    # A message whose file went meanwhile (expunged elsewhere) is left out, as if not found.
    parsed = {uid: parses[row.blob.sha256] for uid, row in rows.items() if row.blob.sha256 in parses}
    return {uid: row for uid, row in rows.items() if uid in parsed}, parsed


def _sort_key(criterion: str, row: MessageMeta, parsed: ParsedMessage) -> object:
    env = parsed.envelope
    if criterion == "ARRIVAL":
        return row.internal_date.timestamp()
    if criterion == "DATE":
        return _sent(parsed, row)
    if criterion == "SIZE":
        return row.size
    if criterion == "SUBJECT":
        return base_subject(env.subject)[0].lower()
    if criterion in ("FROM", "TO", "CC"):
        return _first_mailbox({"FROM": env.from_, "TO": env.to, "CC": env.cc}[criterion])
    if criterion == "DISPLAYFROM":
        return _display(env.from_)
    return _display(env.to)  # DISPLAYTO


@handles(c.Sort)
async def sort(session: ImapSession, command: c.Sort) -> Done:
    _check_charset(command.charset)
    assert command.key is not None
    view = targets.selected(session)
    seqs = await search(session, command.key)
    rows, parsed = await _facts(session, seqs)
    seqs = [seq for seq in seqs if view.uid_at(seq) in rows]  # expunged meanwhile: nothing to sort by
    # Stable sorts from the last criterion to the first; equal messages stay in
    # sequence order (RFC 5256 §3: the final tie-breaker).
    for criterion in reversed(command.criteria):
        seqs.sort(
            key=lambda seq: _sort_key(criterion.key, rows[view.uid_at(seq)], parsed[view.uid_at(seq)]),
            reverse=criterion.reverse,
        )
    numbers = [view.uid_at(seq) for seq in seqs] if command.uid else seqs
    session.send(b"* SORT" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
    return Done("SORT completed")


# ---------------------------------------------------------------- THREAD


@handles(c.Thread)
async def thread(session: ImapSession, command: c.Thread) -> Done:
    _check_charset(command.charset)
    assert command.key is not None
    view = targets.selected(session)
    seqs = await search(session, command.key)
    rows, parsed = await _facts(session, seqs)
    headers: dict[int, list[tuple[str, str]]] = {}
    if command.algorithm == "REFERENCES":
        headers, _ = await load_headers(session, {uid: row.blob.sha256 for uid, row in rows.items()})
    inputs = []
    for seq in seqs:
        uid = view.uid_at(seq)
        if uid not in rows:
            continue
        env = parsed[uid].envelope
        fields = dict(reversed(headers.get(uid, [])))  # the first of repeated fields wins
        inputs.append(ThreadInput(
            seq_or_uid=uid if command.uid else seq,
            order=seq,
            subject=env.subject,
            sent=_sent(parsed[uid], rows[uid]),
            message_id=message_id(env.message_id),
            references=reference_ids(fields.get("references"), env.in_reply_to),
        ))
    roots = references(inputs) if command.algorithm == "REFERENCES" else ordered_subject(inputs)
    text = format_threads(roots)
    session.send(b"* THREAD" + (b" " + text.encode("ascii") if text else b"") + b"\r\n")
    return Done("THREAD completed")
