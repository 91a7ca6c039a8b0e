"""Command grammar: tag, command name, and the arguments of every command but
FETCH/STORE (``grammar_fetch``) and SEARCH/SORT/THREAD (``grammar_search``).

Each ``_name`` function reads the arguments after "NAME" and returns the
command; ``parse_command`` dispatches and checks that the line ends there.
References are RFC 9051 §9 (formal syntax) unless said otherwise.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from postfach.imap import commands as c
from postfach.imap.grammar_fetch import parse_fetch, parse_store, sequence_set
from postfach.imap.grammar_search import parse_search, parse_sort, parse_thread
from postfach.imap.reader import ParseError, Reader

TAG = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+")
_COMMAND = re.compile(rb"[A-Za-z]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_DATE_TIME = re.compile(
    rb'"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

STATUS_ITEMS = frozenset({
    "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
    "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID", "DELETED-STORAGE",
})
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"})


class UnknownCommand(ParseError):
    pass


def parse_tag(r: Reader) -> str:
    m = r.match(TAG)
    if m is None:
        raise r.error("missing or invalid tag")
    return m.group().decode("ascii")


def command_name(r: Reader) -> str:
    """The command name, "UID FETCH" for UID forms, upper case."""
    m = r.match(_COMMAND)
    if m is None:
        raise UnknownCommand("missing command")
    name = m.group().decode("ascii").upper()
    if name == "UID" and r.accept_sp():
        m = r.match(_COMMAND)
        sub = m.group().decode("ascii").upper() if m else ""
        if sub not in UID_COMMANDS:
            raise UnknownCommand(f"unknown UID command {sub!r}")
        return "UID " + sub
    return name


def parse_command(r: Reader) -> c.Command:
    tag = parse_tag(r)
    r.sp()
    name = command_name(r)
    if name.startswith("UID "):
        command = UID_COMMANDS[name[4:]](r, tag, True)
    else:
        handler = COMMANDS.get(name)
        if handler is None:
            raise UnknownCommand(f"unknown command {name!r}")
        command = handler(r, tag)
    r.end()
    return command


# --- helpers ---------------------------------------------------------------

def date_time(r: Reader) -> datetime:
    """RFC 9051 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (a 1-digit day is tolerated)."""
    m = r.match(_DATE_TIME)
    if m is None:
        raise r.error("invalid date-time")
    day, mon, year, hh, mm, ss, sign, zh, zm = (g.decode("ascii") for g in m.groups())
    try:
        month = MONTHS.index(mon.upper()) + 1
        offset = timedelta(hours=int(zh), minutes=int(zm))
        zone = timezone(-offset if sign == "-" else offset)
        return datetime(int(year), month, int(day.strip()), int(hh), int(mm), int(ss), tzinfo=zone)
    except ValueError:
        raise r.error("invalid date-time") from None


def _options(r: Reader, allowed: frozenset[str] | None, what: str) -> tuple[str, ...]:
    def one() -> str:
        word = r.word(what)
        if allowed is not None and word not in allowed:
            raise r.error(f"unknown {what} {word}")
        return word
    return tuple(r.paren_list(one))


def status_items(r: Reader) -> tuple[str, ...]:
    return _options(r, STATUS_ITEMS, "status item")


# --- commands without arguments -------------------------------------------

def _simple(cls: type[c.Command]) -> Callable[[Reader, str], c.Command]:
    return lambda r, tag: cls(tag)


# --- any state / not authenticated ------------------------------------------

def _authenticate(r: Reader, tag: str) -> c.Command:
    r.sp()
    mechanism = r.atom("SASL mechanism").decode("ascii").upper()
    initial = None
    if r.accept_sp():  # RFC 4959 §3: initial response, "=" for an empty one
        if r.accept(b"="):
            initial = b""
        else:
            initial = decode_base64(r, r.match(_BASE64))
    return c.Authenticate(tag, mechanism, initial)


def decode_base64(r: Reader, m: re.Match[bytes] | None) -> bytes:
    if m is None or not m.group() or len(m.group()) % 4:
        raise r.error("invalid BASE64")
    try:
        return binascii.a2b_base64(m.group(), strict_mode=True)
    except binascii.Error:
        raise r.error("invalid BASE64") from None


def _login(r: Reader, tag: str) -> c.Command:
    r.sp()
    user = r.astring_text("user name")
    r.sp()
    password = r.astring_text("password")
    return c.Login(tag, user, password)


def _id(r: Reader, tag: str) -> c.Command:
    r.sp()
    if r.accept(b"NIL"):
        return c.Id(tag, None)

    def pair() -> tuple[str, str | None]:
        key = r.text(r.string())
        r.sp()
        value = r.nstring()
        return key, None if value is None else r.text(value)
    return c.Id(tag, tuple(r.paren_list(pair)))


def _enable(r: Reader, tag: str) -> c.Command:
    caps = []
    r.sp()
    while True:
        caps.append(r.word("capability"))
        if not r.accept_sp():
            return c.Enable(tag, tuple(caps))


def _compress(r: Reader, tag: str) -> c.Command:
    r.sp()
    return c.Compress(tag, r.word("compression mechanism"))


# --- mailboxes -------------------------------------------------------------

def _select_like(cls: type[c.Select | c.Examine]) -> Callable[[Reader, str], c.Command]:
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        mailbox = r.mailbox()
        condstore, qresync = False, None
        if r.accept_sp():
            r.expect(b"(")
            while True:
                word = r.word("select parameter")
                if word == "CONDSTORE":  # RFC 7162 §3.1.8
                    condstore = True
                elif word == "QRESYNC":  # RFC 7162 §3.2.5
                    r.sp()
                    qresync = _qresync(r)
                else:
                    raise r.error(f"unknown select parameter {word}")
                if r.accept(b")"):
                    break
                r.sp()
        return cls(tag, mailbox, condstore, qresync)
    return parse


def _qresync(r: Reader) -> c.Qresync:
    r.expect(b"(")
    uidvalidity = r.nz_number("uidvalidity")
    r.sp()
    modseq = r.mod_sequence()
    known, match = None, None
    if r.accept_sp():
        if r.peek() != 0x28:
            known = sequence_set(r, allow_saved=False)
            if r.accept_sp():
                match = _seq_match(r)
        else:
            match = _seq_match(r)
    r.expect(b")")
    return c.Qresync(uidvalidity, modseq, known, match)


def _seq_match(r: Reader):  # type: ignore[no-untyped-def]
    r.expect(b"(")
    seqs = sequence_set(r, allow_saved=False)
    r.sp()
    uids = sequence_set(r, allow_saved=False)
    r.expect(b")")
    return seqs, uids


def _create(r: Reader, tag: str) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    uses: tuple[str, ...] = ()
    if r.accept_sp():  # RFC 6154 §3 / RFC 4466 create-param
        r.expect(b"(")
        r.expect(b"USE", "USE")
        r.sp()
        uses = tuple(r.paren_list(r.flag))
        r.expect(b")")
    return c.Create(tag, mailbox, uses)


def _one_mailbox(cls: type) -> Callable[[Reader, str], c.Command]:  # type: ignore[type-arg]
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        return cls(tag, r.mailbox())  # type: ignore[no-any-return]
    return parse


def _rename(r: Reader, tag: str) -> c.Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(tag, old, r.mailbox())


def _list(r: Reader, tag: str) -> c.Command:
    r.sp()
    extended = False
    select: tuple[str, ...] = ()
    if r.peek() == 0x28:  # RFC 5258 §3 list-select-opts
        select = _options(r, LIST_SELECT_OPTIONS, "LIST selection option")
        extended = True
        r.sp()
    reference = r.list_mailbox()
    r.sp()
    if r.peek() == 0x28:
        patterns = tuple(r.paren_list(r.list_mailbox, allow_empty=False))
        extended = True
    else:
        patterns = (r.list_mailbox(),)
    returns: list[str] = []
    status = None
    if r.accept_sp():
        r.expect(b"RETURN", "RETURN")
        r.sp()
        extended = True
        r.expect(b"(")
        while not r.accept(b")"):
            if returns:
                r.sp()
            word = r.word("LIST return option")
            if word not in LIST_RETURN_OPTIONS:
                raise r.error(f"unknown LIST return option {word}")
            if word == "STATUS":  # RFC 5819 §2
                r.sp()
                status = status_items(r)
            returns.append(word)
    return c.List(tag, reference, patterns, select, tuple(returns), status, extended)


def _lsub(r: Reader, tag: str) -> c.Command:
    r.sp()
    reference = r.list_mailbox()
    r.sp()
    return c.Lsub(tag, reference, r.list_mailbox())


def _status(r: Reader, tag: str) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    items = tuple(r.paren_list(lambda: _status_item(r), allow_empty=False))
    return c.Status(tag, mailbox, items)


def _status_item(r: Reader) -> str:
    word = r.word("status item")
    if word not in STATUS_ITEMS:
        raise r.error(f"unknown status item {word}")
    return word


def _append(r: Reader, tag: str) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    flags: tuple[str, ...] = ()
    when = None
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        when = date_time(r)
        r.sp()
    utf8 = False
    if r.accept(b"UTF8 ("):  # RFC 6855 §4: UTF8 (literal8)
        utf8 = True
    lit = r.message_literal()
    if utf8:
        r.expect(b")")
    return c.Append(tag, mailbox, flags, when, lit.size, lit.binary, utf8)


def _expunge(r: Reader, tag: str, uid: bool = False) -> c.Command:
    if not uid:
        return c.Expunge(tag)
    r.sp()  # RFC 4315 §2.1
    return c.Expunge(tag, True, sequence_set(r, allow_saved=True))


def _copy_like(cls: type[c.Copy | c.Move]):  # type: ignore[no-untyped-def]
    def parse(r: Reader, tag: str, uid: bool = False) -> c.Command:
        r.sp()
        seq = sequence_set(r, allow_saved=True)
        r.sp()
        return cls(tag, seq, r.mailbox(), uid)
    return parse


def _getquota(r: Reader, tag: str) -> c.Command:
    r.sp()
    return c.GetQuota(tag, r.astring_text("quota root"))


def _setquota(r: Reader, tag: str) -> c.Command:
    r.sp()
    root = r.astring_text("quota root")
    r.sp()

    def limit() -> tuple[str, int]:
        resource = r.word("quota resource")
        r.sp()
        return resource, r.number("quota limit", limit=0x7FFFFFFFFFFFFFFF)
    return c.SetQuota(tag, root, tuple(r.paren_list(limit)))


COMMANDS: dict[str, Callable[[Reader, str], c.Command]] = {
    "CAPABILITY": _simple(c.Capability),
    "NOOP": _simple(c.Noop),
    "LOGOUT": _simple(c.Logout),
    "STARTTLS": _simple(c.StartTLS),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ID": _id,
    "ENABLE": _enable,
    "COMPRESS": _compress,
    "SELECT": _select_like(c.Select),
    "EXAMINE": _select_like(c.Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _simple(c.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _simple(c.Idle),
    "CHECK": _simple(c.Check),
    "CLOSE": _simple(c.Close),
    "UNSELECT": _simple(c.Unselect),
    "EXPUNGE": _expunge,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "SEARCH": lambda r, tag: parse_search(r, tag, False),
    "FETCH": lambda r, tag: parse_fetch(r, tag, False),
    "STORE": lambda r, tag: parse_store(r, tag, False),
    "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move),
    "SORT": lambda r, tag: parse_sort(r, tag, False),
    "THREAD": lambda r, tag: parse_thread(r, tag, False),
}

UID_COMMANDS: dict[str, Callable[[Reader, str, bool], c.Command]] = {
    "FETCH": parse_fetch,
    "STORE": parse_store,
    "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move),
    "SEARCH": parse_search,
    "EXPUNGE": _expunge,
    "SORT": parse_sort,
    "THREAD": parse_thread,
}
