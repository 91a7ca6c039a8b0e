"""What a session answers: the bytes of a POP3 response, and what the glue must do next.

Response codes (RFC 2449 §8, RFC 3206) ride in brackets after -ERR:
[AUTH] credentials refused, [IN-USE] maildrop locked, [SYS/TEMP] our
fault, try later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

AUTH = "AUTH"
IN_USE = "IN-USE"
SYS_TEMP = "SYS/TEMP"


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    body: AsyncIterator[bytes] | None = None  # RETR/TOP: the message, streamed after `data`
    close: bool = False  # then end the connection
    start_tls: bool = False  # then discard what is buffered and start TLS (STLS)
    continuation: bool = False  # the next line is a SASL response (AUTH)


def ok(text: str = "") -> Reply:
    return Reply(b"+OK " + text.encode() + b"\r\n" if text else b"+OK\r\n")


def err(text: str, code: str | None = None) -> Reply:
    prefix = f"[{code}] " if code else ""
    return Reply(b"-ERR " + (prefix + text).encode() + b"\r\n")


def multiline(text: str, lines: Iterable[str] | bytes) -> Reply:
    """+OK, then lines (each dot-stuffed when it starts with "."), then the terminating "."."""
    if isinstance(lines, bytes):
        body = lines  # already CRLF-terminated lines that cannot start with "." (LIST, UIDL)
    else:
        body = b"".join(("." + line if line.startswith(".") else line).encode() + b"\r\n" for line in lines)
    return Reply(ok(text).data + body + b".\r\n")
