"""The embedded store's account tables: domains, accounts, aliases, forwarding, the autoresponder."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import date

from postfach.address import display_address, display_domain, domain_of
from postfach.model import DEFAULT_FOLDERS, INBOX, Account, Alias, Domain, Forwarding, Mailbox, RecipientFacts, Vacation
from postfach.store.base import AlreadyExists, Conflict, NotFound
from postfach.store.changes import FolderDeleted
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import (
    ACCOUNT_COLUMNS,
    account_from_row,
    find_account_id,
    find_domain_id,
    insert_folder,
    timestamp,
)

_RECIPIENT_FACTS = (
    "SELECT EXISTS (SELECT 1 FROM domains WHERE name = :domain), "
    + ", ".join(f"a.{column}" for column in ACCOUNT_COLUMNS.split(", "))
    + ", f.targets, f.keep_copy, i.id, coalesce(q.level, 0), v.start_date, v.end_date, v.subject, v.body"
    " FROM (SELECT 1) LEFT JOIN accounts a ON a.address = :address"
    " LEFT JOIN forwardings f ON f.account_id = a.id"
    " LEFT JOIN folders i ON i.account_id = a.id AND i.name = :inbox"
    " LEFT JOIN quota_warnings q ON q.account_id = a.id"
    " LEFT JOIN vacations v ON v.account_id = a.id"
)


class AccountTables:
    """Part of SqliteStore (see there): what provisioning reads and writes."""

    _readers: Readers

    async def _write(self, job): ...

    def _release_folder_messages(self, tx: Tx, folder_id: int) -> None: ...

    async def add_domain(self, name: str) -> Domain:
        def job(tx: Tx) -> Domain:
            now = int(time.time())
            try:
                cursor = tx.execute("INSERT INTO domains (name, created_at) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"the domain {display_domain(name)} exists already") from None
            return Domain(cursor.lastrowid, name, timestamp(now))

        return await self._write(job)

    async def get_domain(self, name: str) -> Domain | None:
        row = await self._readers.run(
            lambda conn: conn.execute("SELECT id, name, created_at FROM domains WHERE name = ?", (name,)).fetchone()
        )
        return Domain(row[0], row[1], timestamp(row[2])) if row else None

    async def list_domains(self) -> list[Domain]:
        rows = await self._readers.run(
            lambda conn: conn.execute("SELECT id, name, created_at FROM domains ORDER BY name").fetchall()
        )
        return [Domain(row[0], row[1], timestamp(row[2])) for row in rows]

    async def remove_domain(self, name: str) -> None:
        def job(tx: Tx) -> None:
            domain_id = find_domain_id(tx.conn, name)
            mailboxes = tx.execute("SELECT count(*) FROM accounts WHERE domain_id = ?", (domain_id,)).fetchone()[0]
            if mailboxes:
                raise Conflict(
                    f"the domain {display_domain(name)} still has {mailboxes} mailbox(es); remove them first"
                )
            tx.execute("DELETE FROM aliases WHERE domain_id = ?", (domain_id,))
            tx.execute("DELETE FROM domains WHERE id = ?", (domain_id,))

        await self._write(job)

    # ------------------------------------------------------------------ accounts

    async def add_account(self, address: str, password_hash: str, quota_bytes: int) -> Account:
        def job(tx: Tx) -> Account:
            domain_id = find_domain_id(tx.conn, domain_of(address))
            if tx.execute("SELECT 1 FROM aliases WHERE source = ?", (address,)).fetchone():
                raise Conflict(f"{display_address(address)} is an alias; remove the alias first")
            now = int(time.time())
            try:
                cursor = tx.execute(
                    "INSERT INTO accounts (domain_id, address, password_hash, quota_bytes, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (domain_id, address, password_hash, quota_bytes, now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"the mailbox {display_address(address)} exists already") from None
            account_id = cursor.lastrowid
            for name, special_use in DEFAULT_FOLDERS:
                insert_folder(tx, account_id, name, special_use)
            return Account(account_id, address, domain_id, password_hash, quota_bytes, 0, True, timestamp(now))

        return await self._write(job)

    async def get_account(self, address: str) -> Account | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)
            ).fetchone()
        )
        return account_from_row(row) if row else None

    async def recipient_facts(self, address: str) -> RecipientFacts:
        """Hosted domain, account, forwarding and what filing needs (Mailbox), in one statement:
        delivery asks per recipient, and one statement is one snapshot without a transaction."""
        row = await self._readers.fetch_one(_RECIPIENT_FACTS, {"domain": domain_of(address), "address": address,
                                                               "inbox": INBOX})
        hosted = bool(row[0])
        if row[1] is None:
            return RecipientFacts(hosted, None, None)
        account = account_from_row(row[1:9])
        targets, keep_copy, inbox_id, quota_warned, start, end, subject, body = row[9:]
        vacation = Vacation(date.fromisoformat(start), date.fromisoformat(end), subject, body) if start else None
        return RecipientFacts(
            hosted,
            Mailbox(account, inbox_id, quota_warned, vacation),
            Forwarding(tuple(json.loads(targets)), bool(keep_copy)) if targets is not None else None,
        )

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
        )
        return account_from_row(row) if row else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            if domain is None:
                return conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address").fetchall()
            domain_id = find_domain_id(conn, domain)
            return conn.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE domain_id = ? ORDER BY address", (domain_id,)
            ).fetchall()

        return [account_from_row(row) for row in await self._readers.run(query)]

    async def remove_account(self, address: str) -> None:
        def job(tx: Tx) -> None:
            account_id = find_account_id(tx.conn, address)
            folders = tx.execute("SELECT id, name FROM folders WHERE account_id = ?", (account_id,)).fetchall()
            for folder_id, _ in folders:
                self._release_folder_messages(tx, folder_id)
            tx.execute("DELETE FROM aliases WHERE target = ?", (address,))
            # Login state is keyed by address, not account id, so no foreign key takes it along:
            # without this a new mailbox with the same address would start in quarantine.
            tx.execute("DELETE FROM login_failures WHERE address = ?", (address,))
            tx.execute("DELETE FROM login_quarantines WHERE address = ?", (address,))
            tx.execute("DELETE FROM app_passwords WHERE account_id = ?", (account_id,))
            tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            tx.changes.extend(FolderDeleted(account_id, folder_id, name) for folder_id, name in folders)

        await self._write(job)

    async def _update_account(self, address: str, sql: str, value: object) -> None:
        def job(tx: Tx) -> None:
            if tx.execute(sql, (value, address)).rowcount == 0:
                raise NotFound(f"there is no mailbox {display_address(address)}")

        await self._write(job)

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        await self._update_account(address, "UPDATE accounts SET password_hash = ? WHERE address = ?", password_hash)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        await self._update_account(address, "UPDATE accounts SET quota_bytes = ? WHERE address = ?", quota_bytes)

    async def set_enabled(self, address: str, enabled: bool) -> None:
        await self._update_account(address, "UPDATE accounts SET enabled = ? WHERE address = ?", int(enabled))

    # ------------------------------------------------------------------ aliases, forwarding, vacation

    async def add_alias(self, source: str, target: str) -> Alias:
        def job(tx: Tx) -> Alias:
            domain_id = find_domain_id(tx.conn, domain_of(source))
            if tx.execute("SELECT 1 FROM accounts WHERE address = ?", (source,)).fetchone():
                raise Conflict(f"{display_address(source)} is a mailbox; an alias cannot have the same address")
            try:
                tx.execute(
                    "INSERT INTO aliases (domain_id, source, target) VALUES (?, ?, ?)", (domain_id, source, target)
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"the alias {display_address(source)} -> {display_address(target)} exists already"
                ) from None
            return Alias(source, target)

        return await self._write(job)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            if domain is None:
                return conn.execute("SELECT source, target FROM aliases ORDER BY source, target").fetchall()
            return conn.execute(
                "SELECT source, target FROM aliases WHERE domain_id = ? ORDER BY source, target",
                (find_domain_id(conn, domain),),
            ).fetchall()

        return [Alias(source, target) for source, target in await self._readers.run(query)]

    async def remove_alias(self, source: str, target: str) -> None:
        def job(tx: Tx) -> None:
            if tx.execute("DELETE FROM aliases WHERE source = ? AND target = ?", (source, target)).rowcount == 0:
                raise NotFound(f"there is no alias {display_address(source)} -> {display_address(target)}")

        await self._write(job)

    async def set_forwarding(self, address: str, forwarding: Forwarding | None) -> None:
        def job(tx: Tx) -> None:
            account_id = find_account_id(tx.conn, address)
            tx.execute("DELETE FROM forwardings WHERE account_id = ?", (account_id,))
            if forwarding is not None:
                tx.execute(
                    "INSERT INTO forwardings (account_id, targets, keep_copy) VALUES (?, ?, ?)",
                    (account_id, json.dumps(list(forwarding.targets)), int(forwarding.keep_copy)),
                )

        await self._write(job)

    async def get_forwarding(self, address: str) -> Forwarding | None:
        return (await self.list_forwardings(address)).get(address)

    async def list_forwardings(self, address: str | None = None) -> dict[str, Forwarding]:
        sql = "SELECT a.address, f.targets, f.keep_copy FROM forwardings f JOIN accounts a ON a.id = f.account_id"
        params: tuple = ()
        if address is not None:
            sql += " WHERE a.address = ?"
            params = (address,)
        rows = await self._readers.run(lambda conn: conn.execute(sql, params).fetchall())
        return {row[0]: Forwarding(tuple(json.loads(row[1])), bool(row[2])) for row in rows}

    async def set_vacation(self, address: str, vacation: Vacation | None) -> None:
        def job(tx: Tx) -> None:
            account_id = find_account_id(tx.conn, address)
            tx.execute("DELETE FROM vacations WHERE account_id = ?", (account_id,))
            # Set again (or cleared): the senders answered so far get one reply more.
            tx.execute("DELETE FROM vacation_replies WHERE account_id = ?", (account_id,))
            if vacation is not None:
                tx.execute(
                    "INSERT INTO vacations (account_id, start_date, end_date, subject, body) VALUES (?, ?, ?, ?, ?)",
                    (account_id, vacation.start.isoformat(), vacation.end.isoformat(), vacation.subject, vacation.body),
                )

        await self._write(job)

    async def get_vacation(self, address: str) -> Vacation | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT v.start_date, v.end_date, v.subject, v.body FROM vacations v"
                " JOIN accounts a ON a.id = v.account_id WHERE a.address = ?",
                (address,),
            ).fetchone()
        )
        if row is None:
            return None
        return Vacation(date.fromisoformat(row[0]), date.fromisoformat(row[1]), row[2], row[3])

    async def claim_vacation_reply(self, account_id: int, sender: str, now: int, period: int) -> bool:
        def job(tx: Tx) -> bool:
            # One statement, so two deliveries at once cannot both claim the same sender.
            cursor = tx.execute(
                "INSERT INTO vacation_replies (account_id, sender, replied_at) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id, sender) DO UPDATE SET replied_at = excluded.replied_at"
                " WHERE vacation_replies.replied_at <= ?",
                (account_id, sender.lower(), now, now - period),
            )
            return cursor.rowcount == 1

        return await self._write(job)

    async def forget_vacation_reply(self, account_id: int, sender: str, replied_at: int) -> None:
        await self._write(lambda tx: tx.execute(
            "DELETE FROM vacation_replies WHERE account_id = ? AND sender = ? AND replied_at = ?",
            (account_id, sender.lower(), replied_at),
        ))
