"""FETCH and STORE arguments, and sequence sets (RFC 9051 §6.4.5-6, §9).

Item names are read with their own regex, not as atoms: "[" is an atom
character, so an atom reader would swallow ``BODY[HEADER``.
"""

from __future__ import annotations

import re

from postfach.imap import commands as c
from postfach.imap.fetch_items import (
    MACROS,
    SIMPLE_ITEMS,
    FetchAttr,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchPreview,
    Section,
)
from postfach.imap.reader import Reader
from postfach.imap.sequence import SequenceSet, SequenceSetError

_SET_TEXT = re.compile(rb"[0-9*:,$]+")
_ITEM = re.compile(rb"[A-Za-z0-9.]+")
_PART = re.compile(rb"[1-9][0-9]*(?:\.[1-9][0-9]*)*")
_SECTION_TEXT = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME", re.IGNORECASE)
_STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)


def sequence_set(r: Reader, allow_saved: bool = True) -> SequenceSet:
    m = r.match(_SET_TEXT)
    if m is None:
        raise r.error("expected a sequence set")
    try:
        result = SequenceSet.parse(m.group())
    except SequenceSetError as exc:
        raise r.error(str(exc)) from None
    if result.saved and not allow_saved:
        raise r.error("'$' is not allowed here")
    return result


def _part(r: Reader) -> tuple[int, ...]:
    m = r.match(_PART)
    if m is None:
        return ()
    try:
        return tuple(int(n) for n in m.group().split(b"."))
    except ValueError:
        raise r.error("invalid section part") from None


def _section(r: Reader) -> Section:
    """ "[" [section-spec] "]" """
    r.expect(b"[")
    part = _part(r)
    text = None
    fields: tuple[str, ...] = ()
    if part and r.peek() == 0x2E:  # "."
        r.pos += 1
        m = r.match(_SECTION_TEXT)
        if m is None:
            raise r.error("invalid section text")
        text = m.group().decode("ascii").upper()
    elif not part:
        m = r.match(_SECTION_TEXT)
        if m is not None:
            text = m.group().decode("ascii").upper()
            if text == "MIME":  # RFC 9051 §6.4.5: MIME only with a part number
                raise r.error("MIME needs a part number")
    if any(n > 0xFFFFFFFF for n in part):
        raise r.error("section part too large")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()
        fields = tuple(r.paren_list(lambda: r.astring_text("header field name"), allow_empty=False))
    r.expect(b"]")
    return Section(part, text, fields)


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.accept(b"<"):
        return None
    offset = r.number("partial offset")
    r.expect(b".")
    length = r.nz_number("partial length")
    r.expect(b">")
    return offset, length


def fetch_att(r: Reader) -> FetchAttr:
    m = r.match(_ITEM)
    if m is None:
        raise r.error("expected a fetch item")
    name = m.group().decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK") and r.peek() == 0x5B:  # "["
        binary = name.startswith("BINARY")
        if binary:  # RFC 3516 §4.1 section-binary: part numbers only
            r.expect(b"[")
            section = Section(_part(r))
            r.expect(b"]")
        else:
            section = _section(r)
        return FetchBody(section, _partial(r), name.endswith(".PEEK"), binary)
    if name == "BINARY.SIZE":
        r.expect(b"[")
        part = _part(r)
        r.expect(b"]")
        return FetchBinarySize(part)
    if name == "PREVIEW":  # RFC 8970 §3
        lazy = False
        if r.line[r.pos:r.pos + 2] == b" (":
            r.pos += 1
            lazy = "LAZY" in r.paren_list(lambda: r.word("preview modifier"))
        return FetchPreview(lazy)
    if name in SIMPLE_ITEMS:
        return FetchItem(name)
    raise r.error(f"unknown fetch item {name}")


def parse_fetch(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seq = sequence_set(r)
    r.sp()
    items: list[FetchAttr]
    if r.peek() == 0x28:
        items = r.paren_list(lambda: fetch_att(r), allow_empty=False)
    else:
        save = r.pos
        word = r.match(_ITEM)
        if word is not None and word.group().decode("ascii").upper() in MACROS and r.peek() != 0x5B:
            items = [FetchItem(n) for n in MACROS[word.group().decode("ascii").upper()]]
        else:
            r.pos = save
            items = [fetch_att(r)]
    changedsince, vanished = None, False
    if r.accept_sp():  # RFC 7162 §3.1.4 fetch-modifiers
        r.expect(b"(")
        while True:
            word = r.word("fetch modifier")
            if word == "CHANGEDSINCE":
                r.sp()
                changedsince = r.mod_sequence()
            elif word == "VANISHED" and uid:  # RFC 7162 §3.2.6: UID FETCH only
                vanished = True
            else:
                raise r.error(f"unknown fetch modifier {word}")
            if r.accept(b")"):
                break
            r.sp()
        if vanished and changedsince is None:
            raise r.error("VANISHED needs CHANGEDSINCE")
    if uid and not any(isinstance(i, FetchItem) and i.name == "UID" for i in items):
        # RFC 9051 §6.4.9: UID FETCH answers always carry UID
        items.append(FetchItem("UID"))
    return c.Fetch(tag, seq, tuple(dict.fromkeys(items)), uid, changedsince, vanished)


def parse_store(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seq = sequence_set(r)
    r.sp()
    unchangedsince = None
    if r.peek() == 0x28:  # RFC 7162 §3.1.3 store-modifier
        r.expect(b"(")
        r.expect(b"UNCHANGEDSINCE", "UNCHANGEDSINCE")
        r.sp()
        unchangedsince = r.mod_sequence(zero=True)
        r.expect(b")")
        r.sp()
    m = r.match(_STORE_ITEM)
    if m is None:
        raise r.error("expected FLAGS, +FLAGS or -FLAGS")
    mode = m.group(1).decode("ascii")
    silent = m.group(2) is not None
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flag_list = [r.flag()]
        while r.accept_sp():
            flag_list.append(r.flag())
        flags = tuple(flag_list)
    return c.Store(tag, seq, mode, silent, flags, uid, unchangedsince)
