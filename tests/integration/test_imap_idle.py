"""IDLE: what another session, the MX and the store do reaches an idling client within a second."""

import asyncio
import imaplib
import smtplib
import time

from postfach.config import load_config
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

USER = "alice@example.com"
DEADLINE = 1.0  # issue 3 point 5



class Idler:
    def __init__(self, server) -> None:
        address = server.addresses["imaps"]
        self.imap = imaplib.IMAP4_SSL(address.host, address.port, ssl_context=insecure_context(), timeout=10)
        self.imap.login(USER, PASSWORD)
        self.imap.select("INBOX")
        self.tag = self.imap._new_tag()
        self.imap.send(self.tag + b" IDLE\r\n")
        assert self.imap.readline().startswith(b"+")

    def wait_for(self, needle: bytes) -> float:
        """Seconds until an untagged line containing `needle` arrives."""
        began = time.monotonic()
        while needle not in self.imap.readline():
            pass
        return time.monotonic() - began

    def done(self) -> None:
        self.imap.send(b"DONE\r\n")
        while not self.imap.readline().startswith(self.tag):
            pass
        self.imap.logout()


async def test_new_mail_flags_and_expunges_reach_an_idling_client_at_once(tmp_path):
    config = load_config(write_config(tmp_path, listeners=("imaps", "smtp")), environ={})
    async with running_server(config) as server:
        await make_account(server.store, USER)

        def scenario():
            idler = Idler(server)
            smtp = server.addresses["smtp"]
            with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as mx:
                mx.sendmail("someone@example.org", [USER], b"Subject: hello\r\n\r\nnew mail\r\n")
            # From the MX's 250 (the message is filed) to the idling client's EXISTS:
            assert idler.wait_for(b"EXISTS") < DEADLINE

            other = imaplib.IMAP4_SSL(server.addresses["imaps"].host, server.addresses["imaps"].port,
                                      ssl_context=insecure_context(), timeout=10)
            other.login(USER, PASSWORD)
            other.select("INBOX")
            other.store("1", "+FLAGS", "(\\Flagged)")
            assert idler.wait_for(b"\\Flagged") < DEADLINE
            other.store("1", "+FLAGS", "(\\Deleted)")
            other.expunge()
            assert idler.wait_for(b"EXPUNGE") < DEADLINE
            other.logout()
            idler.done()

        await asyncio.to_thread(scenario)
