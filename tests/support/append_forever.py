"""A writer process for the durability test: appends until killed.

Run as `python -m tests.support.append_forever DATA_DIR FOLDER_ID`; prints
"uid sha256" for every append the store has reported committed.
"""

import asyncio
import sys
from pathlib import Path

from postfach.store.sqlite import SqliteStore
from tests.support.messages import make_message

WRITERS = 20


async def main(data_dir: Path, folder_id: int) -> None:
    store = await SqliteStore.open(data_dir / "db.sqlite3", data_dir / "blobs")

    async def writer() -> None:
        while True:
            message = await store.append(folder_id, await store.store_blob(make_message(4000)))
            sys.stdout.write(f"{message.uid} {message.blob.sha256}\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
