"""What the MX and submission handlers share: EHLO extensions, RCPT limits, DATA into the pipeline.

The handlers are thin adapters (STYLE.md, aiosmtpd): aiosmtpd's `SMTP` does
syntax, command order, line and size limits (DATA itself: data.py); a handler
asks `delivery/` and maps the typed answer with `replies`. A subclass says
only what differs between the doors: who may be the sender (`check_sender`),
what happens to a recipient outside our domains (`non_local`), and what it
checks in the message's header (`check_message`).

Once DATA is answered 250 the message is ours to deliver (RFC 5321 §3.7,
§6.1): a recipient accepted at RCPT that cannot take it after all (its
mailbox filled meanwhile, a forwarding target's did) is told to the sender in
a DSN (RFC 3464), filed before the 250 goes out.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.smtp import Session

from postfach.delivery.incoming import IncomingMessage, InMemoryMessage, SpooledMessage
from postfach.delivery.pipeline import DeliveryPipeline, DeliveryResult, Envelope, MessageRefused, RecipientRefused, Trace
from postfach.delivery.recipients import Local, NotLocal
from postfach.queue.dsn import Failure, build_dsn
from postfach.smtp import replies
from postfach.smtp.data import DataEnvelope
from postfach.smtp.replies import Reply

log = logging.getLogger(__name__)

_SIZE_PARAMETER = re.compile(r"SIZE=(\d{1,20})", re.IGNORECASE)

# Advertised next to what aiosmtpd advertises itself (SIZE, 8BITMIME, SMTPUTF8, STARTTLS,
# AUTH): aiosmtpd answers pipelined commands in order (RFC 2920), and every reply carries
# an enhanced code (RFC 2034; SmtpProtocol.push adds it to aiosmtpd's own replies).
EXTRA_EXTENSIONS = ("PIPELINING", "ENHANCEDSTATUSCODES")


def declared_size(mail_options: list[str]) -> int | None:
    """The SIZE= the client declared in MAIL FROM (RFC 1870), if it did."""
    for option in mail_options:
        match = _SIZE_PARAMETER.fullmatch(option)
        if match:
            return int(match[1])
    return None


def peer_address(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class DeliveringHandler:
    offers_auth = False
    authenticate = False  # SPF/DKIM/DMARC checks and Authentication-Results (the MX)

    def __init__(self, pipeline: DeliveryPipeline, *, max_recipients: int) -> None:
        self.pipeline = pipeline
        self.max_recipients = max_recipients
        # Deliveries under way; the listener lets them finish before it closes connections.
        self.in_flight: set[asyncio.Task] = set()

    # --- what a door decides ------------------------------------------------------------

    async def check_sender(self, server: Any, session: Session, address: str) -> Reply:
        return replies.SENDER_OK

    def non_local(self, verdict: NotLocal) -> Reply:
        raise NotImplementedError

    async def check_message(self, server: Any, session: Session, header: bytes) -> Reply | None:
        """A refusal of the message, judged by its header section, or None."""
        return None

    def protocol_name(self, server: Any, session: Session) -> str:
        """RFC 3848 "with" value for the Received field."""
        name = "ESMTP" if session.extended_smtp else "SMTP"
        if getattr(server, "is_tls", False):
            name += "S"
        if session.authenticated:
            name += "A"
        return name

    # --- aiosmtpd hooks -----------------------------------------------------------------

    async def handle_EHLO(self, server: Any, session: Session, envelope: DataEnvelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [line for line in responses[:-1] if self.offers_auth or not line.startswith("250-AUTH")]
        return [*lines, *(f"250-{extension}" for extension in EXTRA_EXTENSIONS), responses[-1]]

    async def handle_MAIL(self, server: Any, session: Session, envelope: DataEnvelope, address: str,
                          mail_options: list[str]) -> str:
        reply = await self.check_sender(server, session, address)
        if reply.positive:
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return str(reply)

    async def handle_RCPT(self, server: Any, session: Session, envelope: DataEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        verdict = await self.pipeline.check_recipient(address, declared_size(envelope.mail_options))
        match verdict:
            case RecipientRefused():
                reply = replies.for_recipient(verdict)
            case NotLocal():
                reply = self.non_local(verdict)
            case Local():
                reply = replies.RECIPIENT_OK
        if reply.positive:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.resolved[address] = verdict  # the pipeline uses it again at DATA
        return str(reply)

    async def handle_DATA(self, server: Any, session: Session, envelope: DataEnvelope) -> str:
        data = envelope.message
        assert data is not None, "SpoolingSMTP.smtp_DATA sets the message"
        message = InMemoryMessage(data) if isinstance(data, bytes) else data
        refusal = await self.check_message(server, session, message.header)
        if refusal is not None:
            return str(refusal)
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        trace = Trace(session.host_name or "", peer_address(session), self.protocol_name(server, session),
                      authenticate=self.authenticate)
        # The delivery may outlive this hook (below); it reads a spool file through its own copy.
        if isinstance(message, SpooledMessage):
            message = message.duplicate()
        delivery = asyncio.ensure_future(
            self._deliver(server.connection_id, Envelope(sender, tuple(envelope.rcpt_tos), envelope.resolved), message,
                          trace)
        )
        self.in_flight.add(delivery)
        delivery.add_done_callback(self._delivery_done)
        # Shielded: a client that hangs up now does not cancel filing half-way; it just
        # misses the 250 and sends again (a duplicate at worst, never a loss).
        try:
            result: DeliveryResult | MessageRefused = await asyncio.shield(delivery)
        except Exception:  # logged by _delivery_done, with or without a client to tell
            return str(replies.LOCAL_ERROR)
        return str(replies.for_delivery(result))

    async def _deliver(self, connection_id: int, envelope: Envelope, message: IncomingMessage,
                       trace: Trace) -> DeliveryResult | MessageRefused:
        try:
            result = await self.pipeline.deliver(envelope, message, trace)
            if isinstance(result, DeliveryResult) and result.accepted and result.refused:
                await self._report_refused(connection_id, envelope, result, message.header)
            return result
        finally:
            if isinstance(message, SpooledMessage):
                message.close()

    async def _report_refused(self, connection_id: int, envelope: Envelope, result: DeliveryResult,
                              header: bytes) -> None:
        """The 250 will say the message is accepted, so the sender learns of the recipients that
        did not get it from a DSN (RFC 5321 §6.1), never a null sender (§4.5.5: no bounce loops)."""
        log.warning("[%d] delivery %s: not filed for %s%s", connection_id, result.id,
                    ", ".join(f"{r.address} ({r.reason.value})" for r in result.refused),
                    "; a DSN goes to the sender" if envelope.sender else "; null sender: no DSN")
        if not envelope.sender:
            return
        failures = []
        for refused in result.refused:
            reply = replies.for_recipient(refused)
            failures.append(Failure(refused.address, reply.enhanced, str(reply),
                                    original_recipient=refused.expanded_from))
        dsn = build_dsn(self.pipeline.hostname, envelope.sender, failures, header, datetime.now(timezone.utc))
        await self.pipeline.deliver_bounce(envelope.sender, dsn)

    def _delivery_done(self, task: asyncio.Task) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery failed; nothing was acknowledged", exc_info=task.exception())

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd passes no session; the traceback is logged here and the client hears a
        # temporary failure, so a well-behaved sender tries again.
        log.error("SMTP session failed", exc_info=error)
        return str(replies.LOCAL_ERROR)
