"""Submission (`submission` with STARTTLS, `submissions` with implicit TLS) with smtplib."""

import base64
import smtplib

import pytest

from postfach.auth.passwords import Passwords
from tests.support.config import make_config
from tests.support.server import running_server
from tests.support.smtp import (
    PASSWORD,
    RawSession,
    below_trace,
    inbox_messages,
    run,
    smtp_client,
)
from tests.support.tls import insecure_context

HASH = Passwords().hash(PASSWORD)
QUOTA = 50 * 1024 * 1024


def message(sender: str = "alice@example.com", to: str = "bob@example.com") -> bytes:
    return f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: hi\r\n\r\nHello.\r\n".encode()


@pytest.fixture
async def server(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("submission", "submissions"))) as server:
        await server.store.add_domain("example.com")
        server.alice = await server.store.add_account("alice@example.com", HASH, QUOTA)
        server.bob = await server.store.add_account("bob@example.com", HASH, QUOTA)
        await server.store.add_alias("info@example.com", "alice@example.com")
        await server.store.add_alias("@example.com", "alice@example.com")  # a catch-all gives no sending rights
        yield server


async def test_auth_is_not_offered_before_starttls_and_everything_but_ehlo_needs_tls(server):
    def dialog():
        session = RawSession(server.addresses["submission"])
        ehlo = session.command(b"EHLO client.example")
        auth = session.command(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode()))
        mail = session.command(b"MAIL FROM:<alice@example.com>")
        session.close()
        return ehlo, auth, mail

    ehlo, auth, mail = await run(dialog)
    assert b"STARTTLS" in ehlo and b"AUTH" not in ehlo
    assert auth.startswith(b"530 5.7.0 ")
    assert mail.startswith(b"530 5.7.0 ")


async def test_after_starttls_auth_is_offered(server):
    def features():
        with smtp_client(server.addresses["submission"], starttls=True) as client:
            return dict(client.esmtp_features)

    found = await run(features)
    assert found["auth"].split() == ["LOGIN", "PLAIN"]
    for extension in ("size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"):
        assert extension in found
    assert "starttls" not in found


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_plain_and_login_work_and_submission_delivers_locally(server, mechanism):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True) as client:
            client.user, client.password = "alice@example.com", PASSWORD
            method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
            auth = client.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN")
            return auth, client.sendmail("alice@example.com", ["bob@example.com"], message())

    auth, refused = await run(dialog)
    assert auth == (235, b"2.7.0 Authentication successful")
    assert refused == {}
    [stored] = await inbox_messages(server.store, server.bob)
    assert below_trace(stored) == message()
    assert b" with ESMTPSA id " in stored


@pytest.mark.parametrize("user, password", [
    ("alice@example.com", "wrong password!"),
    ("nobody@example.com", PASSWORD),
    ("not an address", PASSWORD),
])
async def test_any_failed_login_gets_the_same_535(server, user, password):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True) as client:
            try:
                client.login(user, password)
            except smtplib.SMTPAuthenticationError as error:
                return error.smtp_code, error.smtp_error

    assert await run(dialog) == (535, b"5.7.8 Authentication credentials invalid")


async def test_mail_without_auth_gets_530(server):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True) as client:
            return client.mail("alice@example.com")

    code, text = await run(dialog)
    assert code == 530 and text.startswith(b"5.7.0 ")


@pytest.mark.parametrize("sender", ["bob@example.com", "someone@remote.example", "random@example.com", "<>"])
async def test_mail_from_must_be_the_accounts_own(server, sender):
    # random@example.com reaches alice through the catch-all, but that makes it no alias of hers.
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login="alice@example.com") as client:
            return client.mail(sender)

    code, text = await run(dialog)
    assert code == 553 and text.startswith(b"5.7.1 ")


@pytest.mark.parametrize("header_from", ["bob@example.com", "random@example.com"])
async def test_the_from_header_must_be_the_accounts_own(server, header_from):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login="alice@example.com") as client:
            client.mail("alice@example.com")
            client.rcpt("bob@example.com")
            return client.data(message(sender=header_from))

    code, text = await run(dialog)
    assert code == 553 and text.startswith(b"5.7.1 ")
    assert await inbox_messages(server.store, server.bob) == []


async def test_an_alias_may_be_the_sender(server):
    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login="alice@example.com") as client:
            return client.sendmail("info@example.com", ["bob@example.com"], message(sender="info@example.com"))

    assert await run(dialog) == {}
    [stored] = await inbox_messages(server.store, server.bob)
    assert stored.startswith(b"Return-Path: <info@example.com>\r\n")


async def test_remote_recipients_are_queued_before_the_250(server):
    await server.queue.stop()  # keep the entry in the queue: nothing to send it to here

    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login="alice@example.com") as client:
            return client.sendmail("alice@example.com", ["friend@remote.example", "bob@example.com"], message())

    assert await run(dialog) == {}
    [entry] = await server.store.list_queue()
    assert entry.sender == "alice@example.com" and entry.pending == ("friend@remote.example",)


async def test_submissions_is_implicit_tls_with_auth(server):
    def dialog():
        with smtp_client(server.addresses["submissions"], implicit_tls=True) as client:
            offered = client.esmtp_features.get("auth", "")
            client.login("alice@example.com", PASSWORD)
            return offered, client.sendmail("alice@example.com", ["bob@example.com"], message())

    offered, refused = await run(dialog)
    assert offered.split() == ["LOGIN", "PLAIN"]
    assert refused == {}
    [stored] = await inbox_messages(server.store, server.bob)
    assert b" with ESMTPSA id " in stored


async def test_submissions_refuses_mail_before_auth(server):
    def dialog():
        session = RawSession(server.addresses["submissions"], insecure_context())
        session.command(b"EHLO client.example")
        reply = session.command(b"MAIL FROM:<alice@example.com>")
        session.close()
        return reply

    assert (await run(dialog)).startswith(b"530 5.7.0 ")


async def test_a_customer_cannot_hand_a_local_recipient_our_authentication_results(server):
    # RFC 8601 §5: an authenticated customer is no more trusted to speak for us than the MX.
    forged = b"Authentication-Results: mail.example.com; dkim=pass header.d=bank.example\r\n"
    other = b"Authentication-Results: elsewhere.example; spf=fail\r\n"

    def dialog():
        with smtp_client(server.addresses["submission"], starttls=True, login="alice@example.com") as client:
            return client.sendmail("alice@example.com", ["bob@example.com"], forged + other + message())

    assert await run(dialog) == {}
    [stored] = await inbox_messages(server.store, server.bob)
    assert below_trace(stored) == other + message()
