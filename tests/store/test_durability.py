"""Nothing acknowledged is lost: a writer killed with SIGKILL mid-append loses no reported append."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from postfach.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]


async def test_appends_reported_committed_survive_sigkill(tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "h", 1 << 40)
    inbox = await store.get_folder(account.id, "INBOX")
    await store.close()

    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.support.append_forever", str(tmp_path), str(inbox.id)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    reported = []
    try:
        for line in writer.stdout:
            reported.append(line.split())
            if len(reported) >= 400:
                break
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    # What it printed after our last read is committed too; read it all.
    reported += [line.split() for line in writer.stdout.read().splitlines() if len(line.split()) == 2]
    assert len(reported) >= 400

    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    store = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    try:
        index = await store.load_index(inbox.id)
        stored = {message.uid: message.blob.sha256 for message in await store.get_messages(inbox.id, index.uids)}
        for uid, sha256 in reported:
            assert stored.get(int(uid)) == sha256
            assert hashlib.sha256(await store.read_blob(sha256)).hexdigest() == sha256
        status = await store.folder_status(inbox.id)
        assert (await store.get_account("alice@example.com")).used_bytes == status.size
        # The store still takes writes after the crash.
        assert (await store.append(inbox.id, await store.store_blob(b"Subject: after\r\n\r\nx\r\n"))).uid > max(
            int(uid) for uid, _ in reported
        )
    finally:
        await store.close()
