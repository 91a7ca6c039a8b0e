"""What CAPABILITY says, by state and transport (RFC 9051 §6.1.1, §7.2.2).

Only what Postfach really does is listed; a capability joins this table in
the same commit as the handler that implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postfach.imap.session import ImapSession

# Said in every state once the connection may log in.
BASE = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UTF8=ACCEPT")
# Folders, SELECT, APPEND, STATUS, QUOTA (imap/handlers/mailboxes, listing, select, append).
FOLDERS = (
    "UNSELECT", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE",
    "STATUS=SIZE", "QUOTA", "QUOTA=RES-STORAGE",
)
# FETCH, STORE, SEARCH, SORT, THREAD, COPY, MOVE, EXPUNGE (imap/handlers/fetch, store_flags,
# search, copy_move). QRESYNC also rests on SELECT's QRESYNC parameter (handlers/select).
MESSAGES = (
    "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "BINARY", "OBJECTID", "PREVIEW",
)


def capabilities(session: ImapSession) -> list[str]:
    from postfach.imap.session import State

    names = list(BASE)
    if session.state is State.NOT_AUTHENTICATED:
        if not session.tls:
            names.append("STARTTLS")
        if session.plaintext_login_allowed:
            names.append("AUTH=PLAIN")
        else:
            # RFC 9051 §6.2.3: no LOGIN or AUTHENTICATE until the connection is encrypted.
            names.append("LOGINDISABLED")
        return names
    names.extend(FOLDERS)
    names.extend(MESSAGES)
    if not session.compressed:
        names.append("COMPRESS=DEFLATE")
    names.append(f"APPENDLIMIT={session.services.settings.append_limit}")
    return names
