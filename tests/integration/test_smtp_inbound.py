"""The MX (listener `smtp`) with smtplib and raw sockets against an in-process server."""

import asyncio
from datetime import date
from email import message_from_bytes, policy

import pytest

from postfach.auth.passwords import Passwords
from postfach.config import load_config
from postfach.model import Forwarding, Vacation
from postfach.server import Server
from postfach.store.changes import MessagesAdded
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.smtp import (
    PASSWORD,
    RawSession,
    below_trace,
    inbox_messages,
    inbox_metas,
    run,
    smtp_client,
)
from tests.support.tls import insecure_context

HASH = Passwords().hash(PASSWORD)
QUOTA = 50 * 1024 * 1024
MESSAGE = b"From: Sender <sender@remote.example>\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nHello Alice.\r\n"


async def start(tmp_path, extra: str = ""):
    config = load_config(write_config(tmp_path, listeners=("smtp",), extra=extra), environ={})
    return running_server(config)


@pytest.fixture
async def mx(tmp_path):
    async with await start(tmp_path) as server:
        await server.store.add_domain("example.com")
        server.alice = await server.store.add_account("alice@example.com", HASH, QUOTA)
        server.bob = await server.store.add_account("bob@example.com", HASH, QUOTA)
        yield server


def send(server, sender, recipients, message, **options):
    with smtp_client(server.addresses["smtp"]) as client:
        return client.sendmail(sender, recipients, message, **options)


def blob_files(server) -> list:
    return [path for path in server.config.blob_dir.rglob("*") if path.is_file() and not path.name.startswith(".")]


async def test_ehlo_lists_the_extensions_and_no_auth(mx):
    def ehlo():
        with smtp_client(mx.addresses["smtp"]) as client:
            before = dict(client.esmtp_features)
            client.starttls(context=insecure_context())
            client.ehlo("client.example")
            return before, dict(client.esmtp_features), client.docmd("AUTH", "PLAIN")

    before, after, auth = await run(ehlo)
    for extension in ("pipeline", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls"):
        assert extension.replace("pipeline", "pipelining") in before
    assert before["size"] == str(50 * 1024 * 1024)
    assert "auth" not in before and "auth" not in after and "starttls" not in after
    assert auth[0] == 502


async def test_mail_to_a_mailbox_lands_byte_exact_below_the_trace_fields(mx):
    await run(send, mx, "sender@remote.example", ["alice@example.com"], MESSAGE)
    [stored] = await inbox_messages(mx.store, mx.alice)
    assert below_trace(stored) == MESSAGE
    header = stored[: len(stored) - len(MESSAGE)].decode()
    assert header.startswith(
        "Return-Path: <sender@remote.example>\r\nDelivered-To: alice@example.com\r\n"
        "Authentication-Results: mail.example.com;\r\n"
    )
    assert "\r\nReceived: from client.example ([127.0.0.1])\r\n" in header
    assert "by mail.example.com (Postfach) with ESMTP id " in header
    assert "for <alice@example.com>;" in header
    assert await inbox_messages(mx.store, mx.bob) == []


async def test_received_says_esmtps_after_starttls_and_null_sender_is_accepted(mx):
    def deliver():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.starttls(context=insecure_context())
            client.ehlo("client.example")
            return client.sendmail("<>", ["alice@example.com"], MESSAGE)

    assert await run(deliver) == {}
    [stored] = await inbox_messages(mx.store, mx.alice)
    assert stored.startswith(b"Return-Path: <>\r\n")
    assert b" with ESMTPS id " in stored


async def test_alias_and_catch_all_deliver_and_the_catch_all_takes_only_the_rest(mx):
    await mx.store.add_alias("sales@example.com", "alice@example.com")
    await mx.store.add_alias("@example.com", "bob@example.com")
    await run(send, mx, "x@remote.example", ["sales@example.com"], MESSAGE)
    await run(send, mx, "x@remote.example", ["whoever@example.com"], MESSAGE)
    await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE)
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [MESSAGE, MESSAGE]
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.bob)] == [MESSAGE]


async def test_forwarding_to_a_local_address_with_and_without_a_copy(mx):
    await mx.store.set_forwarding("alice@example.com", Forwarding(("bob@example.com",), keep_copy=False))
    await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE)
    assert len(await inbox_messages(mx.store, mx.alice)) == 0
    assert len(await inbox_messages(mx.store, mx.bob)) == 1
    await mx.store.set_forwarding("alice@example.com", Forwarding(("bob@example.com",), keep_copy=True))
    await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE)
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    assert len(await inbox_messages(mx.store, mx.bob)) == 2


async def test_forwarding_to_a_remote_address_is_queued_with_an_srs_sender(mx):
    await mx.store.set_forwarding("alice@example.com", Forwarding(("alice@elsewhere.example",), keep_copy=True))
    await mx.queue.stop()  # keep the entry in the queue: nothing to send it to here
    await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE)
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    [entry] = await mx.store.list_queue()
    assert entry.pending == ("alice@elsewhere.example",)
    assert entry.sender.startswith("SRS0=") and entry.sender.endswith("=remote.example=x@example.com")


async def test_fifty_local_recipients_share_one_message_file(mx):
    accounts = [await mx.store.add_account(f"user{n}@example.com", HASH, QUOTA) for n in range(50)]
    refused = await run(send, mx, "x@remote.example", [a.address for a in accounts], MESSAGE)
    assert refused == {}
    metas = [await inbox_metas(mx.store, account) for account in accounts]
    assert all(len(m) == 1 for m in metas)
    assert len({m[0].blob.sha256 for m in metas}) == 1
    assert len(blob_files(mx)) == 1
    stored = await mx.store.read_blob(metas[0][0].blob.sha256)
    assert b"\tfor <" not in stored  # RFC 5321 §7.2: no recipient named when there are several


async def test_unknown_user_is_refused_at_rcpt(mx):
    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("x@remote.example")
            return client.rcpt("nobody@example.com"), client.rcpt("alice@example.com")

    unknown, known = await run(dialog)
    assert unknown == (550, b"5.1.1 No such user here")
    assert known[0] == 250


@pytest.mark.parametrize("sender", ["x@remote.example", "alice@example.com", "<>"])
async def test_relaying_is_refused_whatever_the_sender(mx, sender):
    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail(sender)
            return client.rcpt("someone@gmail.example")

    code, text = await run(dialog)
    assert code == 554 and text.startswith(b"5.7.1 Relay access denied")
    assert blob_files(mx) == []


async def test_size_is_advertised_and_enforced(tmp_path):
    async with await start(tmp_path, extra="[smtp]\nmax_message_size = 4096\n") as server:
        await server.store.add_domain("example.com")
        alice = await server.store.add_account("alice@example.com", HASH, QUOTA)
        big = MESSAGE + (b"y" * 76 + b"\r\n") * 60

        def dialog():
            with smtp_client(server.addresses["smtp"]) as client:
                advertised = client.esmtp_features["size"]
                declared = client.mail("x@remote.example", ["SIZE=%d" % len(big)])
                client.rset()
                # Undeclared: refused after DATA, once aiosmtpd has counted the bytes.
                client.mail("x@remote.example")
                client.rcpt("alice@example.com")
                # Undeclared: refused after DATA, once aiosmtpd has counted the bytes.
                return advertised, declared, client.data(big)

        advertised, declared, undeclared = await run(dialog)
        assert advertised == "4096"
        assert declared[0] == 552 and declared[1].startswith(b"5.3.4 ")
        assert undeclared[0] == 552 and undeclared[1].startswith(b"5.3.4 ")
        assert await inbox_messages(server.store, alice) == []


async def test_a_full_mailbox_refuses_only_its_recipient(mx):
    carol = await mx.store.add_account("carol@example.com", HASH, 5000)
    inbox = await mx.store.get_folder(carol.id, "INBOX")
    await mx.store.append(inbox.id, MESSAGE + b"x" * 5000, enforce_quota=False)  # over quota now
    refused = await run(send, mx, "x@remote.example", ["alice@example.com", "carol@example.com", "bob@example.com"],
                        MESSAGE)
    assert refused == {"carol@example.com": (552, b"5.2.2 Mailbox full: the recipient's quota has no room for this message")}
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    assert len(await inbox_messages(mx.store, mx.bob)) == 1
    assert len(await inbox_messages(mx.store, carol)) == 1  # the one that filled it


async def test_a_declared_size_that_would_overflow_the_mailbox_is_refused_at_rcpt(mx):
    await mx.store.add_account("carol@example.com", HASH, 5000)

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("x@remote.example", ["SIZE=6000"])
            return client.rcpt("carol@example.com"), client.rcpt("alice@example.com")

    carol_reply, alice_reply = await run(dialog)
    assert carol_reply[0] == 552 and carol_reply[1].startswith(b"5.2.2 ")
    assert alice_reply[0] == 250


async def test_a_message_that_would_overflow_the_mailbox_is_refused_after_data_without_size(mx):
    # The sender declares no SIZE, so only the message itself shows it does not fit.
    carol = await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("x@remote.example")
            return client.rcpt("carol@example.com"), client.data(MESSAGE)

    rcpt, data = await run(dialog)
    assert rcpt[0] == 250
    assert data[0] == 552 and data[1].startswith(b"5.2.2 ")
    assert await inbox_messages(mx.store, carol) == []
    assert blob_files(mx) == []


async def test_the_change_event_reaches_a_store_subscriber(mx):
    seen = []
    subscription = mx.store.events.subscribe(mx.alice.id, seen.append)
    try:
        await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE)
    finally:
        subscription.close()
    inbox = await mx.store.get_folder(mx.alice.id, "INBOX")
    [meta] = await inbox_metas(mx.store, mx.alice)
    assert seen == [MessagesAdded(mx.alice.id, inbox.id, (meta.uid,), meta.modseq)]


async def test_a_client_that_disconnects_during_data_delivers_nothing(mx):
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        assert session.command(b"EHLO client.example").startswith(b"250")
        assert session.command(b"MAIL FROM:<x@remote.example>").startswith(b"250")
        assert session.command(b"RCPT TO:<alice@example.com>").startswith(b"250")
        assert session.command(b"DATA").startswith(b"354")
        session.send(MESSAGE + b"more, and then the line goes dead")
        session.close()

    await run(dialog)
    await asyncio.sleep(0.3)
    assert await inbox_messages(mx.store, mx.alice) == []
    assert blob_files(mx) == []
    # The server is fine afterwards.
    assert await run(send, mx, "x@remote.example", ["alice@example.com"], MESSAGE) == {}


async def test_pipelined_commands_are_answered_in_order(mx):
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        assert b"PIPELINING" in session.command(b"EHLO client.example")
        session.send(
            b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
            b"RCPT TO:<bob@example.com>\r\nDATA\r\n"
        )
        replies = [session.reply() for _ in range(5)]
        session.send(MESSAGE + b".\r\n")
        replies.append(session.reply())
        session.command(b"QUIT")
        session.close()
        return replies

    replies = await run(dialog)
    assert [r[:9] for r in replies] == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"250 2.1.5", b"354 End d", b"250 2.0.0"]
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [MESSAGE]
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.bob)] == [MESSAGE]


async def test_the_replies_to_a_pipelined_group_come_as_one_unit(mx):
    # RFC 2920 §3.2: the replies to MAIL and RCPT wait for the last command of the group (DATA),
    # and go out with its reply, in one write: the client's first read holds them all.
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        session.command(b"EHLO client.example")
        session.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.com>\r\n"
                     b"RCPT TO:<nobody@example.com>\r\nDATA\r\n")
        first_read = session.read_once()
        replies = [session.reply() for _ in range(4)]
        session.send(MESSAGE + b".\r\n")
        replies.append(session.reply())
        # A command alone is answered at once: nothing waits for input that is not there.
        replies.append(session.command(b"RSET"))
        session.command(b"QUIT")
        session.close()
        return first_read, replies

    first_read, replies = await run(dialog)
    assert first_read.count(b"\r\n") == 4
    assert [r[:9] for r in replies] == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"354 End d", b"250 2.0.0",
                                        b"250 2.0.0"]
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [MESSAGE]


@pytest.mark.parametrize("options", [(), ("BODY=8BITMIME",)], ids=["undeclared", "8bitmime"])
async def test_8bit_body_with_leading_dots_is_stored_byte_identical(mx, options):
    # Without BODY=8BITMIME the data is 8-bit anyway: accepted and stored as it came (RFC 6152
    # leaves it to the server; refusing would bounce mail from old senders for nothing).
    message = (
        "From: Jörg <joerg@remote.example>\r\nSubject: Grüße\r\n\r\n"
        ".a line with one dot\r\n..two dots\r\n.\r\n...\r\nÄÖÜ ß € \r\n"
    ).encode() + b"latin-1: \xe4\xf6\xfc\r\n"
    assert await run(send, mx, "x@remote.example", ["alice@example.com"], message, mail_options=options) == {}
    [stored] = await inbox_messages(mx.store, mx.alice)
    assert below_trace(stored) == message


async def test_bare_lf_is_refused(mx):
    # RFC 5321 §2.3.8: a server should not accept bare LF; it is also how SMTP smuggling starts.
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        session.command(b"EHLO client.example")
        session.command(b"MAIL FROM:<x@remote.example>")
        session.command(b"RCPT TO:<alice@example.com>")
        session.command(b"DATA")
        session.send(b"Subject: smuggled\r\n\r\nfirst\nsecond\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n")
        reply = session.reply()
        after = session.command(b"NOOP")
        session.close()
        return reply, after

    reply, after = await run(dialog)
    assert reply.startswith(b"554 5.6.0 ")
    assert after.startswith(b"250")  # the smuggled MAIL was part of the refused message, not a command
    assert await inbox_messages(mx.store, mx.alice) == []


async def test_an_over_long_line_is_refused(mx):
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        session.command(b"EHLO client.example")
        session.command(b"MAIL FROM:<x@remote.example>")
        session.command(b"RCPT TO:<alice@example.com>")
        session.command(b"DATA")
        session.send(b"Subject: long\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n")
        reply = session.reply()
        session.close()
        return reply

    assert (await run(dialog)).startswith(b"500 5.5.2 ")
    assert await inbox_messages(mx.store, mx.alice) == []


async def test_commands_out_of_order_get_503(mx):
    def dialog():
        session = RawSession(mx.addresses["smtp"])
        before_ehlo = session.command(b"MAIL FROM:<x@remote.example>")
        session.command(b"EHLO client.example")
        rcpt_first = session.command(b"RCPT TO:<alice@example.com>")
        data_first = session.command(b"DATA")
        session.command(b"MAIL FROM:<x@remote.example>")
        nested = session.command(b"MAIL FROM:<x@remote.example>")
        no_rcpt = session.command(b"DATA")
        session.close()
        return before_ehlo, rcpt_first, data_first, nested, no_rcpt

    for reply in await run(dialog):
        assert reply.startswith(b"503 5.5.1 "), reply


async def test_too_many_recipients_get_452(tmp_path):
    async with await start(tmp_path, extra="[smtp]\nmax_recipients = 3\n") as server:
        await server.store.add_domain("example.com")
        await server.store.add_account("alice@example.com", HASH, QUOTA)

        def dialog():
            with smtp_client(server.addresses["smtp"]) as client:
                client.mail("x@remote.example")
                return [client.rcpt("alice@example.com") for _ in range(4)]

        replies = await run(dialog)
        assert [code for code, _ in replies] == [250, 250, 250, 452]
        assert replies[3][1].startswith(b"4.5.3 ")


@pytest.mark.parametrize("hops, accepted", [(50, True), (51, False)])
async def test_a_looping_message_is_refused(mx, hops, accepted):
    message = b"Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n" * hops + MESSAGE

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("x@remote.example")
            client.rcpt("alice@example.com")
            return client.data(message)

    code, text = await run(dialog)
    if accepted:
        assert code == 250
    else:
        assert code == 554 and text.startswith(b"5.4.6 ")
        assert await inbox_messages(mx.store, mx.alice) == []


async def test_stop_closes_open_sessions_at_once(tmp_path):
    server = Server(load_config(write_config(tmp_path, listeners=("smtp",)), environ={}))
    await server.start()
    address = server.addresses["smtp"]
    session = await run(RawSession, address)
    try:
        assert (await run(session.command, b"EHLO client.example")).startswith(b"250")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop()
        assert loop.time() - started < 2
        with pytest.raises(ConnectionError):
            await run(session.command, b"NOOP")
    finally:
        session.close()


async def test_authentication_results_claiming_to_be_ours_are_removed_and_others_kept(mx):
    # RFC 8601 §5: a sender must not be able to hand the recipient our verdict.
    theirs = (b"Authentication-Results: mx.other.example; spf=pass smtp.mailfrom=x@remote.example\r\n"
              b"X-Authentication-Results: mail.example.com; not the field, kept\r\n")
    forged = [b"Authentication-Results: mail.example.com; dkim=pass header.d=bank.example\r\n",
              b"Authentication-Results: (folded, in capitals, with a dot)\r\n MAIL.Example.COM.\r\n\t1; spf=pass\r\n",
              b'authentication-results : "mail.example.com"; dmarc=pass\r\n']
    await run(send, mx, "x@remote.example", ["alice@example.com"], forged[0] + theirs + forged[1] + forged[2] + MESSAGE)
    [stored] = await inbox_messages(mx.store, mx.alice)
    header = stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert header.lower().count(b"\nauthentication-results") == 2  # ours and mx.other.example's
    assert b"Authentication-Results: mail.example.com;\r\n\tspf=" in header  # ours, as we word it
    assert b"bank.example" not in stored and b"capitals" not in stored and b"dmarc=pass" not in stored
    assert below_trace(stored) == theirs + MESSAGE


async def test_a_recipient_that_fails_after_rcpt_gets_a_dsn_and_the_others_the_message(mx):
    # RFC 5321 §6.1: after the 250 the failure is ours to report. Carol's mailbox has room for a
    # one-byte message (what RCPT checks without SIZE=) but not for this one.
    carol = await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)
    message = b"Message-ID: <dsn-test@remote.example>\r\n" + MESSAGE
    refused = await run(send, mx, "bob@example.com", ["alice@example.com", "carol@example.com"], message)
    assert refused == {}
    assert [below_trace(m) for m in await inbox_messages(mx.store, mx.alice)] == [message]
    assert await inbox_messages(mx.store, carol) == []
    [dsn] = await inbox_messages(mx.store, mx.bob)
    text = dsn.decode()
    assert text.startswith("Return-Path: <>\r\n")  # RFC 5321 §6.1: a DSN has the null sender
    assert "Content-Type: multipart/report; report-type=delivery-status;" in text
    assert "Final-Recipient: rfc822; carol@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\n" in text
    assert "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full" in text
    # Exactly the recipient that failed: alice got the message.
    human = text.split("Content-Type: text/plain")[1].split("Content-Type: message/delivery-status")[0]
    report = text.split("Content-Type: message/delivery-status")[1].split("Content-Type: text/rfc822-headers")[0]
    assert "<carol@example.com>" in human and "alice@example.com" not in human
    assert report.count("Final-Recipient:") == 1
    assert "Message-ID: <dsn-test@remote.example>" in text  # the original's header comes back


async def test_a_forwarding_target_that_fails_after_rcpt_is_reported_with_the_address_the_sender_used(mx):
    carol = await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)
    await mx.store.set_forwarding("alice@example.com", Forwarding(("carol@example.com",), keep_copy=True))
    assert await run(send, mx, "bob@example.com", ["alice@example.com"], MESSAGE) == {}
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    assert await inbox_messages(mx.store, carol) == []
    [dsn] = await inbox_messages(mx.store, mx.bob)
    assert (b"Original-Recipient: rfc822; alice@example.com\r\nFinal-Recipient: rfc822; carol@example.com\r\n"
            b"Action: failed\r\nStatus: 5.2.2\r\n") in dsn


async def test_a_null_sender_gets_no_dsn_for_a_recipient_that_fails_after_rcpt(mx):
    carol = await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)
    await mx.queue.stop()  # a DSN for a remote sender would wait in the queue: there is none
    refused = await run(send, mx, "<>", ["alice@example.com", "carol@example.com"], MESSAGE)
    assert refused == {}
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    assert await inbox_messages(mx.store, carol) == [] and await inbox_messages(mx.store, mx.bob) == []
    assert await mx.store.list_queue() == []


async def test_a_dsn_for_a_remote_sender_is_queued_before_the_250(mx):
    await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)
    await mx.queue.stop()  # keep the DSN in the queue to look at it
    assert await run(send, mx, "x@remote.example", ["alice@example.com", "carol@example.com"], MESSAGE) == {}
    [entry] = await mx.store.list_queue()
    assert entry.sender == "" and entry.pending == ("x@remote.example",)
    dsn = await mx.store.read_blob(entry.blob.sha256)
    assert b"Final-Recipient: rfc822; carol@example.com\r\n" in dsn


async def test_when_every_recipient_fails_after_rcpt_the_reply_refuses_and_no_dsn_is_sent(mx):
    carol = await mx.store.add_account("carol@example.com", HASH, len(MESSAGE) + 50)
    dave = await mx.store.add_account("dave@example.com", HASH, len(MESSAGE) + 50)

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("bob@example.com")
            return client.rcpt("carol@example.com"), client.rcpt("dave@example.com"), client.data(MESSAGE)

    carol_rcpt, dave_rcpt, data = await run(dialog)
    assert carol_rcpt[0] == dave_rcpt[0] == 250
    assert data[0] == 552 and data[1].startswith(b"5.2.2 ")  # the sender's own MTA tells it
    for account in (carol, dave, mx.bob):
        assert await inbox_messages(mx.store, account) == []
    assert blob_files(mx) == []


async def test_a_mailbox_removed_between_rcpt_and_data_is_reported_not_filed(mx):
    # What RCPT found is used again at DATA; the store still knows the mailbox is gone.
    await mx.store.add_account("carol@example.com", HASH, QUOTA)
    loop = asyncio.get_running_loop()

    def dialog():
        with smtp_client(mx.addresses["smtp"]) as client:
            client.mail("bob@example.com")
            replies = [client.rcpt("alice@example.com"), client.rcpt("carol@example.com")]
            asyncio.run_coroutine_threadsafe(mx.store.remove_account("carol@example.com"), loop).result()
            return replies, client.data(MESSAGE)

    rcpt_replies, data = await run(dialog)
    assert [code for code, _ in rcpt_replies] == [250, 250] and data[0] == 250
    assert len(await inbox_messages(mx.store, mx.alice)) == 1
    assert await mx.store.get_account("carol@example.com") is None
    [dsn] = await inbox_messages(mx.store, mx.bob)
    assert b"Final-Recipient: rfc822; carol@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n" in dsn


async def test_vacation_answers_a_hosted_sender_once_and_never_a_list(mx):
    today = date.today()  # the server's local date
    await mx.store.set_vacation("alice@example.com", Vacation(today, today, "Out of office", "Back tomorrow.\n"))
    question = (b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: lunch?\r\n"
                b"Message-ID: <lunch-1@example.com>\r\n\r\nLunch today?\r\n")
    assert await run(send, mx, "bob@example.com", ["alice@example.com"], question) == {}
    [reply] = await inbox_messages(mx.store, mx.bob)
    parsed = message_from_bytes(reply, policy=policy.default)
    assert reply.startswith(b"Return-Path: <>\r\n")  # RFC 3834 §3.3: the null sender
    assert (parsed["From"], parsed["To"], parsed["Subject"]) == ("alice@example.com", "bob@example.com",
                                                                 "Out of office")
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == parsed["References"] == "<lunch-1@example.com>"
    assert parsed.get_content().strip() == "Back tomorrow."

    await run(send, mx, "bob@example.com", ["alice@example.com"], question.replace(b"lunch-1", b"lunch-2"))
    listed = question.replace(b"Subject:", b"List-Id: <lunch.lists.example.com>\r\nSubject:")
    carol = await mx.store.add_account("carol@example.com", HASH, QUOTA)
    await run(send, mx, "carol@example.com", ["alice@example.com"], listed)
    assert len(await inbox_messages(mx.store, mx.alice)) == 3  # every original is filed
    assert len(await inbox_messages(mx.store, mx.bob)) == 1  # once per period
    assert await inbox_messages(mx.store, carol) == []  # list mail is not answered


async def test_the_vacation_period_is_a_setting(tmp_path):
    today = date.today()
    question = b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: lunch?\r\n\r\nLunch today?\r\n"
    # Long enough that the first two deliveries fall within it on a busy CI machine (1 s did not).
    async with await start(tmp_path, '[vacation]\nperiod = "4s"\n') as server:
        await server.store.add_domain("example.com")
        alice = await server.store.add_account("alice@example.com", HASH, QUOTA)
        bob = await server.store.add_account("bob@example.com", HASH, QUOTA)
        await server.store.set_vacation("alice@example.com", Vacation(today, today, "Away", "Back soon.\n"))
        await run(send, server, "bob@example.com", ["alice@example.com"], question)
        await run(send, server, "bob@example.com", ["alice@example.com"], question)
        assert len(await inbox_messages(server.store, bob)) == 1  # within the period
        await asyncio.sleep(4.2)
        await run(send, server, "bob@example.com", ["alice@example.com"], question)
        assert len(await inbox_messages(server.store, bob)) == 2  # a period later (7 days by default)
        assert len(await inbox_messages(server.store, alice)) == 3
