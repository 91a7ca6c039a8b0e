"""The embedded store's login security tables: app passwords, quarantine, bans, the audit.

The quarantine rule runs inside one write job, so two doors (or two processes)
failing at the same moment count both failures and agree on the result.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone

from postfach.address import display_address
from postfach.model import (
    AppPassword,
    CredentialKey,
    FailureOutcome,
    LoginAttempt,
    Quarantine,
    QuarantineRule,
    SourceBan,
    SourceRecord,
)
from postfach.store.base import AlreadyExists, NotFound
from postfach.store.sqlite_engine import Readers, Tx
from postfach.store.sqlite_rows import find_account_id, timestamp

_APP_COLUMNS = (
    "id, account_id, name, lookup, password_hash, created_at, last_used_at, last_used_from, last_used_protocol"
)
_KEY = "address = ? AND credential = ? AND source = ?"
AUDIT_PRUNE_SLICE = 2000  # audit rows deleted per write job: about 10 ms of the writer's time


def _moment(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _app_password(row: tuple) -> AppPassword:
    return AppPassword(row[0], row[1], row[2], row[3], row[4], timestamp(row[5]), _moment(row[6]), row[7], row[8])


def _key(key: CredentialKey) -> tuple[str, str, str]:
    return (key.address, key.credential, key.source)


class SecurityTables:
    """Part of SqliteStore (see there)."""

    _readers: Readers

    async def _write(self, job): ...

    # ------------------------------------------------------------------ app passwords

    async def add_app_password(self, address: str, name: str, lookup: str, password_hash: str) -> AppPassword:
        def job(tx: Tx) -> AppPassword:
            account_id = find_account_id(tx.conn, address)
            if tx.execute("SELECT 1 FROM app_passwords WHERE account_id = ? AND name = ?", (account_id, name)).fetchone():
                raise AlreadyExists(f"{display_address(address)} has an app password named {name} already")
            try:
                row = tx.execute(
                    "INSERT INTO app_passwords (account_id, name, lookup, password_hash, created_at)"
                    f" VALUES (?, ?, ?, ?, ?) RETURNING {_APP_COLUMNS}",
                    (account_id, name, lookup, password_hash, int(time.time())),
                ).fetchone()
            except sqlite3.IntegrityError:
                raise AlreadyExists("an app password with that lookup exists already; generate another") from None
            return _app_password(row)

        return await self._write(job)

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        def query(conn: sqlite3.Connection) -> list[tuple]:
            account_id = find_account_id(conn, address)
            return conn.execute(
                f"SELECT {_APP_COLUMNS} FROM app_passwords WHERE account_id = ? ORDER BY name", (account_id,)
            ).fetchall()

        return [_app_password(row) for row in await self._readers.run(query)]

    async def find_app_password(self, account_id: int, lookup: str) -> AppPassword | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT {_APP_COLUMNS} FROM app_passwords WHERE account_id = ? AND lookup = ?", (account_id, lookup)
            ).fetchone()
        )
        return _app_password(row) if row else None

    async def remove_app_password(self, address: str, name: str) -> None:
        def job(tx: Tx) -> None:
            account_id = find_account_id(tx.conn, address)
            if tx.execute("DELETE FROM app_passwords WHERE account_id = ? AND name = ?", (account_id, name)).rowcount == 0:
                raise NotFound(f"{display_address(address)} has no app password named {name}")

        await self._write(job)

    async def note_app_password_use(
        self, app_password_id: int, at: float, source: str, protocol: str, password_hash: str | None = None
    ) -> None:
        def job(tx: Tx) -> None:
            tx.execute(
                "UPDATE app_passwords SET last_used_at = ?, last_used_from = ?, last_used_protocol = ?,"
                " password_hash = coalesce(?, password_hash) WHERE id = ?",
                (at, source, protocol, password_hash, app_password_id),
            )

        await self._write(job)

    # ------------------------------------------------------------------ quarantine

    async def record_login_failure(
        self, key: CredentialKey, source: str, password_mac: str, at: float, rule: QuarantineRule | None
    ) -> FailureOutcome:
        def job(tx: Tx) -> FailureOutcome:
            state = tx.execute(
                f"SELECT epoch_start, since, until, failures FROM login_quarantines WHERE {_KEY}", _key(key)
            ).fetchone()
            epoch, since, until, failures = state if state else (0.0, None, None, 0)
            if until is not None and until <= at:
                # The quarantine is over: what came before it no longer counts.
                epoch, since, until, failures = until, None, None, 0
            seen = tx.execute(
                "SELECT at FROM login_failures WHERE address = ? AND credential = ? AND source = ?"
                " AND password_mac = ?",
                (key.address, key.credential, source, password_mac),
            ).fetchone()
            # The same wrong password from the same source counts once per epoch (an old
            # phone retrying a stale password); its row keeps the latest try.
            counted = seen is None or seen[0] <= epoch
            tx.execute(
                "INSERT INTO login_failures (source, address, credential, password_mac, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET at = excluded.at",
                (source, key.address, key.credential, password_mac, at),
            )
            if rule is None:
                return FailureOutcome(counted, None)
            started = extended = False
            if until is not None:
                if counted:  # a new wrong password during quarantine starts it again
                    until, failures, extended = at + rule.seconds, failures + 1, True
            else:
                sources = "" if not key.source else " AND source = ?"
                count = tx.execute(
                    f"SELECT count(*) FROM login_failures WHERE address = ? AND credential = ?{sources} AND at > ?",
                    (key.address, key.credential, *((key.source,) if key.source else ()), max(epoch, at - rule.window)),
                ).fetchone()[0]
                if count >= rule.failures:
                    since, until, failures, started = at, at + rule.seconds, count, True
            tx.execute(
                "INSERT INTO login_quarantines (address, credential, source, epoch_start, since, until, failures)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET epoch_start = excluded.epoch_start,"
                " since = excluded.since, until = excluded.until, failures = excluded.failures",
                (*_key(key), epoch, since, until, failures),
            )
            return FailureOutcome(counted, until, started, extended)

        return await self._write(job)

    async def record_login_success(self, key: CredentialKey, at: float) -> None:
        """A good login: earlier wrong passwords of this credential no longer count."""

        def job(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO login_quarantines (address, credential, source, epoch_start) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET epoch_start = excluded.epoch_start, since = NULL, until = NULL,"
                " failures = 0",
                (*_key(key), at),
            )

        await self._write(job)

    async def quarantined_until(self, key: CredentialKey, at: float) -> float | None:
        row = await self._readers.run(
            lambda conn: conn.execute(
                f"SELECT until FROM login_quarantines WHERE {_KEY} AND until > ?", (*_key(key), at)
            ).fetchone()
        )
        return row[0] if row else None

    async def list_quarantines(self, at: float, address: str | None = None) -> list[Quarantine]:
        where, params = ("AND address = ?", (at, address)) if address else ("", (at,))
        rows = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT address, credential, source, since, until, failures FROM login_quarantines"
                f" WHERE until > ? {where} ORDER BY address, credential, source",
                params,
            ).fetchall()
        )
        return [Quarantine(CredentialKey(r[0], r[1], r[2]), _moment(r[3]), _moment(r[4]), r[5]) for r in rows]

    async def release_quarantines(self, address: str, at: float) -> int:
        """End every quarantine of the account now; returns how many there were."""

        def job(tx: Tx) -> int:
            return tx.execute(
                "UPDATE login_quarantines SET epoch_start = ?, since = NULL, until = NULL, failures = 0"
                " WHERE address = ? AND until > ?",
                (at, address, at),
            ).rowcount

        return await self._write(job)

    # ------------------------------------------------------------------ source addresses

    async def source_record(self, source: str, at: float, window: float) -> SourceRecord:
        def query(conn: sqlite3.Connection) -> SourceRecord:
            failures, accounts, last = conn.execute(
                "SELECT count(*), count(DISTINCT address), max(at) FROM login_failures WHERE source = ? AND at >= ?",
                (source, at - window),
            ).fetchone()
            ban = conn.execute("SELECT until FROM login_bans WHERE source = ? AND until > ?", (source, at)).fetchone()
            return SourceRecord(failures, accounts, last, ban[0] if ban else None)

        return await self._readers.run(query)

    async def ban_source(self, source: str, at: float, until: float, accounts: int) -> None:
        def job(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO login_bans (source, since, until, accounts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET since = excluded.since, until = excluded.until,"
                " accounts = excluded.accounts",
                (source, at, until, accounts),
            )

        await self._write(job)

    async def list_bans(self, at: float) -> list[SourceBan]:
        rows = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT source, since, until, accounts FROM login_bans WHERE until > ? ORDER BY source", (at,)
            ).fetchall()
        )
        return [SourceBan(r[0], _moment(r[1]), _moment(r[2]), r[3]) for r in rows]

    async def release_ban(self, source: str, at: float) -> bool:
        """Lift a ban; the address's failures so far no longer count towards throttling."""

        def job(tx: Tx) -> bool:
            tx.execute("DELETE FROM login_failures WHERE source = ? AND at <= ?", (source, at))
            return tx.execute("DELETE FROM login_bans WHERE source = ? AND until > ?", (source, at)).rowcount > 0

        return await self._write(job)

    async def prune_login_failures(self, before: float) -> int:
        """Forget wrong passwords older than `before` (they count for nothing any more)."""

        def job(tx: Tx) -> int:
            tx.execute("DELETE FROM login_bans WHERE until < ?", (before,))
            return tx.execute("DELETE FROM login_failures WHERE at < ?", (before,)).rowcount

        return await self._write(job)

    # ------------------------------------------------------------------ the audit

    async def add_login_attempt(self, attempt: LoginAttempt) -> None:
        def job(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO login_audit (at, address, credential, source, protocol, result, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (attempt.at.timestamp(), attempt.address, attempt.credential, attempt.source, attempt.protocol,
                 attempt.result, attempt.reason),
            )

        await self._write(job)

    async def prune_login_attempts(self, before: float) -> int:
        """Delete attempts older than `before`, a slice per write job: a first prune of a large
        audit must not hold the writer (and every delivery waiting on it) for seconds."""
        removed = 0
        while True:
            count = await self._write(
                lambda tx: tx.execute(
                    "DELETE FROM login_audit WHERE id IN (SELECT id FROM login_audit WHERE at < ? LIMIT ?)",
                    (before, AUDIT_PRUNE_SLICE),
                ).rowcount
            )
            removed += count
            if count < AUDIT_PRUNE_SLICE:
                return removed

    async def list_login_attempts(self, address: str | None = None, limit: int = 50) -> list[LoginAttempt]:
        where, params = ("WHERE address = ?", (address, limit)) if address else ("", (limit,))
        rows = await self._readers.run(
            lambda conn: conn.execute(
                "SELECT at, address, credential, source, protocol, result, reason FROM login_audit"
                f" {where} ORDER BY id DESC LIMIT ?",
                params,
            ).fetchall()
        )
        return [LoginAttempt(_moment(r[0]), *r[1:]) for r in rows]
