"""IMAP protocol core, without I/O (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1).

Modules: ``parser`` (framing and events), ``reader`` (grammar tokens over a
framed command), ``grammar``/``grammar_fetch``/``grammar_search`` (the
command grammar), ``commands``/``fetch_items``/``search_keys`` (what the
parser returns), ``sequence`` (sequence sets), ``mutf7`` (mailbox names),
``responses`` (bytes out), ``bodystructure`` (ENVELOPE/BODYSTRUCTURE).

Invariants:

- Nothing here imports asyncio or socket, touches the store or raises on
  client input: ``Parser.next_event`` returns a documented event for any
  bytes, and always makes progress or returns NEED_DATA.
- Only the APPEND message literal can be large, and it is never held whole:
  it leaves the parser in ``LiteralChunk`` events as it arrives.
- After any error the parser is at the start of the next command; literal
  data of a rejected command is never parsed as commands.
- Response strings are quoted or literal by construction (``responses``
  encodes by type), so client-supplied text cannot break the framing.
"""
