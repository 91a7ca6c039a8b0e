"""The asyncio glue around the POP3 session: read → feed → write, STLS, idle timeout, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl

from postfach.auth.authenticator import Authenticator
from postfach.connection_limits import ConnectionLimits, Slots, peer_host
from postfach.net import Connection
from postfach.pop3.maildrop import MaildropLocks
from postfach.pop3.parser import NEED_DATA, Parser
from postfach.pop3.responses import SYS_TEMP, Reply, err
from postfach.pop3.session import MAX_COMMANDS_BEFORE_LOGIN, Session
from postfach.store.base import Store

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
SEND_SIZE = 64 * 1024  # replies are written in pieces of about this size
# RFC 1939 §3: an autologout timer, if any, "MUST be of at least 10 minutes' duration".
DEFAULT_IDLE_TIMEOUT = 600.0


class Pop3Server:
    """Serves the `pop3` listener (plain, STLS) and `pop3s` (implicit TLS) on one store."""

    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        tls_context: ssl.SSLContext,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        allow_plaintext_on_loopback: bool = False,
        exclusive_lock: bool = False,
        limits: ConnectionLimits | None = None,
        max_commands_before_login: int = MAX_COMMANDS_BEFORE_LOGIN,
        slots: Slots | None = None,
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._tls_context = tls_context
        self._idle_timeout = idle_timeout
        self._allow_plaintext_on_loopback = allow_plaintext_on_loopback
        self.locks = MaildropLocks(exclusive_lock, slots)
        self.limits = limits or ConnectionLimits("pop3", per_address=50)
        self._max_commands_before_login = max_commands_before_login

    async def serve_plain(self, connection: Connection) -> None:
        """The `pop3` listener: plaintext, STLS offered (RFC 2595 §4)."""
        await self._serve(connection, stls_offered=True)

    async def serve_tls(self, connection: Connection) -> None:
        """The `pop3s` listener: the Listener has done the TLS handshake already."""
        await self._serve(connection, stls_offered=False)

    async def _serve(self, connection: Connection, *, stls_offered: bool) -> None:
        host = peer_host(connection.peer)
        if not await self.limits.open(host):
            log.info("[%d] too many POP3 connections from %s", connection.id, host)
            # Instead of the greeting: [SYS/TEMP] tells the client to try later (RFC 3206 §4).
            await self._write(connection, err("too many connections from your address", SYS_TEMP).data)
            return
        try:
            await self._serve_session(connection, stls_offered=stls_offered)
        finally:
            self.limits.close(host)

    async def _serve_session(self, connection: Connection, *, stls_offered: bool) -> None:
        session = Session(
            self._store,
            self._authenticator,
            self.locks,
            tls_active=connection.is_tls,
            stls_offered=stls_offered,
            plaintext_allowed=self._allow_plaintext_on_loopback and _is_loopback(connection),
            connection_id=connection.id,
            source=connection.peer,
            max_commands_before_login=self._max_commands_before_login,
        )
        parser = Parser()
        try:
            await self._write(connection, session.greeting())
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout):  # no task around the read, as wait_for makes
                        data = await connection.reader.read(READ_SIZE)
                except TimeoutError:
                    # RFC 1939 §3: on autologout close without a response and without UPDATE.
                    log.info("[%d] POP3 idle for %.0f s, closing", connection.id, self._idle_timeout)
                    return
                if not data:
                    return
                parser.feed(data)
                while (command := parser.next_command()) is not NEED_DATA:
                    reply = await session.handle(command)
                    if reply.start_tls:
                        await self._start_tls(connection, parser, reply.data)
                        session.tls_started()
                        continue
                    await self._send(connection, reply)
                    if reply.close:
                        return
                    if reply.continuation:
                        parser.expect_sasl_response()
        except TimeoutError:
            log.info("[%d] POP3 client stopped reading, closing", connection.id)
        finally:
            await session.close()

    async def _start_tls(self, connection: Connection, parser: Parser, answer: bytes) -> None:
        # Whatever the client sent after STLS and before our +OK is plaintext that must not be
        # read as if it came over TLS: a man in the middle could inject commands that way (the
        # STARTTLS command injection flaw, CVE-2011-0411). Drop our buffer and the reader's.
        dropped = parser.discard() + await connection.start_tls(self._tls_context, answer)
        if dropped:
            log.warning("[%d] POP3 discarded %d bytes sent after STLS before TLS", connection.id, dropped)

    async def _send(self, connection: Connection, reply: Reply) -> None:
        # A reply and the message it carries go out in pieces of SEND_SIZE: a 10 KB message as
        # one TLS record and one send, not three (status line, message, final dot).
        pending, size = [reply.data], len(reply.data)
        if reply.body is not None:
            async with contextlib.aclosing(reply.body) as body:
                async for chunk in body:
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= SEND_SIZE:
                        await self._write(connection, b"".join(pending))
                        pending, size = [], 0
        if pending:
            await self._write(connection, b"".join(pending))

    async def _write(self, connection: Connection, data: bytes) -> None:
        connection.writer.write(data)
        if connection.writer.transport.get_write_buffer_size() > SEND_SIZE:
            # A client that stops reading is idle too: it cannot hold a session (and its lock) forever.
            await asyncio.wait_for(connection.writer.drain(), self._idle_timeout)


def _is_loopback(connection: Connection) -> bool:
    peer = connection.writer.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
