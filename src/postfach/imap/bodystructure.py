"""FETCH ENVELOPE, BODY and BODYSTRUCTURE from the parse-once model
(RFC 3501 §7.4.2, RFC 9051 §7.5.2; grammar in RFC 9051 §9).

Choices where the RFCs leave room:

- Media type, subtype, transfer encoding, disposition type and parameter
  names are sent in upper case, as in the RFC examples (and Cyrus);
  parameter values exactly as the message has them (RFC 2231 pieces too).
- Every field the grammar calls a string is a quoted string or a literal,
  never an atom; an empty parameter list is NIL; a single Content-Language is
  a string, several are a list.
- BODYSTRUCTURE always sends all four 1-part extension fields (md5, dsp,
  lang, loc) and all four multipart ones (param, dsp, lang, loc).
- A message/rfc822 (or message/global) part the model left as a leaf -- it is
  base64 or quoted-printable encoded, or nested too deep -- is still sent in
  the body-type-msg form the grammar requires for that media type: an
  envelope of NILs and an empty text/plain body, with its real size and lines.
- A multipart that could not be split (no boundary) is sent as a 1-part body
  of its own type, matching section numbering (its body is part 1).
"""

from __future__ import annotations

from postfach.imap.responses import nstring, string
from postfach.mime.model import MESSAGE_TYPES, BodyPart, Envelope, EnvelopeAddress

_EMPTY_TEXT = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)'
_EMPTY_TEXT_EXT = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'


def _address(a: EnvelopeAddress, utf8: bool) -> bytes:
    return (b"(" + nstring(a.name, utf8) + b" " + nstring(a.adl, utf8) + b" "
            + nstring(a.mailbox, utf8) + b" " + nstring(a.host, utf8) + b")")


def _addresses(addresses: tuple[EnvelopeAddress, ...], utf8: bool) -> bytes:
    # env-from = "(" 1*address ")" / nil: addresses follow each other without a space.
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(_address(a, utf8) for a in addresses) + b")"


def envelope(env: Envelope, utf8: bool = False) -> bytes:
    """The parenthesised envelope: date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id."""
    fields = [
        nstring(env.date, utf8), nstring(env.subject, utf8),
        _addresses(env.from_, utf8), _addresses(env.sender, utf8), _addresses(env.reply_to, utf8),
        _addresses(env.to, utf8), _addresses(env.cc, utf8), _addresses(env.bcc, utf8),
        nstring(env.in_reply_to, utf8), nstring(env.message_id, utf8),
    ]
    return b"(" + b" ".join(fields) + b")"


def _params(params: tuple[tuple[str, str], ...], utf8: bool) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(k.upper(), utf8) + b" " + string(v, utf8) for k, v in params) + b")"


def _disposition(part: BodyPart, utf8: bool) -> bytes:
    if part.disposition is None:
        return b"NIL"
    kind, params = part.disposition
    return b"(" + string(kind.upper(), utf8) + b" " + _params(params, utf8) + b")"


def _language(part: BodyPart, utf8: bool) -> bytes:
    if not part.language:
        return b"NIL"
    if len(part.language) == 1:
        return string(part.language[0], utf8)
    return b"(" + b" ".join(string(t, utf8) for t in part.language) + b")"


def _extension(part: BodyPart, utf8: bool) -> list[bytes]:
    return [_disposition(part, utf8), _language(part, utf8), nstring(part.location, utf8)]


def body_structure(part: BodyPart, extensible: bool = True, utf8: bool = False) -> bytes:
    """BODYSTRUCTURE (``extensible``) or BODY of a part, usually the message's root."""
    if part.is_multipart:
        # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        out = b"(" + b"".join(body_structure(p, extensible, utf8) for p in part.parts)
        out += b" " + string(part.subtype.upper(), utf8)
        if extensible:
            out += b" " + b" ".join([_params(part.params, utf8)] + _extension(part, utf8))
        return out + b")"
    fields = [
        string(part.type.upper(), utf8), string(part.subtype.upper(), utf8),
        _params(part.params, utf8), nstring(part.id, utf8), nstring(part.description, utf8),
        string(part.encoding.upper(), utf8), b"%d" % part.size,
    ]
    if (part.type, part.subtype) in MESSAGE_TYPES:
        # body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
        if part.is_message:
            inner = part.parts[0]
            fields.append(envelope(part.envelope or Envelope(), utf8))
            fields.append(body_structure(inner, extensible, utf8))
        else:
            fields.append(envelope(Envelope(), utf8))
            fields.append(_EMPTY_TEXT_EXT if extensible else _EMPTY_TEXT)
        fields.append(b"%d" % (part.lines or 0))
    elif part.type == "text":
        fields.append(b"%d" % (part.lines or 0))
    if extensible:
        fields.append(nstring(part.md5, utf8))
        fields.extend(_extension(part, utf8))
    return b"(" + b" ".join(fields) + b")"
