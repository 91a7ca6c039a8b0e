"""LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE) and LSUB.

Every LIST answer carries \\HasChildren or \\HasNoChildren (RFC 3348, part of
IMAP4rev2) and the special-use attribute of a folder that has one. A level
that is only the parent of other folders (see handlers/mailboxes.py on
DELETE) is listed as \\NonExistent to IMAP4rev2 clients and in extended
LIST, as \\Noselect to IMAP4rev1 clients in a plain LIST.
"""

from __future__ import annotations

from postfach.imap import commands as c
from postfach.imap import names
from postfach.imap import responses as r
from postfach.imap.handlers.mailboxes import folders_of, status_values
from postfach.imap.session import Bad, Done, ImapSession, handles
from postfach.model import INBOX, Folder


def _order(name: str) -> tuple[bool, str]:
    return (name != INBOX, name)


@handles(c.List)
async def list_(session: ImapSession, command: c.List) -> Done:
    selection = set(command.select_options)
    returns = set(command.return_options)
    if "MYRIGHTS" in returns:
        raise Bad("MYRIGHTS needs ACL, which this server does not offer")
    # RFC 5258 §3.1: RECURSIVEMATCH alone (REMOTE adds no criterion) is an error.
    if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
        raise Bad("RECURSIVEMATCH needs another selection option")
    if command.status_items is not None and len(set(command.status_items)) != len(command.status_items):
        raise Bad("a status item was given twice")
    if not command.extended and command.patterns == ("",):
        # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
        session.send(r.list_response(["\\Noselect"], names.DELIMITER, "", session.utf8))
        return Done("LIST completed")

    subscribed_selected = "SUBSCRIBED" in selection
    special_selected = "SPECIAL-USE" in selection
    recursive = "RECURSIVEMATCH" in selection
    criteria = selection - {"RECURSIVEMATCH", "REMOTE"}  # REMOTE: there are no remote folders here
    # RFC 5258 §3.1: the SUBSCRIBED selection option implies the SUBSCRIBED return option.
    show_subscribed = subscribed_selected or "SUBSCRIBED" in returns
    nonexistent = "\\NonExistent" if command.extended or session.rev2 else "\\Noselect"

    folders = await folders_of(session)
    real = folders.by_name
    levels = {parent for name in real for parent in names.parents(name)} - set(real)
    candidates = sorted(set(real) | levels, key=_order)

    def selected(name: str) -> bool:
        folder = real.get(name)
        if folder is None:
            return False
        if subscribed_selected and not folder.subscribed:
            return False
        return not (special_selected and folder.special_use is None)

    sent: set[str] = set()
    for pattern_text in command.patterns:
        if not pattern_text:
            continue
        pattern = names.list_pattern(command.reference, pattern_text)
        for name in candidates:
            if not pattern.matches(name):
                continue
            wire = pattern.wire_name(name)
            if wire in sent:
                continue
            folder = real.get(name)
            child_info: list[object] = []  # RFC 5258 §9: ("CHILDINFO" ("SUBSCRIBED")), as strings
            if criteria and not selected(name):
                # RFC 5258 §3.5: a parent that only has matching descendants, with CHILDINFO.
                if not (recursive and subscribed_selected and _subscribed_below(name, real)):
                    continue
                child_info = ["CHILDINFO", ["SUBSCRIBED"]]
            sent.add(wire)
            attributes = _attributes(folder, folders.has_children(name), nonexistent, show_subscribed)
            session.send(r.list_response(attributes, names.DELIMITER, wire, session.utf8, extended=child_info))
            if command.status_items is not None and folder is not None:
                # RFC 5819 §2: STATUS after the LIST of each selectable folder.
                values = await status_values(session, folder, command.status_items)
                session.send(r.status_response(wire, values, session.utf8))
    return Done("LIST completed")


def _subscribed_below(name: str, real: dict[str, Folder]) -> bool:
    return any(folder.subscribed for other, folder in real.items() if names.is_under(other, name))


def _attributes(folder: Folder | None, has_children: bool, nonexistent: str, show_subscribed: bool) -> list[str]:
    attributes = []
    if folder is None:
        attributes.append(nonexistent)
    attributes.append("\\HasChildren" if has_children else "\\HasNoChildren")
    if folder is not None and folder.special_use is not None:
        attributes.append(folder.special_use.value)
    if show_subscribed and folder is not None and folder.subscribed:
        attributes.append("\\Subscribed")
    return attributes


@handles(c.Lsub)
async def lsub(session: ImapSession, command: c.Lsub) -> Done:
    # RFC 3501 §6.3.9: subscribed names; a level above a subscribed name matched by "%"
    # is listed with \Noselect when it is not subscribed itself.
    if command.pattern == "":
        session.send(r.list_response(["\\Noselect"], names.DELIMITER, "", session.utf8, command="LSUB"))
        return Done("LSUB completed")
    folders = await folders_of(session)
    subscribed = {name for name, folder in folders.by_name.items() if folder.subscribed}
    pattern = names.list_pattern(command.reference, command.pattern)
    shown: dict[str, list[str]] = {}
    for name in subscribed:
        if pattern.matches(name):
            shown[name] = []
    if command.pattern.endswith("%"):
        for level in names.percent_levels(pattern, subscribed):
            shown.setdefault(level, ["\\Noselect"])
    for name in sorted(shown, key=_order):
        session.send(r.list_response(shown[name], names.DELIMITER, pattern.wire_name(name), session.utf8, command="LSUB"))
    return Done("LSUB completed")
