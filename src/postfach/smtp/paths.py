"""The paths of MAIL FROM and RCPT TO (RFC 5321 §4.1.2), the common form read quickly.

aiosmtpd reads every path with the email package's RFC 5322 header parser,
which costs more than all the rest of a MAIL or RCPT command. Nearly every
path is `<local@domain>` with a dot-atom on both sides; `simple_path` reads
that form with one regular expression and gives the same result aiosmtpd's
`SMTP._getaddr` would. Anything else (the null path `<>`, quoted local parts,
address literals, source routes, comments, non-ASCII) it leaves to aiosmtpd.
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"  # RFC 5322 §3.2.3, ASCII only
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE = re.compile(rf"[ \t]*<({_DOT_ATOM}@{_DOT_ATOM})>[ \t]*")


def simple_path(arg: str) -> tuple[str, str] | None:
    """(address, the rest of the arguments) for `<dot-atom@dot-atom>`, or None for another form."""
    match = _SIMPLE.match(arg)
    if match is None or arg.startswith("(", match.end()):  # a comment: the full parser's job
        return None
    return match[1], arg[match.end():]
