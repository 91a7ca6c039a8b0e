"""aiosmtpd's SMTP protocol on our listeners: binding (port 0 too), implicit TLS, shutdown.

aiosmtpd's `SMTP` is an asyncio Protocol that swaps its own transport for
STARTTLS, so it cannot run on top of `net.Listener`'s streams; this listener
gives it the same outside (`name`, `bound`, `start`, `close`) and creates the
server with `loop.create_server`, as aiosmtpd's controller does.

`SmtpProtocol` adds to aiosmtpd what Postfach needs everywhere: enhanced
status codes on aiosmtpd's own replies (replies.enhance), no AUTH at all
where the handler offers none (the MX), AUTH on implicit TLS, a limit on
connections per address, a connection id in the log, the replies to a
pipelined group of commands in one write (push), and (from
data.SpoolingSMTP) DATA spooled to disk beyond 1 MiB.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import Session, syntax

from postfach.config import ListenAddress
from postfach.connection_limits import ConnectionLimits, peer_host
from postfach.net import (
    SHUTDOWN_GRACE_SECONDS,
    bind_socket,
    format_peer,
    next_connection_id,
)
from postfach.smtp import replies
from postfach.smtp.data import SpoolingSMTP
from postfach.smtp.paths import simple_path

log = logging.getLogger(__name__)

IDENT = "Postfach ESMTP"  # the greeting names no software version
# RFC 5321 §3.1: a server may answer 421 instead of the 220 greeting and close.
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections from your address"


class _Session(Session):
    # aiosmtpd's login_data logs a deprecation warning on every successful AUTH.
    login_data = property(lambda self: self._login_data, lambda self, value: setattr(self, "_login_data", value))


class SmtpProtocol(SpoolingSMTP):
    def __init__(
        self,
        handler: Any,
        *,
        implicit_tls: bool,
        on_lost: Callable[[SmtpProtocol], None],
        limits: ConnectionLimits,
        **options,
    ) -> None:
        self.connection_id = next_connection_id()
        self._limits = limits
        self._counted_host: str | None = None  # the address this connection counts against
        self._lost = False
        self._offers_auth = bool(getattr(handler, "offers_auth", False))
        self._implicit_tls = implicit_tls
        super().__init__(handler, ident=IDENT, **options)
        if implicit_tls:
            # The whole connection is TLS: AUTH is safe from the first command. (Set here, not
            # with auth_require_tls=False, which aiosmtpd warns about on every connection.)
            self._auth_require_tls = False
        self._on_lost = on_lost
        self._ehlo_reply = False
        self._grouping = False  # in a command whose reply may wait for the next ones (push)
        self._held: list[bytes] = []

    @property
    def is_tls(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def _handle_client(self) -> None:
        assert self.transport is not None
        host = peer_host(format_peer(self.transport.get_extra_info("peername")))
        if not await self._limits.open(host):
            log.info("[%d] too many SMTP connections from %s", self.connection_id, host)
            await self.push(TOO_MANY_CONNECTIONS)
            self.transport.close()
            return
        if self._lost:  # the client left while the count was taken: give it back at once
            self._limits.close(host)
            return
        self._counted_host = host
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        self._lost = True
        try:
            super().connection_lost(error)
        finally:
            if self._counted_host is not None:
                self._limits.close(self._counted_host)
                self._counted_host = None
            self._on_lost(self)

    async def push(self, status: str | bytes) -> None:
        """Send a reply; one to MAIL, RCPT or RSET waits while the client's next command is
        already here. RFC 2920 §3.2: a server SHOULD send the replies to such a group as a
        unit, and MUST send the ones it holds as soon as its input buffer is empty."""
        if isinstance(status, str) and not (self._ehlo_reply and status.startswith("250")):
            status = replies.enhance(status)
        if isinstance(status, str):
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        if self._grouping and self._command_waiting():
            self._held.append(status + b"\r\n")
            return
        if self._held:
            status = b"".join(self._held) + status
            self._held.clear()
        await super().push(status)

    def _command_waiting(self) -> bool:
        """A whole line is in the input buffer: reading the next command will not wait."""
        # StreamReader has no public view of what it holds; aiosmtpd itself uses _buffer.
        return b"\n" in self._reader._buffer

    async def _grouped(self, command: Callable[[str], Awaitable[None]], arg: str) -> None:
        self._grouping = True
        try:
            await command(arg)
        finally:
            self._grouping = False

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str) -> None:
        await self._grouped(super().smtp_MAIL, arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str) -> None:
        await self._grouped(super().smtp_RCPT, arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        await self._grouped(super().smtp_RSET, arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        simple = simple_path(arg)  # the usual <local@domain> without aiosmtpd's costly parser
        if simple is not None and not self.local_part_limit:
            return simple
        return super()._getaddr(arg)

    # RFC 2034 §4: no enhanced codes in the replies to EHLO and HELO.
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._ehlo_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._ehlo_reply = False

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._ehlo_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._ehlo_reply = False

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self._offers_auth:
            await self.push(str(replies.AUTH_NOT_AVAILABLE))
            return
        await super().smtp_AUTH(arg)


class SmtpListener:
    """One `host:port` serving SMTP with `handler`; plain (STARTTLS offered with `starttls`) or
    implicit TLS (`implicit_tls`)."""

    def __init__(
        self,
        name: str,
        address: ListenAddress,
        handler: Any,
        *,
        hostname: str,
        max_message_size: int,
        spool_dir: Path,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth_required: bool = False,
        limits: ConnectionLimits | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.handler = handler
        self._sock = sock  # bound already (by the supervisor of several workers), or bind at start
        self._implicit_tls = implicit_tls
        # Shared by the SMTP listeners of one server: an address's connections count on all of them.
        self.limits = limits or ConnectionLimits("smtp", per_address=50)
        # aiosmtpd logs every command line (and every address) at INFO; our handlers log what
        # was decided, so its log says only what went wrong.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._spool_dir = spool_dir  # DATA beyond 1 MiB goes to a temporary file here
        self._options = dict(
            spool_dir=spool_dir,
            hostname=hostname,
            data_size_limit=max_message_size,
            enable_SMTPUTF8=True,  # RFC 6531
            decode_data=False,  # bytes as received: 8BITMIME, and byte-exact storage
            tls_context=starttls,
            require_starttls=require_starttls,
            auth_required=auth_required,
            auth_require_tls=True,
        )
        self._server: asyncio.Server | None = None
        self._connections: set[SmtpProtocol] = set()

    @property
    def bound(self) -> ListenAddress:
        assert self._server is not None, "the listener is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return ListenAddress(host, port)

    def _protocol(self) -> SmtpProtocol:
        protocol = SmtpProtocol(
            self.handler,
            implicit_tls=self._implicit_tls is not None,
            on_lost=self._connections.discard,
            limits=self.limits,
            loop=asyncio.get_running_loop(),
            **self._options,
        )
        self._connections.add(protocol)
        return protocol

    async def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol,
            sock=self._sock or bind_socket(self.name, self.address),
            ssl=self._implicit_tls,
            ssl_handshake_timeout=30 if self._implicit_tls else None,
        )
        log.info("listening: %s on %s%s", self.name, self.bound, " (TLS)" if self._implicit_tls else "")

    async def close(self) -> None:
        """Stop accepting; let deliveries in progress finish (their 250 is owed); close the rest."""
        if self._server is None:
            return
        self._server.close()
        in_flight = tuple(getattr(self.handler, "in_flight", ()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=SHUTDOWN_GRACE_SECONDS)
        sessions = []
        for protocol in tuple(self._connections):
            if protocol._handler_coroutine is not None:
                sessions.append(protocol._handler_coroutine)
            if protocol.transport is not None:
                protocol.transport.close()
        if sessions:
            await asyncio.wait(sessions, timeout=SHUTDOWN_GRACE_SECONDS)
        await self._server.wait_closed()
