"""FETCH ENVELOPE from a message's header fields (RFC 3501 §7.4.2, RFC 9051 §7.5.2)."""

from __future__ import annotations

from postfach.mime.addresses import parse_address_list
from postfach.mime.headers import HeaderFields
from postfach.mime.model import Envelope


def build_envelope(fields: HeaderFields) -> Envelope:
    from_ = parse_address_list(fields.get("from"))
    # RFC 3501 §7.4.2: "If the Sender or Reply-To lines are absent in the
    # [RFC-2822] header, or are present but empty, the server sets the
    # corresponding member of the envelope to be the same value as the from
    # member."
    sender = parse_address_list(fields.get("sender")) or from_
    reply_to = parse_address_list(fields.get("reply-to")) or from_
    return Envelope(
        date=fields.get("date"),
        subject=fields.get("subject"),
        from_=from_,
        sender=sender,
        reply_to=reply_to,
        to=parse_address_list(fields.get("to")),
        cc=parse_address_list(fields.get("cc")),
        bcc=parse_address_list(fields.get("bcc")),
        in_reply_to=fields.get("in-reply-to"),
        message_id=fields.get("message-id"),
    )
