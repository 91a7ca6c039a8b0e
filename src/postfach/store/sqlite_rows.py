"""Rows of the embedded store's tables, to and from the model, and lookups shared by its parts."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from postfach.address import display_address, display_domain
from postfach.model import (
    Account,
    BlobRef,
    Flags,
    Folder,
    MessageMeta,
    SpecialUse,
    SystemFlag,
)
from postfach.store.base import AlreadyExists, NotFound
from postfach.store.changes import FolderCreated
from postfach.store.sqlite_engine import Tx

IN_CHUNK = 500  # SQLite's default limit on bound parameters is far above this


def chunked(values: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def marks(values: list) -> str:
    return ",".join("?" * len(values))


def timestamp(value: int) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


def keywords_text(keywords: frozenset[str]) -> str | None:
    return " ".join(sorted(keywords)) or None


# Rows share a few flag combinations and zones; a Flags and a timezone are immutable, so each
# is built once (SystemFlag(n) and timezone() were most of the cost of reading an entry).
@functools.lru_cache(maxsize=1024)
def flags_from_columns(system: int, keywords: str | None) -> Flags:
    return Flags(SystemFlag(system), frozenset(keywords.split()) if keywords else frozenset())


@functools.lru_cache(maxsize=256)
def _zone(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


ACCOUNT_COLUMNS = "id, address, domain_id, password_hash, quota_bytes, used_bytes, enabled, created_at"
FOLDER_COLUMNS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed"
MESSAGE_COLUMNS = "folder_id, uid, blob_sha256, size, internal_date, internal_tz, flags, keywords, modseq"


def account_from_row(row: tuple) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), timestamp(row[7]))


def folder_from_row(row: tuple) -> Folder:
    special_use = SpecialUse(row[6]) if row[6] else None
    return Folder(row[0], row[1], row[2], row[3], row[4], row[5], special_use, bool(row[7]))


def message_from_row(row: tuple) -> MessageMeta:
    zone = _zone(row[5])
    return MessageMeta(
        folder_id=row[0],
        uid=row[1],
        blob=BlobRef(row[2], row[3]),
        flags=flags_from_columns(row[6], row[7]),
        internal_date=datetime.fromtimestamp(row[4], zone),
        modseq=row[8],
    )


def insert_folder(tx: Tx, account_id: int, name: str, special_use: SpecialUse | None) -> Folder:
    uidvalidity = tx.execute(
        "UPDATE accounts SET last_uidvalidity = max(last_uidvalidity + 1, unixepoch()) WHERE id = ?"
        " RETURNING last_uidvalidity",
        (account_id,),
    ).fetchone()
    if uidvalidity is None:
        raise NotFound("the account does not exist")
    try:
        cursor = tx.execute(
            "INSERT INTO folders (account_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
            (account_id, name, uidvalidity[0], special_use.value if special_use else None),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"a folder {name} exists already") from None
    tx.changes.append(FolderCreated(account_id, cursor.lastrowid, name))
    return Folder(cursor.lastrowid, account_id, name, uidvalidity[0], 1, 1, special_use, True)


def find_domain_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"the domain {display_domain(name)} is not hosted here")
    return row[0]


def find_account_id(conn: sqlite3.Connection, address: str) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        raise NotFound(f"there is no mailbox {display_address(address)}")
    return row[0]


def find_folder(conn: sqlite3.Connection, folder_id: int) -> Folder:
    row = conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)).fetchone()
    if row is None:
        raise NotFound("the folder does not exist")
    return folder_from_row(row)
