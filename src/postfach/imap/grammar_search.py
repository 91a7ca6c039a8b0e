"""SEARCH, SORT and THREAD arguments (RFC 9051 §6.4.4, RFC 3501 §6.4.4,
RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5256 SORT/THREAD, RFC 5267 ESORT,
RFC 7162 MODSEQ, RFC 5032 WITHIN, RFC 8474 OBJECTID).

Strings are decoded as UTF-8 (with replacement) whatever the CHARSET says;
the session must answer ``NO [BADCHARSET (UTF-8 US-ASCII)]`` for any charset
it does not support (RFC 9051 §6.4.4) before evaluating.
"""

from __future__ import annotations

import re
from datetime import date

from postfach.imap import commands as c
from postfach.imap import search_keys as k
from postfach.imap.grammar_fetch import sequence_set
from postfach.imap.reader import Reader

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE = re.compile(rb'([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})')
_KEY = re.compile(rb"[A-Za-z0-9\-]+")
_SEQ_START = re.compile(rb"[0-9*$]")

# Nesting of NOT/OR/parentheses; deeper is a hostile client, not a real search.
MAX_DEPTH = 64

RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
THREAD_ALGORITHMS = frozenset({"REFERENCES", "ORDEREDSUBJECT"})

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
    "RECENT": ("\\Recent", True), "OLD": ("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {
    "BEFORE": ("internal", "before"), "ON": ("internal", "on"), "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"), "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since"),
}


def search_date(r: Reader) -> date:
    quoted = r.accept(b'"')
    m = r.match(_DATE)
    if m is None or (quoted and not r.accept(b'"')):
        raise r.error("invalid date")
    day, mon, year = (g.decode("ascii") for g in m.groups())
    try:
        return date(int(year), MONTHS.index(mon.upper()) + 1, int(day))
    except ValueError:
        raise r.error("invalid date") from None


def _string(r: Reader) -> str:
    return r.astring_text("search string")


def search_key(r: Reader, depth: int = 0) -> k.SearchKey:
    if depth > MAX_DEPTH:
        raise r.error("search keys nested too deeply")
    if r.accept(b"("):
        keys = [search_key(r, depth + 1)]
        while not r.accept(b")"):
            r.sp()
            keys.append(search_key(r, depth + 1))
        return keys[0] if len(keys) == 1 else k.SearchAnd(tuple(keys))
    b = r.peek()
    if b is not None and _SEQ_START.match(bytes((b,))):
        return k.SearchSequence(sequence_set(r))
    m = r.match(_KEY)
    if m is None:
        raise r.error("expected a search key")
    word = m.group().decode("ascii").upper()
    if word == "ALL":
        return k.SearchAll()
    if word in _FLAG_KEYS:
        return k.SearchFlag(*_FLAG_KEYS[word])
    if word == "NEW":  # RFC 3501 §6.4.4: RECENT and UNSEEN
        return k.SearchAnd((k.SearchFlag("\\Recent"), k.SearchFlag("\\Seen", False)))
    if word in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        return k.SearchFlag(r.flag(), word == "KEYWORD")
    if word in _HEADER_KEYS:
        r.sp()
        return k.SearchHeader(_HEADER_KEYS[word], _string(r))
    if word == "HEADER":
        r.sp()
        name = _string(r).lower()
        r.sp()
        return k.SearchHeader(name, _string(r))
    if word in ("BODY", "TEXT"):
        r.sp()
        return k.SearchText(word.lower(), _string(r))
    if word in _DATE_KEYS:
        r.sp()
        return k.SearchDate(*_DATE_KEYS[word], search_date(r))
    if word in ("LARGER", "SMALLER"):
        r.sp()
        return k.SearchSize(word.lower(), r.number("size", limit=0x7FFFFFFFFFFFFFFF))
    if word in ("OLDER", "YOUNGER"):
        r.sp()
        return k.SearchAge(word.lower(), r.nz_number("interval"))
    if word == "UID":
        r.sp()
        return k.SearchSequence(sequence_set(r), uid=True)
    if word == "NOT":
        r.sp()
        return k.SearchNot(search_key(r, depth + 1))
    if word == "OR":
        r.sp()
        left = search_key(r, depth + 1)
        r.sp()
        return k.SearchOr(left, search_key(r, depth + 1))
    if word == "MODSEQ":  # RFC 7162 §3.1.5
        r.sp()
        entry = entry_type = None
        if r.peek() == 0x22 or r.at_literal():
            entry = r.text(r.string())
            r.sp()
            entry_type = r.word("entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise r.error("invalid MODSEQ entry type")
            r.sp()
        return k.SearchModSeq(r.mod_sequence(zero=True), entry, entry_type)
    if word in ("EMAILID", "THREADID"):  # RFC 8474 §5
        r.sp()
        return k.SearchObjectId(word.lower(), r.atom("object id").decode("ascii"))
    raise r.error(f"unknown search key {word}")


def search_program(r: Reader) -> k.SearchKey:
    """1*(SP search-key) after the command; the caller has read nothing of it."""
    keys = []
    while True:
        r.sp()
        keys.append(search_key(r))
        if r.at_end():
            break
    return keys[0] if len(keys) == 1 else k.SearchAnd(tuple(keys))


def _charset(r: Reader) -> str:
    return r.astring_text("charset").upper()


def _return_options(r: Reader) -> tuple[str, ...]:
    def one() -> str:
        word = r.word("RETURN option")
        if word not in RETURN_OPTIONS:
            raise r.error(f"unknown RETURN option {word}")
        return word
    r.expect(b"RETURN", "RETURN")
    r.sp()
    return tuple(dict.fromkeys(r.paren_list(one)))


def parse_search(r: Reader, tag: str, uid: bool) -> c.Command:
    returns = charset = None
    save = (r.i, r.pos)
    if r.accept(b" RETURN "):  # RFC 4731 §3
        r.pos -= len(b"RETURN ")
        returns = _return_options(r)
    else:
        r.i, r.pos = save
    save = (r.i, r.pos)
    if r.accept(b" CHARSET "):
        charset = _charset(r)
    else:
        r.i, r.pos = save
    return c.Search(tag, search_program(r), charset, returns, uid)


def parse_sort(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    returns = None
    if r.line[r.pos:r.pos + 6].upper() == b"RETURN":  # RFC 5267 §3.2
        returns = _return_options(r)
        r.sp()

    def criterion() -> tuple[str, bool]:
        word = r.word("sort key")
        reverse = word == "REVERSE"
        if reverse:
            r.sp()
            word = r.word("sort key")
        if word not in SORT_KEYS:
            raise r.error(f"unknown sort key {word}")
        return word, reverse
    criteria = tuple(c.SortCriterion(w, rev) for w, rev in r.paren_list(criterion, allow_empty=False))
    r.sp()
    charset = _charset(r)
    return c.Sort(tag, criteria, charset, search_program(r), uid, returns)


def parse_thread(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    algorithm = r.word("thread algorithm")
    if algorithm not in THREAD_ALGORITHMS:
        raise r.error(f"unknown thread algorithm {algorithm}")
    r.sp()
    charset = _charset(r)
    return c.Thread(tag, algorithm, charset, search_program(r), uid)
