"""The one delivery pipeline (ARCHITECTURE.md, principle 3).

Every door hands an accepted message to `DeliveryPipeline.deliver`:

    loop check -> per recipient: resolve -> quota -> trace fields ->
    store the bytes ONCE -> append that one file to each recipient's INBOX
    (concurrently: the store commits them in one group) -> typed result

`deliver` returns when every local copy is committed, so a door that gets a
`DeliveryResult` with `accepted` true may acknowledge the message (principle
4). Before DATA a door asks `check_recipient` per RCPT, so that an unknown
user or a full mailbox is refused for that recipient alone, which is the only
time SMTP can refuse one recipient of many.

Who may send to a recipient outside the hosted domains is the door's policy
(the MX refuses: it is never an open relay; submission lets an authenticated
customer). The pipeline reports such recipients, and remote forwarding
targets, as `ToBeQueued`; without an outbound queue (a later slice) it refuses
them with `Refusal.OUTBOUND_UNAVAILABLE` rather than accept mail it cannot send.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Protocol

from postfach.delivery.recipients import Local, Looping, Malformed, NotLocal, Resolver, Unknown
from postfach.model import INBOX, Account, MessageMeta
from postfach.store.base import NotFound, QuotaExceeded, StagedBlob, Store

log = logging.getLogger(__name__)

# RFC 5321 §6.3: a message that has passed this many hosts is looping; refuse it (554 5.4.6).
MAX_HOPS = 50

_HOP_FIELD = re.compile(rb"^(?:received|delivered-to)[ \t]*:", re.IGNORECASE | re.MULTILINE)
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


@dataclass(frozen=True, slots=True)
class Trace:
    """Where the message came from, for the Received field (RFC 5321 §4.4)."""

    peer_name: str  # what the client called itself in HELO/EHLO
    peer_address: str  # its IP address
    protocol: str  # RFC 3848: "ESMTP", "ESMTPS" (TLS), "ESMTPSA" (TLS and AUTH)


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # the reverse-path; "" is the null sender of bounces
    recipients: tuple[str, ...]  # as the client gave them


@dataclass(frozen=True, slots=True)
class RecipientRefused:
    address: str  # the recipient, or the mailbox of an alias that could not take it
    reason: Refusal


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


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    id: str
    delivered: tuple[Delivered, ...]
    queued: tuple[ToBeQueued, ...]
    refused: tuple[RecipientRefused, ...]

    @property
    def accepted(self) -> bool:
        """Someone gets the message: the door acknowledges it (refusals go to a bounce later)."""
        return bool(self.delivered or self.queued)


@dataclass(frozen=True, slots=True)
class MessageRefused:
    reason: MessageRefusal


class Outbound(Protocol):
    """The outbound queue (a later slice): takes the message durably for remote addresses."""

    async def enqueue(self, sender: str, recipients: Sequence[str], message: StagedBlob) -> None: ...


def count_hops(message: bytes) -> int:
    """Received and Delivered-To fields in the header section (RFC 5321 §6.3 loop detection)."""
    end = message.find(b"\r\n\r\n")
    header = message if end < 0 else message[: end + 2]
    if header.startswith(b"\r\n"):  # no header section at all
        return 0
    return len(_HOP_FIELD.findall(header))


def trace_fields(envelope: Envelope, trace: Trace, hostname: str, message_id: str, now: datetime) -> bytes:
    """Return-Path and Received, to prepend (RFC 5321 §4.4; protocol names from RFC 3848)."""
    literal = f"[IPv6:{trace.peer_address}]" if ":" in trace.peer_address else f"[{trace.peer_address}]"
    helo = _HELO_UNSAFE.sub("?", trace.peer_name)[:255]
    origin = f"{helo} ({literal})" if helo else literal
    # "for" names the recipient only when there is one: with several, it would tell each
    # recipient who else got the message (RFC 5321 §7.2).
    recipient = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
    return (
        f"Return-Path: <{envelope.sender}>\r\n"
        f"Received: from {origin}\r\n"
        f"\tby {hostname} (Postfach) with {trace.protocol} id {message_id}{recipient};\r\n"
        f"\t{format_datetime(now)}\r\n"
    ).encode("utf-8")


def _has_room(account: Account, size: int) -> bool:
    return account.used_bytes + size <= account.quota_bytes


class DeliveryPipeline:
    def __init__(
        self,
        store: Store,
        hostname: str,
        *,
        resolver: Resolver | None = None,
        outbound: Outbound | None = None,
        max_hops: int = MAX_HOPS,
    ) -> None:
        self._store = store
        self._hostname = hostname
        self.resolver = resolver or Resolver(store)
        self._outbound = outbound
        self._max_hops = max_hops

    @property
    def can_queue(self) -> bool:
        return self._outbound is not None

    async def check_recipient(self, address: str, size: int | None = None) -> Local | NotLocal | RecipientRefused:
        """What RCPT should answer: a local recipient to accept, a non-local one (the door's
        policy decides), or a refusal. `size` is the size the client declared (SIZE=), if any."""
        resolution = await self.resolver.resolve(address)
        match resolution:
            case NotLocal():
                return resolution
            case Unknown():
                return RecipientRefused(resolution.address, Refusal.UNKNOWN)
            case Looping():
                return RecipientRefused(resolution.address, Refusal.LOOP)
            case Malformed():
                return RecipientRefused(resolution.address, Refusal.MALFORMED)
        if resolution.remote and not self.can_queue:
            return RecipientRefused(resolution.address, Refusal.OUTBOUND_UNAVAILABLE)
        # A full mailbox refuses the recipient; an alias is refused only when every mailbox
        # behind it is full (the others should not miss the message because of one).
        if resolution.mailboxes and not resolution.remote:
            if not any(_has_room(account, size or 1) for account in resolution.mailboxes):
                return RecipientRefused(resolution.address, Refusal.MAILBOX_FULL)
        return resolution

    async def deliver(self, envelope: Envelope, data: bytes, trace: Trace) -> DeliveryResult | MessageRefused:
        if count_hops(data) > self._max_hops:
            return MessageRefused(MessageRefusal.TOO_MANY_HOPS)
        message_id = secrets.token_hex(8)
        now = datetime.now(timezone.utc).astimezone()
        message = trace_fields(envelope, trace, self._hostname, message_id, now) + data
        size = len(message)

        # Resolve every recipient once more: an RCPT check may be minutes old.
        refused: list[RecipientRefused] = []
        queued: list[ToBeQueued] = []
        targets: dict[int, tuple[str, Account]] = {}  # account id -> (recipient, account): one copy each
        for recipient in envelope.recipients:
            verdict = await self.check_recipient(recipient, size)
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
                        queued.append(ToBeQueued(recipient, verdict.remote))
                    for account in verdict.mailboxes:
                        if not _has_room(account, size):
                            refused.append(RecipientRefused(account.address, Refusal.MAILBOX_FULL))
                        else:
                            targets.setdefault(account.id, (recipient, account))
        if not targets and not queued:
            return DeliveryResult(message_id, (), (), tuple(refused))

        staged = await self._store.store_blob(message)  # the one file, fsynced
        outcomes = await asyncio.gather(
            *(self._file(recipient, account, staged) for recipient, account in targets.values()),
            return_exceptions=True,
        )
        delivered: list[Delivered] = []
        failure: BaseException | None = None
        for outcome in outcomes:
            if isinstance(outcome, (Delivered, RecipientRefused)):
                (delivered if isinstance(outcome, Delivered) else refused).append(outcome)
            else:
                failure = failure or outcome
        if failure is not None:
            # Not every copy is durable: the door must not acknowledge. The sender retries, so a
            # recipient already served may get the message twice; no recipient loses it.
            raise failure
        if queued:
            assert self._outbound is not None
            remote = [target for entry in queued for target in entry.targets]
            await self._outbound.enqueue(envelope.sender, remote, staged)
        result = DeliveryResult(message_id, tuple(delivered), tuple(queued), tuple(refused))
        log.info(
            "delivery %s: %d bytes from <%s>, filed for %s%s",
            message_id, size, envelope.sender,
            ", ".join(entry.account.address for entry in delivered) or "nobody",
            "; refused " + ", ".join(f"{r.address} ({r.reason.value})" for r in refused) if refused else "",
        )
        return result

    async def _file(self, recipient: str, account: Account, staged: StagedBlob) -> Delivered | RecipientRefused:
        folder = await self._store.get_folder(account.id, INBOX)
        if folder is None:
            raise NotFound(f"the mailbox {account.address} has no INBOX")
        try:
            meta = await self._store.append(folder.id, staged)
        except QuotaExceeded:
            # Another delivery took the room between the check and now.
            return RecipientRefused(account.address, Refusal.MAILBOX_FULL)
        except NotFound:
            # The mailbox was removed between resolution and filing.
            return RecipientRefused(account.address, Refusal.UNKNOWN)
        return Delivered(recipient, account, meta, account.used_bytes + meta.size, account.quota_bytes)
