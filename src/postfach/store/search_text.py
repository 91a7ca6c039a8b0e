"""What the full-text index holds for a message: its header text and its body text, apart.

IMAP SEARCH TEXT looks in both, BODY only in the body (RFC 9051 §6.4.4), so
the two are indexed as separate columns. Both are case-folded here, once, so
that a substring query is an exact, case-insensitive match.
"""

from __future__ import annotations

import re

from postfach.mime import MessageData, ParsedMessage
from postfach.mime.headers import HeaderFields, decode_value
from postfach.mime.text import decode_header_text, search_text

_FOLD = re.compile(rb"\r?\n(?=[ \t])")
MAX_HEAD_BYTES = 256 * 1024


def index_texts(data: MessageData, parsed: ParsedMessage) -> tuple[str, str]:
    """(head, body): decoded header fields one per line, and decoded body text; case-folded."""
    buf = data.tobytes() if isinstance(data, memoryview) else data
    root = parsed.structure
    try:
        block = bytes(buf[root.header_start:min(root.header_end, root.header_start + MAX_HEAD_BYTES)])
        head = "\n".join(
            decode_header_text(decode_value(line).strip()) for line in _FOLD.sub(b"", block).splitlines()
        )
        body = search_text(buf, root, HeaderFields({}))
    except Exception:  # a bug of ours must not stop delivery; the message is then unsearchable by text
        return "", ""
    return head.casefold(), body.casefold()
