"""The embedded store's SEARCH BODY/TEXT (TransferTables.search_text): the trigram index's phrase
queries find exactly the case-insensitive substrings, as a plain `in` over the indexed text would."""

import asyncio
import random

import pytest

from postfach.mime import ParsedMessage
from postfach.store.search_text import index_texts
from postfach.store.sqlite import SqliteStore

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


async def test_search_finds_exactly_the_substrings_indexed_or_pending(store):
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "not-a-real-hash", 1 << 30)
    inbox = await store.get_folder(account.id, "INBOX")
    other = await store.get_folder(account.id, "Archive")
    rng = random.Random(7)
    texts = {}
    for number in range(40):
        data = message(rng, number)
        meta = await store.append(inbox.id, data)
        await store.append(other.id, message(rng, 100 + number))  # another folder's hits are not ours
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
