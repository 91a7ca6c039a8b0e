"""Every SMTP reply Postfach words itself, and the one mapping from typed results to them.

Handlers never write reply text: they return one of these `Reply` values or
ask `for_recipient` / `for_delivery` to map a pipeline result. aiosmtpd's own
replies (syntax errors, ordering, limits) lack enhanced status codes, which
we advertise (ENHANCEDSTATUSCODES, RFC 2034), so `enhance` adds the code for
their class (RFC 3463) on the way out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postfach.delivery.pipeline import (
    DeliveryResult,
    MessageRefusal,
    MessageRefused,
    RecipientRefused,
    Refusal,
)


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def positive(self) -> bool:
        return self.code < 400


SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")

# RFC 5321 §4.5.3.1.10: too many recipients is a temporary failure; the client sends the
# rest in another transaction.
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients for one message")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied: this server only accepts mail for its own domains")
OUTBOUND_UNAVAILABLE = Reply(451, "4.3.0", "Outbound delivery is not available yet; try again later")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")

AUTH_NOT_AVAILABLE = Reply(502, "5.5.1", "AUTH is not available on this port; use the submission port")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_MALFORMED = Reply(501, "5.5.2", "Cannot decode the AUTH response")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
# The same answer for every failure: it must not tell which addresses exist (RFC 4954 §6).
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
SENDER_NOT_YOURS = Reply(553, "5.7.1", "Sender address is not yours: use your own address or one of its aliases")
FROM_NOT_YOURS = Reply(553, "5.7.1", "The From: header must name your own address or one of its aliases")

# Sent after the final dot of DATA: the rest of the data was read and dropped (RFC 5321 §4.2.5).
TOO_MUCH_DATA = Reply(552, "5.3.4", "Message too big: it exceeds the size limit (RFC 1870)")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long: at most 1000 octets per line (RFC 5321 4.5.3.1.6)")

# RFC 5321 §2.3.8: CR and LF only as CRLF. A bare one is how SMTP smuggling starts, and
# IMAP clients expect CRLF lines, so such a message is refused, not "repaired".
BARE_LINE_END = Reply(554, "5.6.0", "Message refused: lines must end with CRLF, not a bare CR or LF (RFC 5321 2.3.8)")

_REFUSALS = {
    Refusal.UNKNOWN: Reply(550, "5.1.1", "No such user here"),
    Refusal.MALFORMED: Reply(501, "5.1.3", "Bad recipient address syntax"),
    Refusal.MAILBOX_FULL: Reply(552, "5.2.2", "Mailbox full: the recipient's quota has no room for this message"),
    # RFC 5321 §6.3, RFC 3463: X.4.6 is "routing loop detected".
    Refusal.LOOP: Reply(554, "5.4.6", "Routing loop detected for this address"),
    Refusal.OUTBOUND_UNAVAILABLE: OUTBOUND_UNAVAILABLE,
}
_MESSAGE_REFUSALS = {
    MessageRefusal.TOO_MANY_HOPS: Reply(554, "5.4.6", "Too many hops: the message is looping (RFC 5321 6.3)"),
    MessageRefusal.ALREADY_DELIVERED: Reply(554, "5.4.6", "Mail loop: the message was delivered to this recipient before"),
    # RFC 7489 §6.6.3 (and §10.3: 5.7.1, "delivery not authorized")
    MessageRefusal.DMARC_REJECT: Reply(550, "5.7.1", "Message refused: it fails DMARC and the sender's domain asks to reject it"),
}


def for_recipient(refused: RecipientRefused) -> Reply:
    return _REFUSALS[refused.reason]


def for_delivery(result: DeliveryResult | MessageRefused) -> Reply:
    """The one reply after DATA. SMTP has a single reply for all recipients (RFC 5321
    §4.2.5): if anyone got the message it is 250 (a recipient refused only now gets a DSN,
    handler.py); if nobody did, the refusal itself, a temporary one first, so that the sender
    tries again rather than give up on a recipient that may take the message later."""
    if isinstance(result, MessageRefused):
        return _MESSAGE_REFUSALS[result.reason]
    if result.accepted:
        return Reply(250, "2.0.0", f"Message accepted for delivery, id {result.id}")
    refusals = [for_recipient(refused) for refused in result.refused]
    return next((reply for reply in refusals if reply.code < 500), refusals[0] if refusals else LOCAL_ERROR)


# --- aiosmtpd's own replies ----------------------------------------------------

# RFC 3463 codes for the replies aiosmtpd words without one, by reply code.
_DEFAULT_ENHANCED = {
    221: "2.0.0",
    250: "2.0.0",
    252: "2.5.0",
    421: "4.3.0",
    451: "4.3.0",
    454: "4.7.0",
    500: "5.5.2",  # syntax error, command unrecognised, line too long
    501: "5.5.4",  # invalid arguments
    502: "5.5.1",
    503: "5.5.1",  # bad sequence of commands
    504: "5.5.4",
    530: "5.7.0",  # STARTTLS or AUTH first (RFC 3207 §4, RFC 4954 §6)
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    552: "5.3.4",  # message too big (SIZE, RFC 1870)
    553: "5.1.3",
    554: "5.7.0",  # "refused due to lack of security"
    555: "5.5.4",
}
# Replies that never carry one: the greeting, and the intermediate DATA and AUTH replies
# (RFC 2034 §4; responses to EHLO/HELO are left alone by the caller).
_WITHOUT_ENHANCED = frozenset({220, 334, 354})
_REPLY = re.compile(r"(\d{3})([ -])(.*)", re.DOTALL)
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")


def enhance(status: str) -> str:
    """`status` with an enhanced status code added when it has none."""
    match = _REPLY.fullmatch(status)
    if match is None:
        return status
    code, separator, text = int(match[1]), match[2], match[3]
    if code in _WITHOUT_ENHANCED or _HAS_ENHANCED.match(text):
        return status
    enhanced = _DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0")
    text = text.removeprefix("Error: ")
    return f"{code}{separator}{enhanced} {text}"
