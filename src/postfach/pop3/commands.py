"""Typed POP3 commands, as the parser hands them to the session (one class per command)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH [mechanism [initial-response]] (RFC 5034); no mechanism lists them."""

    mechanism: str | None
    initial_response: str | None = None


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """The client's line after a "+ " continuation of AUTH ("*" cancels)."""

    text: str


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class List:
    number: int | None


@dataclass(frozen=True, slots=True)
class Uidl:
    number: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    number: int


@dataclass(frozen=True, slots=True)
class Top:
    number: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dele:
    number: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that is no valid command (unknown, wrong arguments): -ERR, and the session goes on."""

    reason: str


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line over the limit (RFC 2449 §4); the parser has discarded it up to its end."""

    limit: int


Command = (
    User | Pass | Auth | SaslResponse | Stls | Capa | Stat | List | Uidl | Retr | Top | Dele | Noop | Rset | Quit
)
ParseResult = Command | Invalid | LineTooLong
