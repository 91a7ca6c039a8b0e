"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII other than "&" stands for itself, "&" is written "&-",
and every other run of characters is UTF-16BE in modified BASE64 ("," for
"/", no padding) between "&" and "-". IMAP4rev2 and UTF8=ACCEPT clients use
UTF-8 instead (RFC 9051 §5.1, RFC 6855 §3); this is for IMAP4rev1 clients.

``decode`` is strict: anything ``encode`` would not produce -- 8-bit or
control characters, an unterminated or empty shift, bad BASE64, leftover
bits, encoded printable ASCII, two adjacent shifts, unpaired surrogates --
raises :class:`MUTF7Error`, because two spellings of one name would make two
mailboxes that look the same.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["MUTF7Error", "decode", "encode"]


class MUTF7Error(ValueError):
    """The bytes are not a valid modified UTF-7 mailbox name."""


_DIRECT = re.compile(r"[\x20-\x25\x27-\x7e]+")
_SHIFT = re.compile(rb"&([A-Za-z0-9+,]*)-")


def _b64(chars: str) -> bytes:
    data = chars.encode("utf-16-be")
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").replace(b"/", b",")


def encode(name: str) -> bytes:
    """The modified UTF-7 form of a mailbox name."""
    out: list[bytes] = []
    pos, n = 0, len(name)
    while pos < n:
        m = _DIRECT.match(name, pos)
        if m is not None:
            out.append(m.group().encode("ascii"))
            pos = m.end()
            continue
        if name[pos] == "&":
            out.append(b"&-")
            pos += 1
            continue
        end = pos
        while end < n and not ("\x20" <= name[end] <= "\x7e"):
            end += 1
        try:
            out.append(b"&" + _b64(name[pos:end]) + b"-")
        except UnicodeEncodeError as exc:  # a lone surrogate in the str
            raise MUTF7Error(f"cannot encode {name!r}: lone surrogate") from exc
        pos = end
    return b"".join(out)


def decode(data: bytes) -> str:
    """The mailbox name a modified UTF-7 byte string stands for."""
    out: list[str] = []
    pos, n = 0, len(data)
    last_shift_end = -1
    while pos < n:
        byte = data[pos]
        if byte != 0x26:  # "&"
            if not 0x20 <= byte <= 0x7E:
                raise MUTF7Error(f"byte 0x{byte:02x} at {pos} is not printable US-ASCII")
            out.append(chr(byte))
            pos += 1
            continue
        m = _SHIFT.match(data, pos)
        if m is None:
            raise MUTF7Error(f"unterminated or invalid '&' shift at {pos}")
        b64 = m.group(1)
        if not b64:
            out.append("&")
        else:
            if last_shift_end == pos:
                raise MUTF7Error(f"adjacent encoded runs at {pos} must be one run")
            out.append(_decode_run(b64, pos))
            last_shift_end = m.end()
        pos = m.end()
    text = "".join(out)
    if encode(text) != bytes(data):
        # Catches encoded printable ASCII and non-zero leftover bits.
        raise MUTF7Error(f"{bytes(data)!r} is not the canonical modified UTF-7 form")
    return text


def _decode_run(b64: bytes, pos: int) -> str:
    if len(b64) % 4 == 1:
        raise MUTF7Error(f"truncated BASE64 run at {pos}")
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise MUTF7Error(f"bad BASE64 run at {pos}") from exc
    if len(raw) % 2:
        raise MUTF7Error(f"BASE64 run at {pos} is not whole UTF-16 units")
    try:
        return raw.decode("utf-16-be")  # rejects unpaired surrogates
    except UnicodeDecodeError as exc:
        raise MUTF7Error(f"invalid UTF-16 in run at {pos}") from exc
