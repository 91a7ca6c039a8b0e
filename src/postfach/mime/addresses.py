"""RFC 5322 §3.4 address lists, turned into IMAP envelope addresses (RFC 3501 §7.4.2).

The parser is lenient and total: whatever the header holds, it returns the
addresses it can make out and never raises. Rules, in the order IMAP needs:

- ``name`` is the display name: words joined by one space, quoted-strings
  unquoted and unescaped, RFC 2047 encoded-words kept verbatim. With no
  display name, a trailing comment (``user@host (Name)``) stands in, as in
  Dovecot.
- ``adl`` is the obsolete source route (``<@a,@b:user@host>``) as written.
- ``mailbox`` is the local part as written (a quoted local part keeps its
  quotes, so that ``mailbox@host`` is again a valid address); ``host`` the
  domain. An address without ``@`` gets host ``""`` -- never NIL, because a
  NIL host marks group syntax.
- Group syntax (RFC 3501 §7.4.2): the group start is an address whose
  mailbox is the group name and whose host is None; the group end is an
  address with all four fields None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postfach.mime.model import EnvelopeAddress
from postfach.mime.params import read_comment

# Everything the tokenizer does not treat otherwise is atom text (lenient).
_ATOM = re.compile(r'[^ \t\r\n()<>@,;:\\".\[\]]+')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_DOMAIN_LITERAL = re.compile(r"\[(?:[^\]\\]|\\.)*\]?", re.DOTALL)
_WSP = re.compile(r"[ \t\r\n]+")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)

# Token kinds.
ATOM, QUOTED, LITERAL, SPECIAL, COMMENT = range(5)

# Headers longer than this are cut before tokenizing: an envelope is for
# display, and a megabyte of To: must not stall delivery.
MAX_ADDRESS_HEADER = 256 * 1024


@dataclass(frozen=True, slots=True)
class Token:
    kind: int
    text: str  # ATOM/SPECIAL: as written; QUOTED: with quotes; COMMENT: inner text
    space_before: bool  # white space or a comment precedes it


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, n = 0, len(text)
    space = False
    while pos < n:
        ch = text[pos]
        if ch in " \t\r\n":
            pos = _WSP.match(text, pos).end()  # type: ignore[union-attr]
            space = True
            continue
        if ch == "(":
            end, inner = read_comment(text, pos)
            tokens.append(Token(COMMENT, inner, space))
            pos, space = end, True
            continue
        if ch == '"':
            m = _QUOTED.match(text, pos)
            assert m is not None
            body = m.group(1)
            tokens.append(Token(QUOTED, '"' + body + '"', space))
            pos = m.end()
        elif ch == "[":
            m = _DOMAIN_LITERAL.match(text, pos)
            assert m is not None
            tokens.append(Token(LITERAL, m.group(0), space))
            pos = m.end()
        elif ch in "<>@,;:.])\\":  # ")" without "(": stray, kept as a special
            tokens.append(Token(SPECIAL, ch, space))
            pos += 1
        else:
            m = _ATOM.match(text, pos)
            assert m is not None
            tokens.append(Token(ATOM, m.group(0), space))
            pos = m.end()
        space = False
    return tokens


def _unquote(quoted: str) -> str:
    body = quoted[1:-1] if len(quoted) >= 2 and quoted.endswith('"') else quoted[1:]
    return _QUOTED_PAIR.sub(r"\1", body) if "\\" in body else body


def _phrase(tokens: list[Token]) -> str | None:
    """Display name: words separated by one space where the header had space."""
    out: list[str] = []
    for tok in tokens:
        if tok.kind == COMMENT:
            continue
        text = _unquote(tok.text) if tok.kind == QUOTED else tok.text
        if out and tok.space_before:
            out.append(" ")
        out.append(text)
    name = "".join(out).strip()
    return name or None


def _joined(tokens: list[Token]) -> str:
    """Local part / domain / route as written, without white space and comments."""
    return "".join(t.text for t in tokens if t.kind != COMMENT)


def _addr_spec(tokens: list[Token], name: str | None, adl: str | None) -> EnvelopeAddress:
    at = None
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i].kind == SPECIAL and tokens[i].text == "@":
            at = i
            break
    if at is None:
        return EnvelopeAddress(name, adl, _joined(tokens), "")
    return EnvelopeAddress(name, adl, _joined(tokens[:at]), _joined(tokens[at + 1:]))


def _angle(tokens: list[Token], name: str | None) -> EnvelopeAddress:
    """The address inside ``<...>``: an optional route, then an addr-spec."""
    colon = None
    for i, tok in enumerate(tokens):
        if tok.kind == SPECIAL and tok.text == ":":
            colon = i
    adl = None
    if colon is not None:
        adl = _joined(tokens[:colon]) or None
        tokens = tokens[colon + 1:]
    return _addr_spec(tokens, name, adl)


def _is(tok: Token, chars: str) -> bool:
    return tok.kind == SPECIAL and tok.text in chars


def parse_address_list(text: str | None) -> tuple[EnvelopeAddress, ...]:
    """The envelope addresses of one address-list header; () when there are none."""
    if not text:
        return ()
    tokens = tokenize(text[:MAX_ADDRESS_HEADER])
    out: list[EnvelopeAddress] = []
    in_group = False
    i, n = 0, len(tokens)
    while i < n:
        # One mailbox, group start or group end: up to "," ";" ":" or "<".
        j = i
        while j < n and not _is(tokens[j], ",;:<"):
            j += 1
        chunk = tokens[i:j]
        stop = tokens[j].text if j < n else ""
        if stop == ":" and not in_group:
            out.append(EnvelopeAddress(None, None, _phrase(chunk) or "", None))
            in_group = True
            i = j + 1
            continue
        if stop == "<":
            k = j + 1
            while k < n and not _is(tokens[k], ">"):
                k += 1
            out.append(_angle(tokens[j + 1:k], _phrase(chunk)))
            # Anything after ">" up to the next separator is junk (or a comment).
            j = k + 1
            while j < n and not _is(tokens[j], ",;"):
                j += 1
            stop = tokens[j].text if j < n else ""
        elif any(t.kind != COMMENT for t in chunk):
            comments = [t.text for t in chunk if t.kind == COMMENT]
            name = _phrase([Token(ATOM, comments[-1], False)]) if comments else None
            out.append(_addr_spec([t for t in chunk if t.kind != COMMENT], name, None))
        if stop == ";" and in_group:
            out.append(EnvelopeAddress(None, None, None, None))
            in_group = False
        i = j + 1
    if in_group:
        # RFC 5322 requires the ";", but a missing one still closes the group.
        out.append(EnvelopeAddress(None, None, None, None))
    return tuple(out)
