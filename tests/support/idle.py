"""An imaplib client IDLE-ing on INBOX, and the time it takes an untagged response to arrive."""

import imaplib
import time


class Idler:
    def __init__(self, client: imaplib.IMAP4) -> None:
        """`client` is logged in; it selects INBOX and starts IDLE."""
        self.imap = client
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
