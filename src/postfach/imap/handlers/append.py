"""APPEND (RFC 9051 §6.3.12, RFC 4315 APPENDUID, RFC 7889 APPENDLIMIT) and QUOTA (RFC 9208).

The server spools APPEND's message before the command runs (imap/server.py);
here it is stored durably before the OK: the bytes of a small one, written and
filed in one trip, a large one streamed from its spool file. One quota
root, "", per account: the STORAGE resource, in units of 1024 octets.
"""

from __future__ import annotations

import asyncio

from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap.handlers.mailboxes import find
from postfach.imap.session import APPEND_TOO_BIG, Bad, Done, ImapSession, No, handles
from postfach.model import SYSTEM_FLAG_NAMES, Account, Flags
from postfach.store.base import NotFound, QuotaExceeded

_SYSTEM = {name.lower() for name in SYSTEM_FLAG_NAMES.values()}
QUOTA_ROOT = ""


def _flags(names_given: tuple[str, ...]) -> Flags:
    kept = []
    for name in names_given:
        if name.startswith("\\"):
            if name.lower() == "\\recent":
                continue  # RFC 9051 §2.3.2: the server sets \Recent, never the client
            if name.lower() not in _SYSTEM:
                raise Bad(f"{name} is not a flag")
        kept.append(name)
    return Flags.from_names(kept)


@handles(c.Append)
async def append(session: ImapSession, command: c.Append) -> Done:
    assert session.account is not None
    data = session.append_data
    if data is APPEND_TOO_BIG:
        limit = session.services.settings.append_limit
        raise No(f"the message is larger than {limit} octets", "TOOBIG")
    flags = _flags(command.flags)
    # Both reads at once: one wait for the store instead of two.
    (name, folder), account = await asyncio.gather(
        find(session, command.mailbox), session.store.get_account_by_id(session.account.id)
    )
    if folder is None:
        # RFC 9051 §6.3.12: [TRYCREATE] tells the client a CREATE would help.
        raise No(f"there is no folder {name}", "TRYCREATE")
    if account is not None and account.used_bytes + command.size > account.quota_bytes:
        raise No(_full(account, command.size), "OVERQUOTA")  # before any byte is written
    content = data if data is not None else b""
    store = session.store
    view = session.selected if session.selected is not None and session.selected.folder_id == folder.id else None
    try:
        # Bytes are written and filed in one trip to the store; a large message, spooled to a
        # file, is streamed into the store first.
        message_data = content if isinstance(content, bytes) else await store.store_blob(content)
        if view is not None and session.claims_recent:
            # This session would claim the new message as \Recent as soon as it reports it:
            # in the same transaction, not a write of its own.
            message, claimed = await store.append_claiming_recent(
                folder.id, message_data, flags, command.internal_date
            )
            view.recent.update(claimed)
        else:
            message = await store.append(folder.id, message_data, flags, command.internal_date)
    except QuotaExceeded as error:
        raise No(str(error), "OVERQUOTA") from None
    except NotFound:
        raise No(f"there is no folder {name}", "TRYCREATE") from None
    if view is not None:
        # Reported as EXISTS before the OK (the store published MessagesAdded before `append`
        # returned), from the entry in hand rather than read back.
        view.adopt(message)
    return Done("APPEND completed", f"APPENDUID {folder.uidvalidity} {message.uid}")


def _full(account: Account, size: int) -> str:
    return f"the mailbox is full: {account.used_bytes} of {account.quota_bytes} bytes used, the message needs {size}"


def _quota(account: Account) -> bytes:
    used = -(-account.used_bytes // 1024)  # rounded up: never report less than is used
    limit = account.quota_bytes // 1024
    return b'* QUOTA "" (STORAGE %d %d)\r\n' % (used, limit)


async def _account(session: ImapSession) -> Account:
    assert session.account is not None
    account = await session.store.get_account_by_id(session.account.id)
    if account is None:
        raise No("the account no longer exists")
    return account


@handles(c.GetQuotaRoot)
async def getquotaroot(session: ImapSession, command: c.GetQuotaRoot) -> Done:
    name, folder = await find(session, command.mailbox)
    if folder is None:
        raise No(f"there is no folder {name}", "NONEXISTENT")
    account = await _account(session)
    session.send(b"* QUOTAROOT " + r.mailbox(command.mailbox, session.utf8) + b' ""\r\n')
    session.send(_quota(account))
    return Done("GETQUOTAROOT completed")


@handles(c.GetQuota)
async def getquota(session: ImapSession, command: c.GetQuota) -> Done:
    if command.root != QUOTA_ROOT:
        raise No(f"there is no quota root {command.root!r}; the only one is \"\"", "NONEXISTENT")
    session.send(_quota(await _account(session)))
    return Done("GETQUOTA completed")


@handles(c.SetQuota)
async def setquota(session: ImapSession, command: c.SetQuota) -> Done:
    # RFC 9208 §4.1.3: only with QUOTASET, which is not offered: the provider sets quotas.
    raise No("the quota is set by your provider", "NOPERM")

