"""The autoresponder's rules (RFC 3834, RFC 5230 §4.5/§4.6) on the pipeline and a real store."""

from datetime import date, timedelta
from email import message_from_bytes, policy

import pytest

from postfach.delivery.pipeline import DeliveryPipeline, DeliveryResult, Envelope, Trace
from postfach.delivery.vacation import Autoresponder, header_reason_not_to_reply
from postfach.model import Forwarding, Vacation
from postfach.store.sqlite import SqliteStore
from tests.support.smtp import inbox_messages

TRACE = Trace("client.example", "192.0.2.1", "ESMTP")
START, END = date(2026, 7, 1), date(2026, 7, 14)
VACATION = Vacation(START, END, "Away until the 15th", "Grüße, back on the 15th.\n")
DAY = 86400.0


def message(*fields: str, to: str = "alice@example.com") -> bytes:
    head = ["From: Bob <bob@example.com>", f"To: {to}", "Subject: question", "Message-ID: <q1@example.com>", *fields]
    return ("\r\n".join(head) + "\r\n\r\nAre you there?\r\n").encode()


class Clock:
    def __init__(self) -> None:
        self.day = START
        self.seconds = 1_800_000_000.0

    def today(self) -> date:
        return self.day

    def time(self) -> float:
        return self.seconds


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    await opened.add_domain("example.com")
    opened.alice = await opened.add_account("alice@example.com", "h", 10**7)
    opened.bob = await opened.add_account("bob@example.com", "h", 10**7)
    await opened.set_vacation("alice@example.com", VACATION)
    yield opened
    await opened.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pipeline(store, clock):
    pipeline = DeliveryPipeline(store, "mail.example.com")
    pipeline._autoresponder = Autoresponder(store, pipeline.resolver, today=clock.today, clock=clock.time)
    return pipeline


async def inbox(store, account) -> list[bytes]:
    return await inbox_messages(store, account)


async def deliver(pipeline, data: bytes, sender: str = "bob@example.com", recipient: str = "alice@example.com"):
    result = await pipeline.deliver(Envelope(sender, (recipient,)), data, TRACE)
    assert isinstance(result, DeliveryResult) and result.delivered  # the original is always filed
    return result


@pytest.mark.parametrize(
    ("sender", "fields", "reason"),
    [
        ("", (), "null sender"),
        ("MAILER-DAEMON@remote.example", (), "sender is a program"),
        ("owner-list@remote.example", (), "sender is a program"),
        ("list-request@remote.example", (), "sender is a program"),
        ("noreply@remote.example", (), "sender is a program"),
        ("no-reply@remote.example", (), "sender is a program"),
        ("bob@example.com", ("Auto-Submitted: auto-replied",), "auto-submitted"),
        ("bob@example.com", ("Auto-Submitted: Auto-Generated; owner-email=x@y",), "auto-submitted"),
        ("bob@example.com", ("List-Id: <talk.lists.example>",), "list mail"),
        ("bob@example.com", ("List-Unsubscribe: <mailto:leave@lists.example>",), "list mail"),
        ("bob@example.com", ("Precedence: bulk",), "precedence bulk"),
        ("bob@example.com", ("Precedence: List",), "precedence list"),
        ("bob@example.com", ("Precedence: junk",), "precedence junk"),
    ],
)
def test_messages_no_autoresponder_answers(sender, fields, reason):
    assert header_reason_not_to_reply(sender, message(*fields)) == reason


def test_a_person_is_answered_and_auto_submitted_no_is_a_person():
    assert header_reason_not_to_reply("bob@example.com", message()) is None
    assert header_reason_not_to_reply("bob@example.com", message("Auto-Submitted: no")) is None
    assert header_reason_not_to_reply("requester@example.com", message("Precedence: first-class")) is None


async def test_the_reply_reaches_a_local_sender_with_the_rfc_3834_fields(store, pipeline):
    await deliver(pipeline, message("References: <q0@example.com>"))
    assert len(await inbox(store, store.alice)) == 1
    [raw] = await inbox(store, store.bob)
    assert raw.startswith(b"Return-Path: <>\r\nDelivered-To: bob@example.com\r\n")
    reply = message_from_bytes(raw, policy=policy.default)
    assert reply["From"] == "alice@example.com" and reply["To"] == "bob@example.com"
    assert reply["Subject"] == "Away until the 15th"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<q1@example.com>"
    assert reply["References"] == "<q0@example.com> <q1@example.com>"
    assert reply["Message-ID"].endswith("@example.com>") and reply["Date"]
    assert reply.get_content_type() == "text/plain" and reply.get_content_charset() == "utf-8"
    assert reply["Content-Transfer-Encoding"] == "quoted-printable" and raw.isascii()  # 7 bits on any hop
    assert reply.get_content().replace("\r\n", "\n") == "Grüße, back on the 15th.\n"


@pytest.mark.parametrize(("day", "answered"), [
    (START - timedelta(days=1), False), (START, True), (END, True), (END + timedelta(days=1), False),
])
async def test_only_from_start_to_end_both_included(store, pipeline, clock, day, answered):
    clock.day = day
    await deliver(pipeline, message())
    assert len(await inbox(store, store.bob)) == int(answered)


async def test_once_per_sender_per_period_and_again_after_it_or_when_set_again(store, pipeline, clock):
    await deliver(pipeline, message())
    clock.seconds += 7 * DAY - 1
    await deliver(pipeline, message())
    assert len(await inbox(store, store.bob)) == 1
    carol = await store.add_account("carol@example.com", "h", 10**7)
    await deliver(pipeline, message(), sender="carol@example.com")  # another sender is answered
    assert len(await inbox(store, carol)) == 1
    clock.seconds += 1
    await deliver(pipeline, message())
    assert len(await inbox(store, store.bob)) == 2
    await store.set_vacation("alice@example.com", VACATION)  # set again: everybody once more
    await deliver(pipeline, message(), sender="carol@example.com")
    assert len(await inbox(store, carol)) == 2


async def test_the_rules_hold_on_the_pipeline(store, pipeline):
    for sender, data in [
        ("", message()),
        ("bob@example.com", message("List-Id: <talk.lists.example>")),
        ("bob@example.com", message("Auto-Submitted: auto-generated")),
        ("bob@example.com", message("Precedence: bulk")),
    ]:
        await deliver(pipeline, data, sender=sender)
    assert await inbox(store, store.bob) == []
    assert len(await inbox(store, store.alice)) == 4


async def test_only_when_the_account_or_an_alias_of_it_is_named(store, pipeline):
    await store.add_alias("sales@example.com", "alice@example.com")
    await store.add_alias("@example.com", "alice@example.com")
    await deliver(pipeline, message(to="team@lists.example"))  # Bcc or a list: not named
    await deliver(pipeline, message(to="whoever@example.com"), recipient="whoever@example.com")  # catch-all
    assert await inbox(store, store.bob) == []
    await deliver(pipeline, message(to="Sales <sales@example.com>"), recipient="sales@example.com")
    assert len(await inbox(store, store.bob)) == 1
    carol = await store.add_account("carol@example.com", "h", 10**7)
    await deliver(pipeline, message("Cc: ALICE@example.com", to="x@remote.example"), sender="carol@example.com")
    assert len(await inbox(store, carol)) == 1


async def test_never_to_the_account_itself_nor_without_a_vacation(store, pipeline):
    await deliver(pipeline, message(), sender="alice@example.com")
    assert len(await inbox(store, store.alice)) == 1  # the original only, no reply to oneself
    await deliver(pipeline, message(to="bob@example.com"), recipient="bob@example.com")  # bob: no vacation
    assert await inbox(store, store.alice) != [] and len(await inbox(store, store.alice)) == 1


async def test_a_forwarding_with_a_copy_answers_and_the_target_does_not(store, pipeline):
    await store.set_forwarding("alice@example.com", Forwarding(("bob@example.com",), keep_copy=True))
    await store.set_vacation("bob@example.com", VACATION)
    carol = await store.add_account("carol@example.com", "h", 10**7)
    await deliver(pipeline, message(), sender="carol@example.com")
    # Alice (named in To) answers once; Bob, reached by forwarding and not named, does not.
    assert [message_from_bytes(m)["From"] for m in await inbox(store, carol)] == ["alice@example.com"]


class Outbound:
    def __init__(self) -> None:
        self.entries: list[tuple[str, list[str]]] = []

    async def enqueue(self, sender, recipients, message) -> None:
        self.entries.append((sender, list(recipients)))


async def test_a_remote_sender_is_answered_through_the_queue_with_the_null_sender(store, clock):
    outbound = Outbound()
    pipeline = DeliveryPipeline(store, "mail.example.com", outbound=outbound)
    pipeline._autoresponder = Autoresponder(store, pipeline.resolver, today=clock.today, clock=clock.time)
    await deliver(pipeline, message(), sender="Dan@Remote.example")
    assert outbound.entries == [("", ["dan@remote.example"])]


async def test_a_reply_that_cannot_be_sent_does_not_fail_the_delivery(store, pipeline, caplog):
    # No outbound queue: the reply to a remote sender is refused; the original is filed all the same.
    await deliver(pipeline, message(), sender="dan@remote.example")
    assert len(await inbox(store, store.alice)) == 1
    assert "vacation reply of alice@example.com to <dan@remote.example> could not be delivered" in caplog.text

    async def broken(*_):
        raise RuntimeError("store on fire")

    pipeline._autoresponder.reply_for = broken
    await deliver(pipeline, message(), sender="erin@remote.example")
    assert len(await inbox(store, store.alice)) == 2
    assert "vacation reply of alice@example.com to <erin@remote.example> failed" in caplog.text


async def test_a_reply_that_could_not_be_sent_does_not_count_for_the_period(store, pipeline, clock):
    # No outbound queue: the reply to a remote sender is refused, so dan has not been answered.
    await deliver(pipeline, message(), sender="dan@remote.example")
    outbound = Outbound()
    queueing = DeliveryPipeline(store, "mail.example.com", outbound=outbound)
    queueing._autoresponder = Autoresponder(store, queueing.resolver, today=clock.today, clock=clock.time)
    clock.seconds += 60
    await deliver(queueing, message(), sender="dan@remote.example")
    assert outbound.entries == [("", ["dan@remote.example"])]
    await deliver(queueing, message(), sender="dan@remote.example")  # that one was sent: it counts
    assert len(outbound.entries) == 1
