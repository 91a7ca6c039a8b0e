"""Commands about folders: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS.

Every name goes through imap/names.py: "INBOX/x" is "x", and the names
clients make up for special uses reach the special-use folder. `find` does
that lookup for every handler that takes a folder name (SELECT, APPEND,
COPY, MOVE, ...).

DELETE of a folder with children (RFC 9051 §6.3.4 leaves the choice): the
folder and its messages go, its children stay, and its name is listed as a
level that is not a folder (\\NonExistent, or \\Noselect for IMAP4rev1 LIST)
with \\HasChildren until the last child goes. DELETE of such a level is
refused with [HASCHILDREN]; CREATE makes it a folder again.
"""

from __future__ import annotations

from dataclasses import dataclass

from postfach.imap import commands as c
from postfach.imap import names
from postfach.imap import responses as r
from postfach.imap.session import Bad, Done, ImapSession, No, handles
from postfach.model import INBOX, Folder, SpecialUse, SystemFlag
from postfach.store.base import AlreadyExists, Conflict, NotFound


@dataclass(frozen=True)
class Folders:
    """The account's folders at the time of one command, for looking names up."""

    by_name: dict[str, Folder]
    special: dict[SpecialUse, str]

    def resolve(self, store_name: str) -> str:
        return names.resolve(store_name, self.special, self.by_name)

    def has_children(self, name: str) -> bool:
        return any(names.is_under(other, name) for other in self.by_name)


async def folders_of(session: ImapSession) -> Folders:
    assert session.account is not None
    listed = await session.store.list_folders(session.account.id)
    return Folders({f.name: f for f in listed}, {f.special_use: f.name for f in listed if f.special_use})


async def find(session: ImapSession, wire_name: str) -> tuple[str, Folder | None]:
    """The store name a client's name stands for, and the folder if it exists."""
    folders = await folders_of(session)
    name = folders.resolve(names.to_store(wire_name))
    return name, folders.by_name.get(name)


def mailbox_id(folder: Folder) -> str:
    """RFC 8474 §4: MAILBOXID, stable across RENAME; folder ids are never reused."""
    return f"F{folder.id}"


def _checked(wire_name: str) -> str:
    name = names.to_store(wire_name)
    try:
        names.check(name)
    except names.InvalidName as error:
        raise No(str(error), "CANNOT") from None
    return name


def _special_use(attributes: tuple[str, ...]) -> SpecialUse | None:
    if not attributes:
        return None
    by_lower = {use.value.lower(): use for use in SpecialUse}
    uses = [by_lower.get(attribute.lower()) for attribute in attributes]
    if None in uses or len(uses) > 1:
        # RFC 6154 §3: not supported (or more than one use per folder): NO [USEATTR].
        raise No("only one of \\Sent \\Drafts \\Trash \\Junk \\Archive can be given", "USEATTR")
    return uses[0]


async def _create_parents(session: ImapSession, folders: Folders, name: str) -> None:
    # RFC 9051 §6.3.4: create the superior levels a new name needs.
    assert session.account is not None
    for parent in names.parents(name):
        if parent not in folders.by_name:
            try:
                await session.store.create_folder(session.account.id, parent)
            except AlreadyExists:
                pass


@handles(c.Create)
async def create(session: ImapSession, command: c.Create) -> Done:
    assert session.account is not None
    name = _checked(command.mailbox)
    use = _special_use(command.special_use)
    if name == INBOX:
        raise No("INBOX exists already", "ALREADYEXISTS")
    folders = await folders_of(session)
    resolved = folders.resolve(name)
    if resolved in folders.by_name:
        if resolved != name and use in (None, folders.by_name[resolved].special_use):
            # A client's own name for a special-use folder: it is there already, under its name.
            return Done("CREATE completed")
        raise No(f"the folder {name} exists already", "ALREADYEXISTS")
    if use is None and names.DELIMITER not in name:
        alias = names.alias_use(name)
        if alias is not None and alias not in folders.special:
            use = alias  # the special-use folder was deleted: this one takes its place
    if use is not None and use in folders.special:
        raise No(f"the folder {folders.special[use]} is the {use.value} folder already", "USEATTR")
    await _create_parents(session, folders, name)
    try:
        await session.store.create_folder(session.account.id, name, use)
    except AlreadyExists:
        raise No(f"the folder {name} exists already", "ALREADYEXISTS") from None
    return Done("CREATE completed")


@handles(c.Delete)
async def delete(session: ImapSession, command: c.Delete) -> Done:
    name = names.to_store(command.mailbox)
    if name == INBOX:
        raise No("INBOX cannot be deleted", "CANNOT")
    folders = await folders_of(session)
    name = folders.resolve(name)
    folder = folders.by_name.get(name)
    if folder is None:
        if folders.has_children(name):
            raise No(f"{name} holds other folders; delete them first", "HASCHILDREN")
        raise No(f"there is no folder {name}", "NONEXISTENT")
    if session.selected is not None and session.selected.folder_id == folder.id:
        session.deselect()
    try:
        await session.store.delete_folder(folder.id)
    except NotFound:
        raise No(f"there is no folder {name}", "NONEXISTENT") from None
    except Conflict as error:
        raise No(str(error), "CANNOT") from None
    return Done("DELETE completed")


@handles(c.Rename)
async def rename(session: ImapSession, command: c.Rename) -> Done:
    assert session.account is not None
    old = names.to_store(command.mailbox)
    new = _checked(command.new_name)
    folders = await folders_of(session)
    new = folders.resolve(new)
    if new == INBOX or new in folders.by_name:
        raise No(f"the folder {new} exists already", "ALREADYEXISTS")
    if old == INBOX:
        # RFC 9051 §6.3.5: INBOX's messages move to the new folder; INBOX stays, empty.
        await _create_parents(session, folders, new)
        try:
            await session.store.rename_inbox(session.account.id, new)
        except AlreadyExists:
            raise No(f"the folder {new} exists already", "ALREADYEXISTS") from None
        return Done("RENAME completed")
    old = folders.resolve(old)
    folder = folders.by_name.get(old)
    if folder is None:
        raise No(f"there is no folder {old}", "NONEXISTENT")
    if names.is_under(new, old):
        raise No("a folder cannot move into itself", "CANNOT")
    await _create_parents(session, folders, new)
    try:
        renamed = await session.store.rename_folder(folder.id, new)
    except AlreadyExists:
        raise No(f"the folder {new} exists already", "ALREADYEXISTS") from None
    if session.folder is not None and session.folder.id == renamed.id:
        session.folder = renamed
    return Done("RENAME completed")


@handles(c.Subscribe, c.Unsubscribe)
async def subscribe(session: ImapSession, command: c.Subscribe | c.Unsubscribe) -> Done:
    name, folder = await find(session, command.mailbox)
    if folder is None:
        # Subscriptions are kept with the folder, so only a folder can be subscribed.
        raise No(f"there is no folder {name}", "NONEXISTENT")
    await session.store.set_subscribed(folder.id, isinstance(command, c.Subscribe))
    return Done(f"{command.NAME} completed")


# ---------------------------------------------------------------- STATUS


async def status_values(session: ImapSession, folder: Folder, items: tuple[str, ...]) -> list[tuple[str, int | str]]:
    """The STATUS items asked for, in the order asked (STATUS and LIST-STATUS)."""
    store = session.store
    wanted = set(items)
    status = await store.folder_status(folder.id)
    index = None
    if wanted & {"DELETED", "DELETED-STORAGE"}:
        index = await store.load_index(folder.id)
    values: list[tuple[str, int | str]] = []
    for item in items:
        if item == "MESSAGES":
            values.append((item, status.messages))
        elif item == "UIDNEXT":
            values.append((item, status.uidnext))
        elif item == "UIDVALIDITY":
            values.append((item, status.uidvalidity))
        elif item == "UNSEEN":
            values.append((item, status.unseen))
        elif item == "SIZE":  # RFC 8438
            values.append((item, status.size))
        elif item == "HIGHESTMODSEQ":  # RFC 7162 §3.1.6
            values.append((item, status.highestmodseq))
        elif item == "MAILBOXID":  # RFC 8474 §4.2
            values.append((item, mailbox_id(folder)))
        elif item == "APPENDLIMIT":  # RFC 7889 §4
            values.append((item, session.services.settings.append_limit))
        elif item == "RECENT":
            recent = await store.count_recent(folder.id)
            if session.selected is not None and session.selected.folder_id == folder.id:
                recent += len(session.selected.recent)
            values.append((item, recent))
        elif item == "DELETED":  # RFC 9051 §6.3.11
            assert index is not None
            deleted_bit = int(SystemFlag.DELETED)  # plain ints: an enum & per message costs 80 ms at 100k
            values.append((item, sum(1 for bits in index.system_flags if bits & deleted_bit)))
        elif item == "DELETED-STORAGE":
            # RFC 9208 §4.2.2: what an EXPUNGE would free, in the STORAGE resource's unit (1024 octets).
            assert index is not None
            deleted_bit = int(SystemFlag.DELETED)
            deleted = {uid for uid, bits in zip(index.uids, index.system_flags) if bits & deleted_bit}
            uids, sizes = await store.message_sizes(folder.id)
            values.append((item, sum(size for uid, size in zip(uids, sizes) if uid in deleted) // 1024))
    return values


@handles(c.Status)
async def status(session: ImapSession, command: c.Status) -> Done:
    name, folder = await find(session, command.mailbox)
    if folder is None:
        raise No(f"there is no folder {name}", "NONEXISTENT")
    if len(set(command.items)) != len(command.items):
        raise Bad("a status item was given twice")
    values = await status_values(session, folder, command.items)
    # Named as the client named it, so that it knows which folder this is about.
    session.send(r.status_response(command.mailbox, values, session.utf8))
    return Done("STATUS completed")
