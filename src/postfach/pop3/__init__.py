"""POP3 (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034) on the shared store.

Invariants:

- POP3 sees only INBOX, as a snapshot taken at login: messages added later
  are not shown to that session (they are there next time), and message
  numbers never shift during a session.
- A UIDL value is "<uidvalidity>.<uid>" of the message in INBOX: stable for
  the message's life and never reused, because uids never are.
- DELE only marks; deletions reach the store (as a normal expunge, which
  IMAP sessions see through the change event) only on QUIT. A connection
  that ends any other way deletes nothing.
- One session per maildrop at a time (RFC 1939 §8); the lock is in-process.
- The parser and the session never touch a socket; `server.py` is the glue.
"""
