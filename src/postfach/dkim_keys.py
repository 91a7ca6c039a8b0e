"""DKIM keys per hosted domain (RFC 6376): made when a domain is added, published, used to sign.

The private key is kept in the store (PEM); the public half is what
`postfach domain dns DOMAIN` prints as `<selector>._domainkey.<domain>` TXT.
Signing is dkimpy's; we only choose what to sign (RFC 6376 §5.4.1's list).
"""

from __future__ import annotations

import base64
import time

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postfach.model import DkimKey

KEY_BITS = 2048
# The fields a signature covers (RFC 6376 §5.4.1), each that is present.
SIGNED_FIELDS = (
    b"from", b"reply-to", b"subject", b"date", b"to", b"cc", b"message-id", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
)


def new_selector() -> str:
    """A selector naming the year and month, so that a later key can sit beside this one."""
    return time.strftime("pf%Y%m", time.gmtime())


def generate_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def public_record(key: DkimKey) -> str:
    """The TXT value to publish (RFC 6376 §3.6.1): the public key as SubjectPublicKeyInfo, base64."""
    private = serialization.load_pem_private_key(key.private_key.encode("ascii"), password=None)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def sign(message: bytes, key: DkimKey) -> bytes:
    """The DKIM-Signature field for `message` (CRLF line ends), to prepend."""
    header_end = message.find(b"\r\n\r\n")
    header = message[: header_end + 2].lower() if header_end >= 0 else message.lower()
    present = [name for name in SIGNED_FIELDS if header.startswith(name + b":") or b"\r\n" + name + b":" in header]
    return dkim.sign(
        message,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key.encode("ascii"),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=present or [b"from"],
    )
