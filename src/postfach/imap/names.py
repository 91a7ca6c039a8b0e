"""Folder names on the IMAP wire and in the store: one namespace, two spellings, many aliases.

Layout (issue 3, point 4):

- One personal namespace, prefix "", hierarchy delimiter "/"
  (NAMESPACE answers `(("" "/")) NIL NIL`). Store names are the full path
  with "/" between levels: "Work/2026". No level is empty, and no name holds
  a control character or a LIST wildcard ("*", "%").
- On the wire a name is modified UTF-7 for IMAP4rev1 clients and UTF-8 once a
  client enabled UTF8=ACCEPT or IMAP4rev2; the parser decodes it and
  `responses.mailbox()` encodes it, so this module only sees Unicode.
- "INBOX" is case-insensitive (RFC 9051 §5.1) and is the inbox. It has no
  children: "INBOX/x", with INBOX in any case, is another spelling of "x",
  because customers are told to set their client's IMAP path prefix to
  "INBOX" and a client with that setting and one without must see the same
  folders. `to_store` removes that prefix on the way in; a LIST whose
  pattern starts with "INBOX/" (reference and pattern joined) lists every
  folder under that spelling, written back with the client's own prefix.
- Folders with a special use (RFC 6154: \\Sent, \\Drafts, \\Trash, \\Junk,
  \\Archive) are one each. Clients that do not read special-use attributes
  make up their own names ("Sent Items", "Gelöschte Elemente", "Spam", ...);
  those are aliases of the special-use folder (`ALIASES`, compared without
  regard to case): `resolve` turns the top level of such a name into the
  special-use folder's real name, unless a folder of exactly that name
  exists. So CREATE of an alias answers OK without making a second folder,
  and SELECT, APPEND, STATUS and COPY to it reach the one folder.

Everything here is pure: the handlers pass in what the store knows.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from postfach.model import INBOX, SpecialUse

DELIMITER = "/"
INBOX_PREFIX = INBOX + DELIMITER

# Names clients create for special uses, by use; compared case-insensitively.
ALIASES: dict[SpecialUse, tuple[str, ...]] = {
    SpecialUse.SENT: (
        "Sent", "Sent Items", "Sent Messages", "Sent Mail", "Sent-Mail", "Gesendet",
        "Gesendete Elemente", "Gesendete Objekte", "Gesendete Nachrichten", "Envoyés", "Éléments envoyés",
    ),
    SpecialUse.DRAFTS: ("Drafts", "Draft", "Entwürfe", "Entwurf", "Brouillons"),
    SpecialUse.TRASH: (
        "Trash", "Deleted Items", "Deleted Messages", "Deleted", "Bin", "Gelöschte Elemente",
        "Gelöschte Objekte", "Papierkorb", "Corbeille", "Éléments supprimés",
    ),
    SpecialUse.JUNK: ("Junk", "Junk E-Mail", "Junk E-mail", "Junk Email", "Junk-E-Mail", "Spam", "Bulk Mail", "Indésirables"),
    SpecialUse.ARCHIVE: ("Archive", "Archives", "Archiv"),
}
_ALIAS_USE: dict[str, SpecialUse] = {name.casefold(): use for use, names in ALIASES.items() for name in names}

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f*%]")


class InvalidName(ValueError):
    """A name no folder may have; the message says why, for a NO."""


def is_inbox(name: str) -> bool:
    return name.upper() == INBOX


def to_store(name: str) -> str:
    """The store's name for a name as the client sent it (decoded), without aliases resolved.

    "inbox" -> "INBOX"; "INBOX/Work" and "Inbox/Work" -> "Work"; "Work/" -> "Work"
    (RFC 9051 §6.3.4: a trailing delimiter only says the client means to make children).
    """
    if is_inbox(name):
        return INBOX
    if name[: len(INBOX_PREFIX)].upper() == INBOX_PREFIX and len(name) > len(INBOX_PREFIX):
        name = name[len(INBOX_PREFIX) :]
        if is_inbox(name):
            return INBOX
    if name.endswith(DELIMITER) and len(name) > 1:
        name = name.rstrip(DELIMITER)
    return name


def check(name: str) -> None:
    """Raise InvalidName unless `name` (a store name) may be a folder's."""
    if not name:
        raise InvalidName("the folder name is empty")
    if _FORBIDDEN.search(name):
        raise InvalidName("a folder name may not contain control characters, * or %")
    if any(not level.strip() for level in name.split(DELIMITER)):
        raise InvalidName("a folder name may not have an empty level")
    if len(name.encode("utf-8")) > 1000:
        raise InvalidName("the folder name is too long")


def alias_use(name: str) -> SpecialUse | None:
    """The special use a top-level name stands for ("Sent Items" -> \\Sent), if any."""
    return _ALIAS_USE.get(name.casefold())


def resolve(name: str, special: Mapping[SpecialUse, str], existing: Container[str]) -> str:
    """The folder a store name means: an alias at the top level becomes the special-use folder.

    `special` maps each special use to the name of the folder that has it;
    `existing` holds every folder name (a real folder wins over an alias).
    """
    if name in existing or name == INBOX:
        return name
    top, sep, rest = name.partition(DELIMITER)
    use = alias_use(top)
    if use is None or use not in special or top in existing:
        return name
    return special[use] + sep + rest


def parents(name: str) -> list[str]:
    """Every superior level of a name, outermost first: "a/b/c" -> ["a", "a/b"]."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:n]) for n in range(1, len(levels))]


def is_under(name: str, parent: str) -> bool:
    return name.startswith(parent + DELIMITER)


# ---------------------------------------------------------------- LIST patterns


@dataclass(frozen=True, slots=True)
class ListPattern:
    """A LIST pattern, reference joined (RFC 9051 §6.3.9), ready to match store names.

    `prefix` is the "INBOX/" spelling the client used (in its own case), put
    back in front of every name listed; `regex` matches the store name.
    """

    prefix: str
    regex: re.Pattern[str]
    inbox_matches: bool

    def matches(self, name: str) -> bool:
        if name == INBOX:
            return self.inbox_matches
        return self.regex.fullmatch(name) is not None

    def wire_name(self, name: str) -> str:
        return name if name == INBOX else self.prefix + name


def list_pattern(reference: str, pattern: str) -> ListPattern:
    """Join reference and pattern, and compile the result.

    "*" matches anything, "%" anything but the delimiter. Names are compared
    as they are, except INBOX, which matches in any case. "INBOX/..." lists
    the other folders under that spelling (INBOX itself is never "INBOX/INBOX").
    """
    full = reference + pattern
    prefix = ""
    if full[: len(INBOX_PREFIX)].upper() == INBOX_PREFIX:
        prefix, full = full[: len(INBOX_PREFIX)], full[len(INBOX_PREFIX) :]
    regex = _compile(full)
    inbox = not prefix and re.fullmatch(_translate(full, upper=True), INBOX) is not None
    return ListPattern(prefix, regex, inbox)


def _translate(pattern: str, upper: bool = False) -> str:
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(char.upper() if upper else char))
    return "".join(out)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern), re.DOTALL)


def percent_levels(pattern: ListPattern, names: Iterable[str]) -> set[str]:
    """Levels that exist only as the parents of `names` and that the pattern matches.

    RFC 9051 §6.3.9: "%" at the end also returns levels of hierarchy that are
    not folders themselves (listed as \\NonExistent / \\Noselect with children).
    """
    found = set()
    for name in names:
        for parent in parents(name):
            if pattern.matches(parent):
                found.add(parent)
    return found
