"""The one delivery pipeline (ARCHITECTURE.md, principle 3).

Every door hands an accepted message to `DeliveryPipeline.deliver`:

    loop check -> SPF/DKIM/DMARC (MX mail: Authentication-Results, DMARC
    reject) -> drop Authentication-Results claiming to be ours -> per
    recipient: resolve -> quota -> trace fields -> store the bytes ONCE
    (a large message streamed from its spool file) -> append that one file to each recipient's INBOX
    (concurrently: the store commits them in one group) and hand remote
    recipients and forwarding targets to the outbound queue (forwarded with
    an SRS sender) -> quota warnings -> vacation replies (vacation.py; each
    delivered through this pipeline again, null sender) -> typed result

`deliver` returns when every local copy is committed, so a door that gets a
`DeliveryResult` with `accepted` true may acknowledge the message (principle
4). Before DATA a door asks `check_recipient` per RCPT, so that an unknown
user or a full mailbox is refused for that recipient alone, which is the only
time SMTP can refuse one recipient of many; it hands what it found to
`deliver` (`Envelope.resolved`), which judges it again with the real size
instead of resolving the address once more.

Who may send to a recipient outside the hosted domains is the door's policy
(the MX refuses: it is never an open relay; submission lets an authenticated
customer). The pipeline reports such recipients, and remote forwarding
targets, as `ToBeQueued`, and returns only once the queue entry is committed.
A pipeline built without an outbound queue (unit tests) refuses them with
`Refusal.OUTBOUND_UNAVAILABLE` rather than accept mail it cannot send.

Loops: more than `max_hops` Received/Delivered-To fields, or a Delivered-To
naming the recipient already (RFC 5321 §6.3), refuse the message. A message
for one recipient carries `Delivered-To: <recipient>`; a message for several
is stored once for all of them and so names none (the Received count still
catches its loops).
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Protocol

from postfach.address import domain_of
from postfach.delivery.checks import AuthResults, MessageChecks, without_results_of
from postfach.delivery.incoming import IncomingMessage, InMemoryMessage
from postfach.delivery.quota_warnings import check_quota
from postfach.delivery.recipients import Local, Looping, Malformed, NotLocal, Resolver, Unknown
from postfach.delivery.srs import Srs
from postfach.delivery.vacation import DEFAULT_PERIOD, Autoresponder
from postfach.model import Account, Mailbox, MessageMeta
from postfach.store.base import NotFound, QuotaExceeded, StagedBlob, Store

log = logging.getLogger(__name__)

# RFC 5321 §6.3: a message that has passed this many hosts is looping; refuse it (554 5.4.6).
MAX_HOPS = 50

_HOP_FIELD = re.compile(rb"^(?:received|delivered-to)[ \t]*:", re.IGNORECASE | re.MULTILINE)
_DELIVERED_TO = re.compile(rb"^delivered-to[ \t]*:[ \t]*<?([^\s<>]+)>?[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
# What may appear of a client's HELO name in our Received field: printable ASCII, no
# parentheses (they would end the comment) and no spaces.
_HELO_UNSAFE = re.compile(r"[^!-'*-~]")


class Refusal(enum.Enum):
    """Why one recipient does not get the message."""

    UNKNOWN = "unknown"  # no mailbox, alias or catch-all takes the address
    MALFORMED = "malformed"  # not a mail address
    MAILBOX_FULL = "mailbox full"  # the quota has no room for this message
    LOOP = "loop"  # aliases/forwardings go round in circles
    OUTBOUND_UNAVAILABLE = "outbound unavailable"  # needs the outbound queue, which is not built yet


class MessageRefusal(enum.Enum):
    """Why no recipient gets the message."""

    TOO_MANY_HOPS = "too many hops"
    ALREADY_DELIVERED = "already delivered"  # its Delivered-To names the recipient: a forwarding loop
    DMARC_REJECT = "dmarc reject"  # the From: domain's DMARC policy says reject, and it failed


@dataclass(frozen=True, slots=True)
class Trace:
    """Where the message came from, for the Received field (RFC 5321 §4.4)."""

    peer_name: str  # what the client called itself in HELO/EHLO
    peer_address: str  # its IP address
    protocol: str  # RFC 3848: "ESMTP", "ESMTPS" (TLS), "ESMTPSA" (TLS and AUTH)
    authenticate: bool = False  # from the MX: check SPF, DKIM, DMARC and add Authentication-Results


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # the reverse-path; "" is the null sender of bounces
    recipients: tuple[str, ...]  # as the client gave them
    # What the door's check_recipient found for a recipient (at RCPT), to be used again rather
    # than resolved anew; the store still refuses a mailbox removed or filled since.
    resolved: Mapping[str, Local | NotLocal] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class RecipientRefused:
    address: str  # the recipient, or the mailbox of an alias that could not take it
    reason: Refusal
    expanded_from: str | None = None  # the recipient named, when an alias or forwarding led to `address`


@dataclass(frozen=True, slots=True)
class Delivered:
    """One copy filed. `used_bytes`/`quota_bytes` are the seam for quota warnings (80 %/95 %)."""

    recipient: str
    account: Account
    message: MessageMeta
    used_bytes: int  # the account's usage after this message (as read at resolution + its size)
    quota_bytes: int


@dataclass(frozen=True, slots=True)
class ToBeQueued:
    """A remote address the message must be sent on to (a remote recipient or forwarding target)."""

    recipient: str
    targets: tuple[str, ...]
    forwarded: bool = False  # a hosted address sends it on (alias, forwarding, SRS bounce)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    id: str
    delivered: tuple[Delivered, ...]
    queued: tuple[ToBeQueued, ...]
    refused: tuple[RecipientRefused, ...]
    authentication: AuthResults | None = None

    @property
    def accepted(self) -> bool:
        """Someone gets the message: the door acknowledges it (refusals go to a bounce later)."""
        return bool(self.delivered or self.queued)


@dataclass(frozen=True, slots=True)
class MessageRefused:
    reason: MessageRefusal
    authentication: AuthResults | None = None


class Outbound(Protocol):
    """The outbound queue (postfach.queue): takes the message durably for remote addresses."""

    async def enqueue(self, sender: str, recipients: Sequence[str], message: StagedBlob) -> None: ...


def count_hops(message: bytes) -> int:
    """Received and Delivered-To fields in the header section (RFC 5321 §6.3 loop detection)."""
    end = message.find(b"\r\n\r\n")
    header = message if end < 0 else message[: end + 2]
    if header.startswith(b"\r\n"):  # no header section at all
        return 0
    return len(_HOP_FIELD.findall(header))


def delivered_to(message: bytes) -> set[str]:
    """The addresses in the Delivered-To fields of the header section, lower case."""
    end = message.find(b"\r\n\r\n")
    header = message if end < 0 else message[: end + 2]
    return {match.decode("utf-8", "replace").lower() for match in _DELIVERED_TO.findall(header)}


def trace_fields(envelope: Envelope, trace: Trace, hostname: str, message_id: str, now: datetime,
                 authentication: bytes = b"", *, local: bool = True) -> bytes:
    """Return-Path, Delivered-To (one recipient), Authentication-Results (from the MX) and
    Received, to prepend (RFC 5321 §4.4; protocol names from RFC 3848). Delivered-To only
    when the one recipient is `local` (hosted here): mail relayed on carries none of ours."""
    literal = f"[IPv6:{trace.peer_address}]" if ":" in trace.peer_address else f"[{trace.peer_address}]"
    helo = _HELO_UNSAFE.sub("?", trace.peer_name)[:255]
    origin = f"{helo} ({literal})" if helo else literal
    # "for" names the recipient only when there is one: with several, it would tell each
    # recipient who else got the message (RFC 5321 §7.2).
    recipient = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
    delivered = f"Delivered-To: {envelope.recipients[0]}\r\n" if len(envelope.recipients) == 1 and local else ""
    return (
        f"Return-Path: <{envelope.sender}>\r\n{delivered}".encode("utf-8")
        + authentication
        + (
            f"Received: from {origin}\r\n"
            f"\tby {hostname} (Postfach) with {trace.protocol} id {message_id}{recipient};\r\n"
            f"\t{_received_date(now.replace(microsecond=0), now.tzinfo)}\r\n"
        ).encode("utf-8")
    )


@functools.lru_cache(maxsize=4)
def _received_date(now: datetime, zone: object) -> str:
    """RFC 5322 date of a Received field: the same for every delivery within a second. (The
    zone is part of the key: datetimes of one instant in two zones are equal.)"""
    return format_datetime(now)


def _has_room(mailbox: Mailbox, size: int) -> bool:
    return mailbox.account.used_bytes + size <= mailbox.account.quota_bytes


class DeliveryPipeline:
    def __init__(
        self,
        store: Store,
        hostname: str,
        *,
        resolver: Resolver | None = None,
        outbound: Outbound | None = None,
        max_hops: int = MAX_HOPS,
        checks: MessageChecks | None = None,
        srs: Srs | None = None,
        dmarc_reject: bool = True,
        vacation_period: timedelta = DEFAULT_PERIOD,
    ) -> None:
        self._store = store
        self._hostname = hostname
        self.resolver = resolver or Resolver(store)
        self._outbound = outbound
        self._max_hops = max_hops
        self._checks = checks
        self._srs = srs
        self._dmarc_reject = dmarc_reject
        self._autoresponder = Autoresponder(store, self.resolver, period=vacation_period)

    @property
    def hostname(self) -> str:
        return self._hostname

    @property
    def can_queue(self) -> bool:
        return self._outbound is not None

    async def check_recipient(self, address: str, size: int | None = None) -> Local | NotLocal | RecipientRefused:
        """What RCPT should answer: a local recipient to accept, a non-local one (the door's
        policy decides), or a refusal. `size` is the size the client declared (SIZE=), if any."""
        resolution = await self.resolver.resolve(address)
        if self._srs is not None and not isinstance(resolution, (NotLocal, Malformed)):
            if self._srs.is_srs(resolution.address):
                # A bounce to an address our forwarding handed out: back to the original sender.
                original = self._srs.reverse(resolution.address)
                if original is None:
                    return RecipientRefused(resolution.address, Refusal.UNKNOWN)
                resolution = Local(resolution.address, (), (original,))
        match resolution:
            case Unknown():
                return RecipientRefused(resolution.address, Refusal.UNKNOWN)
            case Looping():
                return RecipientRefused(resolution.address, Refusal.LOOP)
            case Malformed():
                return RecipientRefused(resolution.address, Refusal.MALFORMED)
        return self.judge(resolution, size)

    def judge(self, resolution: Local | NotLocal, size: int | None = None) -> Local | NotLocal | RecipientRefused:
        """check_recipient's verdict on a recipient resolved before (at RCPT, judged at DATA
        again with the message's size)."""
        if isinstance(resolution, NotLocal):
            return resolution
        if resolution.remote and not self.can_queue:
            return RecipientRefused(resolution.address, Refusal.OUTBOUND_UNAVAILABLE)
        # A full mailbox refuses the recipient; an alias is refused only when every mailbox
        # behind it is full (the others should not miss the message because of one).
        if resolution.mailboxes and not resolution.remote:
            if not any(_has_room(mailbox, size or 1) for mailbox in resolution.mailboxes):
                return RecipientRefused(resolution.address, Refusal.MAILBOX_FULL)
        return resolution

    async def deliver(self, envelope: Envelope, data: bytes | IncomingMessage,
                      trace: Trace) -> DeliveryResult | MessageRefused:
        """Deliver `data` (a large message comes as a SpooledMessage: it is read in chunks,
        never whole into memory)."""
        message = InMemoryMessage(data) if isinstance(data, bytes) else data
        if count_hops(message.header) > self._max_hops:
            return MessageRefused(MessageRefusal.TOO_MANY_HOPS)
        if delivered_to(message.header) & {recipient.lower() for recipient in envelope.recipients}:
            return MessageRefused(MessageRefusal.ALREADY_DELIVERED)
        authentication: AuthResults | None = None
        if trace.authenticate and self._checks is not None:
            authentication = await self._checks.check(trace.peer_address, trace.peer_name, envelope.sender, message)
            if authentication.dmarc_rejects and self._dmarc_reject:
                log.info("refused from <%s>: DMARC policy of %s is reject", envelope.sender,
                         authentication.from_domain)
                return MessageRefused(MessageRefusal.DMARC_REJECT, authentication)
        # Only our own verdict may name us (RFC 8601 §5); checked on the message as it came.
        header = without_results_of(message.header, self._hostname)
        message_id = secrets.token_hex(8)
        now = datetime.now(timezone.utc).astimezone()
        results_field = authentication.header(self._hostname, envelope.sender) if authentication else b""
        prefix = trace_fields(envelope, trace, self._hostname, message_id, now, results_field)
        # With Delivered-To: at most what is stored.
        size = len(prefix) + len(header) + message.size - len(message.header)

        # What RCPT found stands (resolving again costs store reads per recipient); a mailbox
        # removed or filled since is refused by the store when the copy is filed.
        refused: list[RecipientRefused] = []
        queued: list[ToBeQueued] = []
        # account id -> (recipient, mailbox, the alias or forwarding that led there): one copy each
        targets: dict[int, tuple[str, Mailbox, str | None]] = {}
        for recipient in envelope.recipients:
            known = envelope.resolved.get(recipient)
            verdict = self.judge(known, size) if known is not None else await self.check_recipient(recipient, size)
            match verdict:
                case RecipientRefused():
                    refused.append(verdict)
                case NotLocal():
                    if self.can_queue:
                        queued.append(ToBeQueued(recipient, (verdict.address,)))
                    else:
                        refused.append(RecipientRefused(verdict.address, Refusal.OUTBOUND_UNAVAILABLE))
                case Local():
                    if verdict.remote:
                        queued.append(ToBeQueued(recipient, verdict.remote, forwarded=True))
                    for mailbox in verdict.mailboxes:
                        address = mailbox.account.address
                        via = verdict.address if verdict.address != address else None
                        if mailbox.inbox_id is None:
                            refused.append(RecipientRefused(address, Refusal.UNKNOWN, via))
                        elif not _has_room(mailbox, size):
                            refused.append(RecipientRefused(address, Refusal.MAILBOX_FULL, via))
                        else:
                            targets.setdefault(mailbox.account.id, (recipient, mailbox, via))
        if not (targets or any(entry.forwarded for entry in queued)):
            # Nothing is filed or forwarded here: mail relayed on carries no Delivered-To of ours.
            prefix = trace_fields(envelope, trace, self._hostname, message_id, now, results_field, local=False)
        if not targets and not queued:
            return DeliveryResult(message_id, (), (), tuple(refused))

        content = message.content(prefix, header)
        # The one file (fsynced with the commit that files the copies), in each INBOX at once. An
        # error other than a refused copy propagates: not every copy is durable, so the door must
        # not acknowledge; the sender retries, and a recipient already served may get the message
        # twice, but no recipient loses it.
        staged, outcomes = await self._store.file_message(
            content, [mailbox.inbox_id for _, mailbox, _ in targets.values()]
        )
        filed: list[tuple[Delivered, Mailbox]] = []
        for (recipient, mailbox, via), outcome in zip(targets.values(), outcomes):
            verdict = _filed(recipient, mailbox, via, outcome)
            if isinstance(verdict, Delivered):
                filed.append((verdict, mailbox))
            else:
                refused.append(verdict)
        delivered = [copy for copy, _ in filed]
        if queued:
            await self._enqueue(envelope.sender, queued, staged)
        for copy, mailbox in filed:
            try:
                await check_quota(self._store, mailbox, copy.used_bytes, self._hostname)
            except Exception:  # the message is filed; a missed warning must not undo that
                log.exception("quota warning for %s failed", copy.account.address)
        for _, mailbox in filed:
            await self._answer(mailbox, envelope.sender, header)
        result = DeliveryResult(message_id, tuple(delivered), tuple(queued), tuple(refused), authentication)
        log.info(
            "delivery %s: %d bytes from <%s>, filed for %s%s",
            message_id, size, envelope.sender,
            ", ".join(entry.account.address for entry in delivered) or "nobody",
            "; refused " + ", ".join(f"{r.address} ({r.reason.value})" for r in refused) if refused else "",
        )
        return result

    async def deliver_bounce(self, recipient: str, message: bytes) -> None:
        """A bounce (DSN: from the outbound queue, or from a door for a recipient that failed
        after DATA was accepted), with the null sender: into the sender's INBOX when the sender
        is hosted here, else on to the queue like any remote recipient."""
        trace = Trace(self._hostname, "127.0.0.1", "LOCAL")
        result = await self.deliver(Envelope("", (recipient,)), message, trace)
        if not isinstance(result, DeliveryResult) or not result.accepted:
            # RFC 3464 §2: a bounce that cannot be delivered is dropped, never bounced again.
            log.warning("bounce to <%s> could not be delivered: %s", recipient, result)

    async def _answer(self, mailbox: Mailbox, sender: str, header: bytes) -> None:
        """The account's vacation reply, if it sends one, through this pipeline like any mail."""
        if mailbox.vacation is None:  # most accounts: nothing to look at
            return
        account = mailbox.account
        reply = None
        try:
            reply = await self._autoresponder.reply_for(account, mailbox.vacation, sender, header)
            if reply is None:
                return
            trace = Trace(self._hostname, "127.0.0.1", "LOCAL")
            # RFC 3834 §3.3: the null sender, so that nothing answers the answer.
            result = await self.deliver(Envelope("", (reply.recipient,)), reply.message, trace)
            if isinstance(result, DeliveryResult) and result.accepted:
                return
            log.warning("vacation reply of %s to <%s> could not be delivered: %s",
                        account.address, reply.recipient, result)
        except Exception:  # the message is filed; a reply that fails must not undo that
            log.exception("vacation reply of %s to <%s> failed", account.address, sender)
        if reply is not None:
            try:
                await self._autoresponder.forget(account, reply)
            except Exception:
                log.exception("vacation reply of %s to <%s>: the failed reply still counts as sent",
                              account.address, reply.recipient)

    async def _enqueue(self, sender: str, queued: list[ToBeQueued], staged: StagedBlob) -> None:
        """Remote recipients leave with the sender as it is; targets a hosted address forwards
        to leave with an SRS sender of the forwarding domain, so SPF passes (one entry each)."""
        assert self._outbound is not None
        by_sender: dict[str, list[str]] = {}
        for entry in queued:
            envelope_sender = sender
            if entry.forwarded and self._srs is not None:
                envelope_sender = self._srs.forward(sender, domain_of(entry.recipient.lower()))
            by_sender.setdefault(envelope_sender, []).extend(entry.targets)
        for envelope_sender, targets in by_sender.items():
            await self._outbound.enqueue(envelope_sender, targets, staged)


def _filed(recipient: str, mailbox: Mailbox, via: str | None,
           outcome: MessageMeta | BaseException) -> Delivered | RecipientRefused:
    account = mailbox.account
    match outcome:
        case MessageMeta():
            return Delivered(recipient, account, outcome, account.used_bytes + outcome.size, account.quota_bytes)
        case QuotaExceeded():  # another delivery took the room between the check and now
            return RecipientRefused(account.address, Refusal.MAILBOX_FULL, via)
        case NotFound():  # the mailbox was removed between resolution and filing
            return RecipientRefused(account.address, Refusal.UNKNOWN, via)
    raise outcome
