"""The delivery pipeline on a real store without any door, and the reply mapping at the SMTP edge."""

from datetime import datetime, timezone

import pytest

from postfach.delivery.pipeline import (
    DeliveryPipeline,
    DeliveryResult,
    Envelope,
    MessageRefusal,
    MessageRefused,
    RecipientRefused,
    Refusal,
    Trace,
    count_hops,
    trace_fields,
)
from postfach.model import INBOX
from postfach.smtp import replies
from postfach.store.sqlite import SqliteStore

MESSAGE = b"From: a@remote.example\r\nSubject: x\r\n\r\nbody\r\n"
TRACE = Trace("client.example", "192.0.2.1", "ESMTP")


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    await opened.add_domain("example.com")
    yield opened
    await opened.close()


def test_count_hops_looks_only_at_the_header():
    header = b"Received: a\r\nDelivered-To: x@example.com\r\nreceived : b\r\nX-Received: not one\r\n"
    assert count_hops(header + b"\r\nReceived: in the body\r\n") == 3
    assert count_hops(b"\r\nReceived: body only\r\n") == 0


def test_trace_fields_name_the_peer_us_and_a_single_recipient():
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    one = trace_fields(Envelope("s@remote.example", ("r@example.com",)), TRACE, "mail.example.com", "id1", now)
    assert one == (
        b"Return-Path: <s@remote.example>\r\n"
        b"Delivered-To: r@example.com\r\n"
        b"Received: from client.example ([192.0.2.1])\r\n"
        b"\tby mail.example.com (Postfach) with ESMTP id id1\r\n"
        b"\tfor <r@example.com>;\r\n"
        b"\tThu, 02 Jan 2025 03:04:05 +0000\r\n"
    )
    two = trace_fields(Envelope("", ("a@example.com", "b@example.com")),
                       Trace("bad (helo)\r\nX: y", "::1", "ESMTPSA"), "mail.example.com", "id2", now)
    assert two.startswith(b"Return-Path: <>\r\nReceived: from bad??helo???X:?y ([IPv6:::1])\r\n")
    assert b"for <" not in two and b"with ESMTPSA" in two


async def test_one_file_for_many_mailboxes_and_a_full_one_is_refused(store):
    alice = await store.add_account("alice@example.com", "h", 10**7)
    bob = await store.add_account("bob@example.com", "h", 10**7)
    small = await store.add_account("small@example.com", "h", 100)
    pipeline = DeliveryPipeline(store, "mail.example.com")
    envelope = Envelope("s@remote.example", ("alice@example.com", "bob@example.com", "small@example.com"))
    result = await pipeline.deliver(envelope, MESSAGE, TRACE)
    assert isinstance(result, DeliveryResult) and result.accepted
    assert {d.account.id for d in result.delivered} == {alice.id, bob.id}
    assert result.refused == (RecipientRefused("small@example.com", Refusal.MAILBOX_FULL),)
    assert len({d.message.blob.sha256 for d in result.delivered}) == 1
    size = result.delivered[0].message.size
    assert all(d.used_bytes == size and d.quota_bytes == 10**7 for d in result.delivered)
    assert (await store.folder_status((await store.get_folder(small.id, INBOX)).id)).messages == 0


async def test_nobody_to_deliver_to_stores_nothing(store, tmp_path):
    pipeline = DeliveryPipeline(store, "mail.example.com")
    result = await pipeline.deliver(Envelope("s@remote.example", ("nobody@example.com",)), MESSAGE, TRACE)
    assert result.refused == (RecipientRefused("nobody@example.com", Refusal.UNKNOWN),) and not result.accepted
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")]


async def test_remote_recipients_are_refused_without_an_outbound_queue(store):
    pipeline = DeliveryPipeline(store, "mail.example.com")
    assert not pipeline.can_queue
    result = await pipeline.deliver(Envelope("s@example.com", ("x@remote.example",)), MESSAGE, TRACE)
    assert result.refused == (RecipientRefused("x@remote.example", Refusal.OUTBOUND_UNAVAILABLE),)


async def test_too_many_hops_refuses_the_message(store):
    await store.add_account("alice@example.com", "h", 10**7)
    pipeline = DeliveryPipeline(store, "mail.example.com", max_hops=2)
    looping = b"Received: a\r\nReceived: b\r\nDelivered-To: alice@example.com\r\n" + MESSAGE
    assert await pipeline.deliver(Envelope("", ("alice@example.com",)), looping, TRACE) == MessageRefused(
        MessageRefusal.TOO_MANY_HOPS
    )


@pytest.mark.parametrize("reason, reply", [
    (Refusal.UNKNOWN, "550 5.1.1 "),
    (Refusal.MAILBOX_FULL, "552 5.2.2 Mailbox full"),
    (Refusal.LOOP, "554 5.4.6 "),
    (Refusal.OUTBOUND_UNAVAILABLE, "451 4.3.0 Outbound delivery is not available yet"),
])
def test_each_refusal_has_its_reply(reason, reply):
    assert str(replies.for_recipient(RecipientRefused("x@example.com", reason))).startswith(reply)


@pytest.mark.parametrize("given, sent", [
    ("503 Error: need MAIL command", "503 5.5.1 need MAIL command"),
    ("552 Error: Too much mail data", "552 5.3.4 Too much mail data"),
    ("530 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first"),
    ("500 Line too long (see RFC5321 4.5.3.1.6)", "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("535 5.7.8 Authentication credentials invalid", "535 5.7.8 Authentication credentials invalid"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("220 Ready to start TLS", "220 Ready to start TLS"),
])
def test_aiosmtpd_replies_get_an_enhanced_code(given, sent):
    assert replies.enhance(given) == sent


def test_when_nobody_got_the_message_a_temporary_refusal_is_the_reply():
    # The sender then tries again, and the one that may take it later gets its chance.
    full = RecipientRefused("a@example.com", Refusal.MAILBOX_FULL)
    mixed = DeliveryResult("id", (), (), (full, RecipientRefused("b@remote.example", Refusal.OUTBOUND_UNAVAILABLE)))
    assert str(replies.for_delivery(mixed)).startswith("451 4.3.0 ")
    permanent = DeliveryResult("id", (), (), (full, RecipientRefused("c@example.com", Refusal.UNKNOWN)))
    assert str(replies.for_delivery(permanent)).startswith("552 5.2.2 ")


async def test_a_full_mailbox_behind_an_alias_is_refused_naming_the_alias(store):
    await store.add_account("alice@example.com", "h", 10**7)
    await store.add_account("small@example.com", "h", 100)
    await store.add_alias("team@example.com", "alice@example.com")
    await store.add_alias("team@example.com", "small@example.com")
    pipeline = DeliveryPipeline(store, "mail.example.com")
    result = await pipeline.deliver(Envelope("s@remote.example", ("team@example.com", "small@example.com")), MESSAGE,
                                    TRACE)
    assert result.accepted and [d.account.address for d in result.delivered] == ["alice@example.com"]
    assert [(r.address, r.reason, r.expanded_from) for r in result.refused] == [
        ("small@example.com", Refusal.MAILBOX_FULL, "team@example.com"),
        ("small@example.com", Refusal.MAILBOX_FULL, None),
    ]
