"""A look into the embedded store's database, to prove that a refused command changed nothing."""

import sqlite3
from pathlib import Path

TABLES = (
    "domains", "accounts", "aliases", "forwardings", "vacations", "folders", "messages", "blobs",
    "queue_messages", "queue_recipients", "login_audit",
)


def snapshot(db_path: Path) -> dict[str, list[tuple]]:
    if not db_path.exists():
        return {}
    with sqlite3.connect(db_path) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall()) for table in TABLES}
