"""SMTP: the MX (`smtp`) and submission (`submission`, `submissions`) doors, on aiosmtpd.

Invariants:

- aiosmtpd speaks the protocol; the handlers (inbound.py, submission.py) are
  thin adapters into `postfach.delivery`, and replies.py is the one place
  that words a reply.
- Every accepted message goes through `DeliveryPipeline.deliver`, and 250
  after DATA is sent only when it returned, i.e. when every copy is durable.
- The MX never relays; submission requires TLS, then AUTH, and a sender that
  belongs to the account.
"""

from __future__ import annotations

import socket
import ssl

from postfach.auth.authenticator import Authenticator
from postfach.config import Config, ListenAddress
from postfach.connection_limits import ConnectionLimits
from postfach.delivery.pipeline import DeliveryPipeline
from postfach.smtp.inbound import InboundHandler
from postfach.smtp.listener import SmtpListener
from postfach.smtp.submission import SubmissionHandler

SMTP_LISTENERS = frozenset({"smtp", "submission", "submissions"})


def smtp_listener(
    name: str,
    address: ListenAddress,
    config: Config,
    tls: ssl.SSLContext,
    pipeline: DeliveryPipeline,
    authenticator: Authenticator,
    limits: ConnectionLimits | None = None,
    sock: socket.socket | None = None,
) -> SmtpListener:
    """The listener `name` (one of SMTP_LISTENERS) with its handler and TLS set up.

    Give every SMTP listener of a server the same `limits`: they count an address's connections
    together (`smtp.max_connections_per_address`).
    """
    if limits is None:
        limits = ConnectionLimits("smtp", config.smtp_max_connections_per_address)
    options = dict(
        hostname=config.hostname, max_message_size=config.smtp_max_message_size, limits=limits, sock=sock,
        spool_dir=config.data_dir / "spool",
    )
    if name == "smtp":
        handler = InboundHandler(pipeline, max_recipients=config.smtp_max_recipients)
        return SmtpListener(name, address, handler, starttls=tls, **options)
    handler = SubmissionHandler(pipeline, authenticator, max_recipients=config.smtp_max_recipients)
    if name == "submission":
        return SmtpListener(name, address, handler, starttls=tls, require_starttls=True, auth_required=True, **options)
    if name == "submissions":
        return SmtpListener(name, address, handler, implicit_tls=tls, auth_required=True, **options)
    raise ValueError(f"{name} is not an SMTP listener")
