"""The pipeline's outbound side on a real store: SRS forwarding and bounces, Delivered-To loops,
quota warnings."""

import pytest

from postfach.delivery.pipeline import DeliveryPipeline, DeliveryResult, Envelope, MessageRefusal, MessageRefused, Trace
from postfach.delivery.recipients import Local
from postfach.delivery.srs import Srs, load_secret
from postfach.model import INBOX, Forwarding
from postfach.store.sqlite import SqliteStore
from tests.support.smtp import inbox_messages

TRACE = Trace("client.example", "192.0.2.1", "ESMTP")


def message(size=0):
    return b"From: carol@c.test\r\nSubject: x\r\n\r\n" + b"x" * size + b"\r\n"


class Recorder:
    def __init__(self):
        self.entries = []

    async def enqueue(self, sender, recipients, staged):
        self.entries.append((sender, tuple(recipients)))


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    await opened.add_domain("b.test")
    yield opened
    await opened.close()


@pytest.fixture
def srs(tmp_path):
    return Srs(load_secret(tmp_path))


async def test_forwarded_mail_leaves_with_an_srs_sender_and_a_bounce_to_it_is_reversed(store, srs):
    await store.add_account("bob@b.test", "h", 10**7)
    await store.set_forwarding("bob@b.test", Forwarding(("alice@a.test",), keep_copy=False))
    outbound = Recorder()
    pipeline = DeliveryPipeline(store, "mail.b.test", outbound=outbound, srs=srs)
    result = await pipeline.deliver(Envelope("carol@c.test", ("bob@b.test",)), message(), TRACE)
    assert isinstance(result, DeliveryResult) and result.accepted
    [(sender, targets)] = outbound.entries
    assert targets == ("alice@a.test",) and sender.startswith("SRS0=") and sender.endswith("@b.test")

    verdict = await pipeline.check_recipient(sender)
    assert verdict == Local(sender.lower(), (), ("carol@c.test",))
    await pipeline.deliver(Envelope("", (sender,)), message(), TRACE)
    assert outbound.entries[-1] == ("", ("carol@c.test",))  # a bounce stays a bounce
    forged = "SRS0=AAAA=ZZ=c.test=carol@b.test"
    assert (await pipeline.check_recipient(forged)).address == forged.lower()  # refused, not reversed
    assert not isinstance(await pipeline.check_recipient(forged), Local)


async def test_srs_secret_is_made_once_and_kept(tmp_path):
    first = load_secret(tmp_path)
    assert load_secret(tmp_path) == first and len(first) > 30
    assert (tmp_path / "srs.secret").stat().st_mode & 0o777 == 0o600


async def test_delivered_to_is_added_and_a_message_that_has_it_already_is_refused(store):
    account = await store.add_account("bob@b.test", "h", 10**7)
    pipeline = DeliveryPipeline(store, "mail.b.test")
    await pipeline.deliver(Envelope("carol@c.test", ("bob@b.test",)), message(), TRACE)
    [stored] = await inbox_messages(store, account)
    assert b"\r\nDelivered-To: bob@b.test\r\n" in stored.split(b"\r\n\r\n")[0]
    again = await pipeline.deliver(Envelope("carol@c.test", ("bob@b.test",)), stored, TRACE)
    assert again == MessageRefused(MessageRefusal.ALREADY_DELIVERED)


async def test_quota_warnings_once_per_crossing_of_80_and_95_percent(store):
    quota = 100_000
    account = await store.add_account("bob@b.test", "h", quota)
    pipeline = DeliveryPipeline(store, "mail.b.test")
    folder = await store.get_folder(account.id, INBOX)

    async def deliver(size):
        await pipeline.deliver(Envelope("carol@c.test", ("bob@b.test",)), message(size), TRACE)

    def warnings(messages):
        return [m for m in messages if b"Subject: Your mailbox is" in m]

    await deliver(70_000)
    assert warnings(await inbox_messages(store, account)) == []
    await deliver(11_000)  # past 80 %
    await deliver(1_000)  # still past 80 %: no second warning
    [first] = warnings(await inbox_messages(store, account))
    assert b"Subject: Your mailbox is 80% full" in first and b"Auto-Submitted: auto-generated" in first
    await deliver(13_000)  # past 95 %
    assert len(warnings(await inbox_messages(store, account))) == 2
    # Usage falls below 80 %: the next crossing warns again.
    uids, _ = await store.message_sizes(folder.id)
    await store.expunge(folder.id, uids)
    await deliver(1_000)
    assert await store.get_quota_warning(account.id) == 0
    await deliver(80_000)
    assert len(warnings(await inbox_messages(store, account))) == 1
