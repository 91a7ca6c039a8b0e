"""The embedded store's SEARCH BODY/TEXT (TransferTables.search_text): the trigram index's phrase
queries find exactly the case-insensitive substrings, as a plain `in` over the indexed text would."""

import asyncio
import contextlib
import random
import sqlite3
from importlib import resources

import pytest

from postfach.mime import ParsedMessage
from postfach.store.search_text import index_texts
from postfach.store.sqlite import SqliteStore
from postfach.store.sqlite_engine import migrate
from postfach.store.sqlite_transfers import SCAN_RATIO, _indexed_hits

WORDS = ["Köln", "STRASSE", "straße", 'say "hi"', "a*b", "[x]", "50%", "naïve", "project", "Projektplan", "x", "q?"]


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    yield opened
    await opened.close()


def message(rng: random.Random, number: int) -> bytes:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 2)))
    return (
        f"Subject: {subject} {number}\r\nFrom: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


# Other messages on the server per message of the searched folder: with few, every needle is
# looked up in the index; with many, a common word has more hits elsewhere than SCAN_RATIO times
# the folder's messages, and the folder's texts are read instead. Both must find the same.
@pytest.mark.parametrize("others_per_message", [1, 12])
async def test_search_finds_exactly_the_substrings_indexed_or_pending(store, tmp_path, others_per_message):
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "not-a-real-hash", 1 << 30)
    inbox = await store.get_folder(account.id, "INBOX")
    other = await store.get_folder(account.id, "Archive")
    rng = random.Random(7)
    texts = {}
    for number in range(40):
        data = message(rng, number)
        meta = await store.append(inbox.id, data)
        for other_number in range(others_per_message):  # another folder's hits are not ours
            await store.append(other.id, message(rng, 100 + number * others_per_message + other_number))
        texts[meta.uid] = index_texts(data, ParsedMessage.from_json(await store.get_parsed(meta.blob.sha256)))
    needles = [*WORDS, "ö", "ss", "str", "STRA", '"hi"', '"', "]", "*", "?", "ject", "projekt", "nothing here", "%"]

    def expected(needle: str, body_only: bool) -> list[int]:
        folded = needle.casefold()
        return [uid for uid, (head, body) in sorted(texts.items()) if folded in body or (not body_only and folded in head)]

    async def check() -> None:
        for needle in needles:
            for body_only in (True, False):
                assert await store.search_text(inbox.id, needle, body_only=body_only) == expected(needle, body_only), (
                    needle, body_only
                )

    await check()  # some are still pending (read one by one), some indexed
    for _ in range(500):
        if not await store.search_pending_count():
            break
        await asyncio.sleep(0.01)
    assert await store.search_pending_count() == 0
    await check()  # all from the index
    statements = []
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        conn.set_trace_callback(statements.append)
        _indexed_hits(conn, inbox.id, "pro", body_only=False)
    scanned = any("instr(" in statement for statement in statements)
    assert scanned == (others_per_message > SCAN_RATIO)


async def wait_until_indexed(store: SqliteStore) -> None:
    for _ in range(500):
        if not await store.search_pending_count():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer did not index the pending messages")


async def test_a_message_expunged_before_it_was_indexed_is_not_indexed(store, tmp_path):
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)) as conn:
        # One transaction, so the writer never sees the row pending: referenced, then not.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            "INSERT INTO blobs (sha256, size, refcount, parsed) VALUES ('gone', 1, 1, '{}');"
            "INSERT INTO search_pending (sha256) VALUES ('gone');"
            "UPDATE blobs SET refcount = 0 WHERE sha256 = 'gone';"
            "COMMIT;"
        )
        assert conn.execute("SELECT count(*) FROM search_pending").fetchone() == (0,)


async def test_a_message_appended_again_after_its_expunge_is_found(store):
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "not-a-real-hash", 1 << 30)
    inbox = await store.get_folder(account.id, "INBOX")
    data = b"Subject: draft\r\n\r\nSaved every minute\r\n"
    first = await store.append(inbox.id, data)
    await store.expunge(inbox.id, [first.uid])
    await wait_until_indexed(store)
    again = await store.append(inbox.id, data)  # the same content, its file still there
    assert await store.search_text(inbox.id, "every minute", body_only=True) == [again.uid]
    await wait_until_indexed(store)
    assert await store.search_text(inbox.id, "every minute", body_only=True) == [again.uid]


async def test_copies_moves_and_renamed_inbox_of_indexed_content_are_found_through_the_index(store, tmp_path):
    # A COPY or MOVE adds no pending entry: its new rows are found only if they name the
    # content's document (migration 011's triggers); so is INBOX's content after a RENAME.
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "not-a-real-hash", 1 << 30)
    inbox = await store.get_folder(account.id, "INBOX")
    archive = await store.get_folder(account.id, "Archive")
    kept = await store.append(inbox.id, b"Subject: offer\r\n\r\nThe quarterly figures\r\n")
    moved = await store.append(inbox.id, b"Subject: minutes\r\n\r\nThe quarterly meeting\r\n")
    await wait_until_indexed(store)
    copied = await store.copy_messages(inbox.id, [kept.uid], archive.id)
    moved_to = await store.move_messages(inbox.id, [moved.uid], archive.id)
    assert await store.search_pending_count() == 0
    assert await store.search_text(archive.id, "quarterly", body_only=True) == sorted(
        new for _, new in copied + moved_to
    )
    renamed = await store.rename_inbox(account.id, "Old mail")
    assert await store.search_text(renamed.id, "figures", body_only=True) == [1]
    again = await store.append(archive.id, b"Subject: offer\r\n\r\nThe quarterly figures\r\n")
    await wait_until_indexed(store)  # already indexed content: no new document, the row names the old one
    assert await store.search_text(archive.id, "figures", body_only=True) == [copied[0][1], again.uid]
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        assert conn.execute("SELECT count(*) FROM messages WHERE doc_id IS NULL").fetchone() == (0,)


def test_migration_11_names_the_document_of_every_indexed_message(tmp_path):
    with contextlib.closing(sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)) as conn:
        scripts = sorted(resources.files("postfach.store.sql").joinpath("sqlite").iterdir(), key=lambda e: e.name)
        for script in scripts:
            if int(script.name.split("_", 1)[0]) <= 10:
                conn.executescript(script.read_text())
        conn.execute("PRAGMA user_version = 10")
        conn.executescript(
            "INSERT INTO blobs (sha256, size, refcount, parsed) VALUES ('a', 1, 2, '{}'), ('b', 1, 1, '{}');"
            "INSERT INTO search_docs (id, sha256) VALUES (7, 'a');"  # 'b' still pending
            "INSERT INTO messages (folder_id, uid, blob_sha256, size, internal_date, internal_tz, modseq)"
            " VALUES (1, 1, 'a', 1, 0, 0, 1), (2, 1, 'a', 1, 0, 0, 1), (1, 2, 'b', 1, 0, 0, 1);"
        )
        migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 11
        assert conn.execute("SELECT folder_id, uid, doc_id FROM messages ORDER BY 1, 2").fetchall() == [
            (1, 1, 7), (1, 2, None), (2, 1, 7)
        ]
        conn.execute("INSERT INTO search_docs (id, sha256) VALUES (8, 'b')")  # the writer indexes 'b'
        assert conn.execute("SELECT doc_id FROM messages WHERE blob_sha256 = 'b'").fetchall() == [(8,)]
