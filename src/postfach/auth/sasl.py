"""SASL mechanisms without I/O, for every door that offers AUTH (POP3, IMAP, SMTP submission).

Only PLAIN (RFC 4616), always behind TLS: the doors refuse it on a plaintext
connection unless the configuration allows plaintext on loopback.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

PLAIN = "PLAIN"


class SaslError(ValueError):
    """The client's response is malformed; the message is one sentence for the client."""


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    authzid: str  # empty: act as authcid
    authcid: str
    password: str = ""

    def __repr__(self) -> str:  # never log a password
        return f"PlainCredentials(authzid={self.authzid!r}, authcid={self.authcid!r})"


def decode_plain(response: str) -> PlainCredentials:
    """RFC 4616 §2 from the base64 text a client sent."""
    try:
        raw = base64.b64decode(response.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslError("the response is not valid base64") from None
    return parse_plain(raw)


def parse_plain(raw: bytes) -> PlainCredentials:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd, all UTF-8 (already base64-decoded)."""
    parts = raw.split(b"\0")
    if len(parts) != 3:
        raise SaslError("a PLAIN response has three parts separated by NUL")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SaslError("the PLAIN response is not valid UTF-8") from None
    if not authcid or not password:
        raise SaslError("the PLAIN response lacks a user name or password")
    return PlainCredentials(authzid, authcid, password)
