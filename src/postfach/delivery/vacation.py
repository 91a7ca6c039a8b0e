"""The autoresponder: whether a filed message gets the account's vacation reply, and the reply.

The pipeline asks `Autoresponder.reply_for` for every copy it has filed and
hands what it gets back to itself (`DeliveryPipeline.deliver`, null sender),
so a reply reaches a hosted sender's INBOX or the outbound queue like any
other mail; the vacation settings come with the recipient's facts read at
RCPT, so an account without them costs nothing here. The rules (RFC 3834,
Sieve vacation RFC 5230 §4.5/§4.6), cheapest first, so that ordinary mail
costs no store read unless the header allows a reply:

- never to the null sender, nor to mail with `Auto-Submitted:` other than
  `no`, nor to list mail (`List-*`, `Precedence: bulk|list|junk`), nor to
  senders that are programs (MAILER-DAEMON, owner-*, *-request, noreply, ...);
- only while the vacation is active (start..end, both included, in the
  server's local date), never to the account itself, and only when one of the
  account's addresses (its own or an alias of it) is in To/Cc/Bcc or their
  Resent- forms: mail reaching it through a list, a Bcc or a catch-all is not
  answered;
- at most once per sender per `period` (the store remembers whom it answered;
  setting the vacation again forgets them).

The reply goes to the envelope sender (RFC 3834 §4), says `Auto-Submitted:
auto-replied` (§5), refers to the original (§3.1.5) and leaves with the null
sender (§3.3), which is what stops two autoresponders answering each other.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, compat32
from email.utils import format_datetime, getaddresses

from postfach.address import AddressError, domain_of, normalize_address
from postfach.delivery.recipients import Resolver
from postfach.model import Account, Vacation
from postfach.store.base import Store

DEFAULT_PERIOD = timedelta(days=7)  # RFC 5230 §4.1: the default of :days
_MAX_NAMED = 50  # recipients looked up as possible aliases (each costs store reads)

# RFC 5230 §4.5: the fields in which the account must be named for a reply.
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
# RFC 2369 / RFC 2919: a mailing list's message; RFC 3834 §2: lists are not answered.
_LIST_FIELDS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post", "list-owner",
                "list-archive")
# RFC 3834 §2 / RFC 5230 §4.6: local parts used by programs, which nobody reads.
_PROGRAM_SENDER = re.compile(
    r"^(?:mailer-daemon|listserv|majordomo|owner-.*|.*-owner|.*-request|.*-bounces?"
    r"|no-?reply|do-?not-?reply)$"
)


@dataclass(frozen=True, slots=True)
class VacationReply:
    recipient: str  # the envelope sender of the original
    message: bytes
    claimed_at: int  # unix seconds: the store counts the sender as answered from then on


def header_reason_not_to_reply(sender: str, header: bytes) -> str | None:
    """Why the message (envelope `sender`, header section `header`) must not be answered by any
    autoresponder, or None. Needs nothing but the message."""
    if not sender:
        return "null sender"  # RFC 3834 §3.3: a bounce or another automatic message
    local = sender.rpartition("@")[0].lower()
    if not local or _PROGRAM_SENDER.match(local):
        return "sender is a program"
    fields = _parse(header)
    auto = " ".join(str(value) for value in fields.get_all("auto-submitted", []))
    if auto and auto.split(";", 1)[0].strip().lower() != "no":
        return "auto-submitted"  # RFC 3834 §5.1
    if any(fields.get(name) is not None for name in _LIST_FIELDS):
        return "list mail"
    precedence = str(fields.get("precedence", "")).strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return "precedence " + precedence
    return None


def _parse(header: bytes):
    return BytesHeaderParser(policy=compat32).parsebytes(header)


def _addresses(fields, names: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    values = [str(value) for name in names for value in fields.get_all(name, [])]
    for _, address in getaddresses(values):
        try:
            found.add(normalize_address(address))
        except AddressError:
            continue
    return found


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def build_reply(account: Account, vacation: Vacation, sender: str, header: bytes, now: datetime) -> bytes:
    """The reply (CRLF line ends): From the account, to the envelope sender, referring to the original."""
    original = _parse(header)
    reply = EmailMessage(policy=SMTP)
    reply["From"] = account.address
    reply["To"] = sender
    reply["Subject"] = vacation.subject
    reply["Date"] = format_datetime(now)
    reply["Message-ID"] = f"<{secrets.token_hex(12)}@{domain_of(account.address)}>"
    message_id = _one_line(original.get("message-id", ""))
    if message_id.startswith("<") and message_id.endswith(">") and " " not in message_id:
        # RFC 3834 §3.1.5 and RFC 5322 §3.6.4: the thread goes on from the original.
        reply["In-Reply-To"] = message_id
        references = _one_line(original.get("references", "")).split()
        reply["References"] = " ".join([*references[-20:], message_id])
    reply["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    body = vacation.body if vacation.body.endswith("\n") else vacation.body + "\n"
    reply.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    return reply.as_bytes()


class Autoresponder:
    def __init__(
        self,
        store: Store,
        resolver: Resolver,
        *,
        period: timedelta = DEFAULT_PERIOD,
        today: Callable[[], date] = date.today,  # the server's local date
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._resolver = resolver
        self._period = period
        self._today = today
        self._clock = clock

    async def reply_for(self, account: Account, vacation: Vacation, sender: str,
                        header: bytes) -> VacationReply | None:
        """The reply `account` sends with its `vacation` settings for a message filed in its
        INBOX, or None (most mail)."""
        if not vacation.active_on(self._today()):
            return None
        if header_reason_not_to_reply(sender, header) is not None:
            return None
        try:
            sender = normalize_address(sender)
        except AddressError:
            return None
        # RFC 5230 §4.5: never answer oneself.
        if sender == account.address or await self._resolver.may_send_as(account, sender):
            return None
        named = _addresses(_parse(header), _RECIPIENT_FIELDS)
        if not await self._names_account(account, named):
            return None
        now = self._clock()
        if not await self._store.claim_vacation_reply(account.id, sender, int(now), int(self._period.total_seconds())):
            return None  # RFC 5230 §4.6: answered within the period already
        moment = datetime.fromtimestamp(now, timezone.utc).astimezone()
        return VacationReply(sender, build_reply(account, vacation, sender, header, moment), int(now))

    async def forget(self, account: Account, reply: VacationReply) -> None:
        """The reply could not be sent: the sender was not answered, and their next message is."""
        await self._store.forget_vacation_reply(account.id, reply.recipient, reply.claimed_at)

    async def _names_account(self, account: Account, named: set[str]) -> bool:
        if account.address in named:
            return True
        for address in sorted(named)[:_MAX_NAMED]:
            # Its aliases (followed through chains; not a catch-all: see Resolver.may_send_as).
            if await self._resolver.may_send_as(account, address):
                return True
        return False
