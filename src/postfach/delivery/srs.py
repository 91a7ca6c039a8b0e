"""Sender Rewriting Scheme, so that forwarded mail still passes SPF (srslib does the scheme).

A message that arrives for bob@b.test from carol@c.test and is forwarded to
alice@a.test leaves with MAIL FROM SRS0=hash=tt=c.test=carol@b.test: a.test
checks SPF against b.test, whose servers these are. A bounce that comes back
to that address is reversed (hash and age checked) and sent on to carol@c.test.

The secret is made once, in the data directory, and kept: every SRS address
handed out stays reversible across restarts.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import srslib

from postfach.secret_files import read_or_create

SECRET_FILE = "srs.secret"


def load_secret(data_dir: Path) -> str:
    return read_or_create(data_dir / SECRET_FILE, lambda: secrets.token_urlsafe(32))


class Srs:
    def __init__(self, secret: str) -> None:
        self._srs = srslib.SRS(secret)

    def forward(self, sender: str, domain: str) -> str:
        """The envelope sender for mail `domain` forwards; the null sender stays null."""
        if not sender:
            return sender
        return self._srs.forward(sender, domain)

    def is_srs(self, address: str) -> bool:
        return self._srs.is_srs_address(address, strict=False)

    def reverse(self, address: str) -> str | None:
        """The original sender, or None when the address is forged or expired."""
        try:
            return self._srs.reverse(address)
        except srslib.Error:
            return None
