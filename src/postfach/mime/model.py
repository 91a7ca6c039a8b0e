"""The parse result: frozen dataclasses, IMAP part numbering, and their JSON form.

The JSON form is positional (lists, not objects) to keep the per-message row
small; ``FORMAT`` is stored with it so a later change can still read old rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

Params = tuple[tuple[str, str], ...]

# Types whose body is an encapsulated message (RFC 2046 §5.2.1, RFC 6532 §3.7).
MESSAGE_TYPES = frozenset({("message", "rfc822"), ("message", "global")})

FORMAT = 1


@dataclass(frozen=True, slots=True)
class EnvelopeAddress:
    """One address of an IMAP envelope (RFC 3501 §7.4.2); see ``addresses`` for group markers."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


Addresses = tuple[EnvelopeAddress, ...]


@dataclass(frozen=True, slots=True)
class Envelope:
    """FETCH ENVELOPE (RFC 3501 §7.4.2, RFC 9051 §7.5.2).

    Strings are the unfolded header value as written (encoded-words not
    decoded), None when the header is absent. Address lists are () for NIL.
    """

    date: str | None = None
    subject: str | None = None
    from_: Addresses = ()
    sender: Addresses = ()
    reply_to: Addresses = ()
    to: Addresses = ()
    cc: Addresses = ()
    bcc: Addresses = ()
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One MIME entity and where it lies in the original bytes.

    ``data[header_start:header_end]`` is its header block including the empty
    line that ends it; ``data[header_end:body_end]`` is its body. For a
    multipart, ``parts`` are its children; a multipart with ``parts == ()``
    could not be split (no boundary, boundary never seen, too deep) and is to
    be served as a single leaf. A message/rfc822 or message/global part has
    exactly one child, the encapsulated message's root, and its ``envelope``;
    when it is base64 or quoted-printable encoded it is a leaf instead.
    """

    type: str
    subtype: str
    params: Params
    id: str | None
    description: str | None
    encoding: str
    disposition: tuple[str, Params] | None
    language: tuple[str, ...] | None
    location: str | None
    md5: str | None
    header_start: int
    header_end: int
    body_end: int
    lines: int | None
    parts: tuple["BodyPart", ...] = ()
    envelope: Envelope | None = None

    @property
    def size(self) -> int:
        return self.body_end - self.header_end

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart" and bool(self.parts)

    @property
    def is_message(self) -> bool:
        return (self.type, self.subtype) in MESSAGE_TYPES and bool(self.parts)

    def param(self, name: str) -> str | None:
        """First parameter ``name`` (lower case) of the Content-Type, or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def part(self, section: tuple[int, ...]) -> "BodyPart | None":
        """The part an IMAP section number names, called on the message's root part.

        RFC 3501 §6.4.5: every message has at least part 1 -- a non-multipart
        message's body is part 1 (this root itself); within a message/rfc822
        part the numbering continues into the encapsulated message, whose own
        root is unnumbered when it is a multipart. ``()`` is the root.
        """
        current: BodyPart | None = self
        for depth, number in enumerate(section):
            if current is None or number < 1:
                return None
            if depth == 0:
                # The root behaves like the inside of a message/rfc822 part.
                current = _child_of_message_root(current, number)
            else:
                current = _child(current, number)
        return current


def _child_of_message_root(root: BodyPart, number: int) -> BodyPart | None:
    if root.is_multipart:
        return root.parts[number - 1] if number <= len(root.parts) else None
    return root if number == 1 else None


def _child(part: BodyPart, number: int) -> BodyPart | None:
    if part.is_multipart:
        return part.parts[number - 1] if number <= len(part.parts) else None
    if part.is_message:
        return _child_of_message_root(part.parts[0], number)
    return None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What delivery stores per message so that FETCH never re-parses it."""

    envelope: Envelope
    structure: BodyPart
    preview: str

    def part(self, section: tuple[int, ...]) -> BodyPart | None:
        return self.structure.part(section)

    def to_json(self) -> str:
        doc = [FORMAT, _envelope_out(self.envelope), _part_out(self.structure), self.preview]
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ParsedMessage":
        doc = json.loads(text)
        if not isinstance(doc, list) or not doc or doc[0] != FORMAT:
            raise ValueError(f"unknown parsed-message format: {str(doc)[:40]!r}")
        _, envelope, structure, preview = doc
        return cls(_envelope_in(envelope), _part_in(structure), preview)


# --- JSON form -------------------------------------------------------------

def _addresses_out(addresses: Addresses) -> list[list[Any]]:
    return [[a.name, a.adl, a.mailbox, a.host] for a in addresses]


def _addresses_in(doc: list[list[Any]]) -> Addresses:
    return tuple(EnvelopeAddress(*a) for a in doc)


def _envelope_out(env: Envelope) -> list[Any]:
    # Sender and Reply-To are mostly From (RFC 3501 §7.4.2 default): null says so.
    return [
        env.date, env.subject, _addresses_out(env.from_),
        None if env.sender == env.from_ else _addresses_out(env.sender),
        None if env.reply_to == env.from_ else _addresses_out(env.reply_to),
        _addresses_out(env.to), _addresses_out(env.cc), _addresses_out(env.bcc),
        env.in_reply_to, env.message_id,
    ]


def _envelope_in(doc: list[Any]) -> Envelope:
    date, subject, frm, sender, reply_to, to, cc, bcc, in_reply_to, message_id = doc
    from_ = _addresses_in(frm)
    return Envelope(
        date, subject, from_,
        from_ if sender is None else _addresses_in(sender),
        from_ if reply_to is None else _addresses_in(reply_to),
        _addresses_in(to), _addresses_in(cc), _addresses_in(bcc),
        in_reply_to, message_id,
    )


def _params_in(doc: list[list[str]]) -> Params:
    return tuple((name, value) for name, value in doc)


def _part_out(p: BodyPart) -> list[Any]:
    return [
        p.type, p.subtype, p.params, p.id, p.description, p.encoding,
        p.disposition, p.language, p.location, p.md5,
        p.header_start, p.header_end, p.body_end, p.lines,
        [_part_out(c) for c in p.parts],
        None if p.envelope is None else _envelope_out(p.envelope),
    ]


def _part_in(doc: list[Any]) -> BodyPart:
    (kind, sub, params, cid, description, encoding, disposition, language, location, md5,
     header_start, header_end, body_end, lines, parts, envelope) = doc
    return BodyPart(
        type=kind, subtype=sub, params=_params_in(params), id=cid, description=description,
        encoding=encoding,
        disposition=None if disposition is None else (disposition[0], _params_in(disposition[1])),
        language=None if language is None else tuple(language),
        location=location, md5=md5,
        header_start=header_start, header_end=header_end, body_end=body_end, lines=lines,
        parts=tuple(_part_in(c) for c in parts),
        envelope=None if envelope is None else _envelope_in(envelope),
    )
