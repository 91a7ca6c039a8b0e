"""Mail addresses and domain names: checked once, kept in ASCII, shown in Unicode.

Domains are converted with IDNA 2008 (UTS #46 mapping) to punycode and lower
case, so "Bücher.example" and "xn--bcher-kva.example" are one domain. Local
parts are lower-cased: every mail client and customer treats them that way,
although RFC 5321 §2.4 would allow a server to tell them apart.
"""

from __future__ import annotations

import functools
import re

import idna

MAX_ADDRESS_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit less the angle brackets
MAX_LOCAL_LENGTH = 64  # RFC 5321 §4.5.3.1.1

# RFC 5322 §3.2.3 dot-atom, plus UTF-8 for SMTPUTF8 local parts (RFC 6531 §3.3).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class AddressError(ValueError):
    """A malformed address or domain; the message is one sentence for the user."""


# Every SMTP recipient and sender passes here, and IDNA costs more than the rest of RCPT: the
# few domains a server sees again and again are remembered (an error is not, and is raised anew).
@functools.lru_cache(maxsize=4096)
def normalize_domain(text: str) -> str:
    """The ASCII form of a domain name, or AddressError."""
    name = text.strip().rstrip(".")
    if not name:
        raise AddressError("the domain name is empty")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as error:
        raise AddressError(f"{text!r} is not a valid domain name ({error})") from None
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253:
        raise AddressError(f"{text!r} is not a valid domain name (it needs at least two labels)")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise AddressError(f"{text!r} is not a valid domain name")
    return ascii_name


def normalize_address(text: str) -> str:
    """The stored form of a mail address (local@ascii-domain, lower case), or AddressError."""
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain.strip():
        raise AddressError(f"{text!r} is not a mail address (expected name@domain)")
    if not _DOT_ATOM.fullmatch(local):
        raise AddressError(f"{text!r} is not a valid mail address (bad characters before the @)")
    if len(local.encode()) > MAX_LOCAL_LENGTH:
        raise AddressError(f"{text!r} is not a valid mail address (more than 64 bytes before the @)")
    try:
        ascii_domain = normalize_domain(domain)
    except AddressError as error:
        raise AddressError(f"{text!r} is not a valid mail address: {error}") from None
    normalized = f"{local.lower()}@{ascii_domain}"
    if len(normalized.encode()) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"{text!r} is too long for a mail address")
    return normalized


def normalize_alias_source(text: str) -> str:
    """An alias source: an address, or "@domain" for the domain's catch-all."""
    if text.strip().startswith("@"):
        return "@" + normalize_domain(text.strip()[1:])
    return normalize_address(text)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def display_domain(ascii_name: str) -> str:
    """The Unicode form of a stored domain name, for people."""
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def display_address(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{display_domain(domain)}"
