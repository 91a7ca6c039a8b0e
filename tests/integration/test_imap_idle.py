"""IDLE: what another session, the MX and the store do reaches an idling client within a second."""

import asyncio
import imaplib
import smtplib

from postfach.config import load_config
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.idle import Idler
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"
DEADLINE = 1.0  # issue 3 point 5


def logged_in(server) -> imaplib.IMAP4_SSL:
    address = server.addresses["imaps"]
    client = imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)
    client.login(USER, PASSWORD)
    return client


async def test_new_mail_flags_and_expunges_reach_an_idling_client_at_once(tmp_path):
    config = load_config(write_config(tmp_path, listeners=("imaps", "smtp")), environ={})
    async with running_server(config) as server:
        await make_account(server.store, USER)

        def scenario():
            idler = Idler(logged_in(server))
            smtp = server.addresses["smtp"]
            with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as mx:
                mx.sendmail("someone@example.org", [USER], b"Subject: hello\r\n\r\nnew mail\r\n")
            # From the MX's 250 (the message is filed) to the idling client's EXISTS:
            assert idler.wait_for(b"EXISTS") < DEADLINE

            other = imaplib.IMAP4_SSL(server.addresses["imaps"].host, server.addresses["imaps"].port,
                                      ssl_context=insecure_context(), timeout=10)
            other.login(USER, PASSWORD)
            other.select("INBOX")
            assert max(idler.hears_flag_and_expunge(other)) < DEADLINE
            other.logout()
            idler.done()

        await asyncio.to_thread(scenario)


async def test_exists_reaches_an_idling_client_before_recent_is_claimed(tmp_path):
    # Claiming \Recent is a store write that waits for its COMMIT; the EXISTS does not wait
    # for it (issue 7 point 3), and RECENT follows once the claim is in.
    config = load_config(write_config(tmp_path, listeners=("imaps",)), environ={})
    async with running_server(config) as server:
        account = await make_account(server.store, USER)
        inbox = await server.store.get_folder(account.id, "INBOX")
        store = server.store
        claim_recent, gate, claiming = store.claim_recent, asyncio.Event(), asyncio.Event()

        async def gated_claim(folder_id):
            claiming.set()
            await gate.wait()
            return await claim_recent(folder_id)

        idler = await asyncio.to_thread(lambda: Idler(logged_in(server)))
        store.claim_recent = gated_claim
        await store.append(inbox.id, b"Subject: hello\r\n\r\nnew mail\r\n")
        assert await asyncio.to_thread(idler.imap.readline) == b"* 1 EXISTS\r\n"
        await asyncio.wait_for(claiming.wait(), DEADLINE)
        gate.set()
        assert await asyncio.to_thread(idler.imap.readline) == b"* 1 RECENT\r\n"
        await asyncio.to_thread(idler.done)
