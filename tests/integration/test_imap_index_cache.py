"""SELECT answers from a folder index each worker process keeps in memory (store/index_cache.py);
what one worker changes, a SELECT in another shows at once, exactly as the store holds it.

Connections are put on a chosen worker with `Workers.pinned` (tests/support/workers.py).
"""

import imaplib
import signal

import pytest

from tests.support.workers import Workers


@pytest.fixture
def workers(tmp_path):
    started = Workers(tmp_path)
    yield started
    started.process.kill()


def state(client: imaplib.IMAP4, folder: str) -> tuple[int, list[bytes]]:
    """EXISTS, and every message's UID, FLAGS and MODSEQ, as a fresh EXAMINE shows them (no \\Recent)."""
    typ, data = client.select(folder, readonly=True)
    assert typ == "OK", data
    count = int(data[0])
    if not count:
        return 0, []
    typ, lines = client.fetch("1:*", "(UID FLAGS MODSEQ)")
    assert typ == "OK"
    return count, sorted(line for line in lines if isinstance(line, bytes))


def test_select_in_one_worker_shows_every_change_made_in_the_other(workers):
    first = workers.login(1)
    first.enable("CONDSTORE")
    assert state(first, "INBOX") == (0, [])  # worker 1 holds INBOX in memory from here on
    second = workers.login(2)
    second.enable("CONDSTORE")
    message = b"Subject: scale\r\n\r\nbody\r\n"
    for flags in ("()", "(\\Seen)", "(\\Flagged $Work)", "()", "()"):
        assert second.append("INBOX", flags, None, message)[0] == "OK"
    assert state(first, "INBOX") == state(second, "INBOX")

    second.select("INBOX")
    second.store("1:2", "+FLAGS", "(\\Answered)")
    second.store("3", "-FLAGS", "($Work)")
    assert state(first, "INBOX") == state(second, "INBOX")

    second.select("INBOX")
    second.store("1", "+FLAGS", "(\\Deleted)")
    second.expunge()
    second.uid("MOVE", "4", "Archive")
    second.copy("1", "Archive")
    assert state(first, "INBOX") == state(second, "INBOX")
    assert state(first, "Archive") == state(second, "Archive")

    # A folder deleted and made again under its name: new uidvalidity, nothing of the old one shown.
    first.select("Archive")
    first.unselect()
    second.delete("Archive")
    second.create("Archive")
    assert state(first, "Archive") == (0, [])
    assert second.append("Archive", "(\\Draft)", None, message)[0] == "OK"
    assert state(first, "Archive") == state(second, "Archive")
    first.logout()
    second.logout()
    assert workers.process.stop(signal.SIGTERM) == 0
