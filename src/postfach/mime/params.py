"""MIME header values with parameters: Content-Type, Content-Disposition (RFC 2045 §5.1, RFC 2183).

Lenient: comments are dropped, unquoted values may hold characters RFC 2045
forbids (real mail has ``name=my file.pdf``), a parameter without ``=`` is
skipped. RFC 2231 parameters (``name*0*=...``) are kept exactly as written;
collapsing them is the reader's business (IMAP BODYSTRUCTURE sends them as is).
"""

from __future__ import annotations

import re

Params = tuple[tuple[str, str], ...]

# RFC 2045 §5.1 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)("?)', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NAME = re.compile(r"[ \t\r\n]*([^\s;=()\"]+)[ \t\r\n]*")
_UNQUOTED = re.compile(r"[^;]*")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)", re.DOTALL)


def read_comment(text: str, pos: int) -> tuple[int, str]:
    """(end, inner text) of the nested comment at ``pos``; unterminated runs to the end."""
    depth, start, n = 0, pos + 1, len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\":
            pos += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return pos + 1, text[start:pos]
        pos += 1
    return n, text[start:n]


def _skip_cfws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in " \t\r\n":
            pos += 1
        elif ch == "(":
            pos = read_comment(text, pos)[0]
        else:
            break
    return pos


def unquote(quoted_body: str) -> str:
    """The content of a quoted-string (without its quotes), backslash escapes removed."""
    return _QUOTED_PAIR.sub(r"\1", quoted_body) if "\\" in quoted_body else quoted_body


def parse_params(text: str, pos: int = 0) -> Params:
    """Parameters ``; name=value`` from ``pos`` on; names lower-cased, values unquoted."""
    out: list[tuple[str, str]] = []
    n = len(text)
    while pos < n:
        pos = _skip_cfws(text, pos)
        if pos < n and text[pos] == ";":
            pos += 1
            continue
        m = _NAME.match(text, pos)
        if not m or m.end() >= n or text[m.end()] != "=":
            # Not a parameter: skip to the next ";" (outside quotes).
            pos = _skip_junk(text, pos)
            continue
        name = m.group(1).lower()
        pos = _skip_cfws(text, m.end() + 1)
        if pos < n and text[pos] == '"':
            q = _QUOTED.match(text, pos)
            assert q is not None
            value = unquote(q.group(1))
            pos = q.end()
        else:
            u = _UNQUOTED.match(text, pos)
            assert u is not None
            value = u.group(0)
            value = (_COMMENT.sub("", value) if "(" in value else value).strip()
            pos = u.end()
        out.append((name, value))
        pos = _skip_junk(text, pos)
    return tuple(out)


def _skip_junk(text: str, pos: int) -> int:
    """Index of the next ";" at or after ``pos`` (quoted strings skipped), or the end."""
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == ";":
            return pos
        if ch == '"':
            q = _QUOTED.match(text, pos)
            assert q is not None
            pos = q.end()
            continue
        if ch == "(":
            pos = read_comment(text, pos)[0]
            continue
        pos += 1
    return n


def leading_value(text: str) -> str:
    """The value before any parameters, comments removed (e.g. Content-Transfer-Encoding)."""
    return _leading_value(text)[0]


def _leading_value(text: str) -> tuple[str, int]:
    """The value before the first ";" with comments removed, and where the parameters start."""
    end = _skip_junk(text, 0)
    value = text[:end]
    return (_COMMENT.sub("", value) if "(" in value else value).strip(), end


def parse_content_type(text: str) -> tuple[str, str, Params] | None:
    """(type, subtype, params) lower-cased type and subtype, or None if syntactically invalid."""
    value, pos = _leading_value(text)
    kind, slash, sub = value.partition("/")
    kind, sub = kind.strip(), sub.strip()
    if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub):
        return None
    return kind.lower(), sub.lower(), parse_params(text, pos)


def parse_disposition(text: str) -> tuple[str, Params] | None:
    """(disposition type lower-cased, params), or None when there is no type."""
    value, pos = _leading_value(text)
    if not value:
        return None
    return value.lower(), parse_params(text, pos)


def get_param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None
