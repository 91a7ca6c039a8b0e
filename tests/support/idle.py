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

    def hears_flag_and_expunge(self, other: imaplib.IMAP4) -> tuple[float, float]:
        """`other`, with INBOX selected, flags message 1, then deletes and expunges it: the
        seconds until this client hears of the flag, and of the expunge."""
        other.store("1", "+FLAGS", "(\\Flagged)")
        flagged = self.wait_for(b"\\Flagged")
        other.store("1", "+FLAGS", "(\\Deleted)")
        other.expunge()
        return flagged, self.wait_for(b"EXPUNGE")

    def done(self) -> None:
        self.imap.send(b"DONE\r\n")
        while not self.imap.readline().startswith(self.tag):
            pass
        self.imap.logout()
