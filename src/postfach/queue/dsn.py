"""Delivery Status Notifications (RFC 3464): the bounce a sender gets for mail that failed.

multipart/report; report-type=delivery-status (RFC 6522) with three parts:
a text for people, message/delivery-status (per-message and per-recipient
fields), and the original's header section (text/rfc822-headers), which is
enough to recognise it without sending a large message back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime


@dataclass(frozen=True, slots=True)
class Failure:
    recipient: str
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str  # the remote reply ("smtp; 550 5.1.1 ...") or our reason
    remote_mta: str | None = None
    original_recipient: str | None = None  # what the sender named, when an alias or forwarding led on


def header_section(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def _clean(text: str) -> str:
    return " ".join(text.split())[:900]


def build_dsn(
    reporting_host: str,
    sender: str,
    failures: list[Failure],
    original: bytes,
    arrival: datetime,
    *,
    expired: bool = False,
    now: datetime | None = None,
) -> bytes:
    """The whole bounce message (CRLF line ends), From: the postmaster of `reporting_host`."""
    now = now or datetime.now(timezone.utc)
    boundary = f"=_postfach_{secrets.token_hex(12)}"
    reason = "could not be delivered in time" if expired else "could not be delivered"
    listing = "\r\n".join(f"  <{f.recipient}>: {_clean(f.diagnostic)}" for f in failures)
    human = (
        f"This is the mail system at {reporting_host}.\r\n\r\n"
        f"Your message {reason} to these recipients:\r\n\r\n{listing}\r\n\r\n"
        "The header of your message is attached.\r\n"
    )
    per_message = (
        f"Reporting-MTA: dns; {reporting_host}\r\n"
        f"Arrival-Date: {format_datetime(arrival)}\r\n"
    )
    per_recipient = []
    for failure in failures:
        fields = [f"Original-Recipient: rfc822; {failure.original_recipient}"] if failure.original_recipient else []
        fields += [
            f"Final-Recipient: rfc822; {failure.recipient}",
            "Action: failed",
            f"Status: {failure.status}",
        ]
        if failure.remote_mta:
            fields.append(f"Remote-MTA: dns; {failure.remote_mta}")
        fields.append(f"Diagnostic-Code: smtp; {_clean(failure.diagnostic)}")
        fields.append(f"Last-Attempt-Date: {format_datetime(now)}")
        per_recipient.append("\r\n".join(fields) + "\r\n")
    status = per_message + "".join("\r\n" + block for block in per_recipient)
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_host}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{secrets.token_hex(12)}@{reporting_host}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
    )
    body = (
        "\r\nThis is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"{status}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered message header\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    ).encode("utf-8")
    return head.encode("utf-8") + body + header_section(original) + f"\r\n--{boundary}--\r\n".encode("ascii")
