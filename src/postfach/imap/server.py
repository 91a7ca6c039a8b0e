"""The asyncio side of IMAP: read → feed the parser → run the session → write.

Everything protocol-shaped lives in parser.py and session.py; this module owns
what needs the socket: TLS upgrades, timeouts, IDLE's wait for either the
client or a change, and spooling APPEND's message literal to disk so a large
message never sits in memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import tempfile
import zlib
from dataclasses import dataclass

from postfach.connection_limits import peer_host
from postfach.imap import responses as r
from postfach.imap.handlers import connection
from postfach.imap.handlers import load_all as load_handlers
from postfach.imap.parser import (
    NEED_DATA,
    CommandError,
    Continuation,
    ErrorKind,
    IdleDone,
    LiteralChunk,
    Parser,
    SaslResponse,
)
from postfach.imap.session import APPEND_TOO_BIG, ImapServices, ImapSession, State
from postfach.net import Connection

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
SPOOL_IN_MEMORY = 1 << 20  # APPEND literals above this go to a temporary file
MAX_CONSECUTIVE_ERRORS = 20  # then the peer is not speaking IMAP: say BYE
TLS_RECORD_START = (b"\x16\x03",)  # a TLS ClientHello sent to the plain port


@dataclass(frozen=True)
class ImapTimeouts:
    # RFC 9051 §5.4: at least 30 minutes for an authenticated client; clients renew IDLE
    # every 29 minutes (RFC 2177 §3). Before login a minute is plenty.
    unauthenticated: float = 60.0
    authenticated: float = 30 * 60.0


class ServerClosing(Exception):
    """The server shuts down while this connection waits for its client."""


class _StreamOutput:
    """What a session writes in one turn of the event loop goes out in one piece.

    A FETCH of 200 messages' flags is 200 lines: written one by one, each was a TLS record
    and a send() of its own, which cost more than everything else about the command. The
    lines are collected and handed to the transport when the session next yields to the loop
    (before it can wait for its client), at `drain`, at `flush`, or every FLUSH_BYTES.
    """

    FLUSH_BYTES = 64 * 1024

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self.FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what was written to the transport now."""
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._size = [], 0
            self._writer.write(data)

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()


class _DeflateOutput:
    """RFC 4978 COMPRESS=DEFLATE: raw deflate, flushed (Z_SYNC_FLUSH) whenever we wait."""

    def __init__(self, inner: _StreamOutput) -> None:
        self._inner = inner
        self._deflate = zlib.compressobj(wbits=-15)

    def write(self, data: bytes) -> None:
        self._inner.write(self._deflate.compress(data))

    def flush(self) -> None:
        self._inner.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))
        self._inner.flush()

    async def drain(self) -> None:
        self.flush()
        await self._inner.drain()


class ImapServer:
    def __init__(
        self, services: ImapServices, starttls: ssl.SSLContext, timeouts: ImapTimeouts = ImapTimeouts()
    ) -> None:
        load_handlers()
        self.services = services
        self._starttls = starttls
        self._timeouts = timeouts

    async def serve(self, conn: Connection) -> None:
        host = peer_host(conn.peer)
        limits = self.services.limits
        if not await limits.open(host):
            log.info("[%d] too many IMAP connections from %s", conn.id, host)
            conn.writer.write(r.untagged_status("BYE", "too many connections from your address", "UNAVAILABLE"))
            await conn.writer.drain()
            return
        try:
            session = ImapSession(
                self.services, _StreamOutput(conn.writer), conn.id, conn.peer, tls=conn.is_tls,
                loopback=_is_loopback(host),
            )
            await _Connection(self, conn, session).run()
        finally:
            limits.close(host)


class _Connection:
    """One client's read loop."""

    def __init__(self, server: ImapServer, conn: Connection, session: ImapSession) -> None:
        self.server = server
        self.conn = conn
        self.session = session
        assert isinstance(session.output, _StreamOutput)
        self.plain_output = session.output  # under COMPRESS, what the deflated bytes go to
        self.parser = Parser()
        self.spool: tempfile.SpooledTemporaryFile | None = None
        self.spool_refused = False
        self.errors = 0
        self.inflate: zlib._Decompress | None = None

    async def run(self) -> None:
        session = self.session
        session.send(session.greeting())
        try:
            while session.state is not State.LOGOUT:
                await session.output.drain()
                event = self.parser.next_event()
                if event is NEED_DATA:
                    if self.parser.inside_command:  # the rest of an APPEND, say (see there)
                        self.conn.acknowledge_at_once()
                    data = await self._read()
                    if not data:
                        return
                    if self.inflate is not None:
                        data = self.inflate.decompress(data)
                    if not self.conn.is_tls and data.startswith(TLS_RECORD_START) and not self.errors:
                        log.info("[%d] TLS handshake on the plain IMAP port; closing", self.conn.id)
                        return
                    self.parser.feed(data)
                    continue
                await self._handle(event)
                if self.errors >= MAX_CONSECUTIVE_ERRORS:
                    session.send(r.untagged_status("BYE", "too many bad commands"))
                    return
            await session.output.drain()
        except TimeoutError:
            session.send(r.untagged_status("BYE", "autologout: idle for too long"))
            await session.output.drain()
        except ServerClosing:
            session.send(r.untagged_status("BYE", "server shutting down"))
            await session.output.drain()
        except asyncio.CancelledError:
            session.send(r.untagged_status("BYE", "server shutting down"))
            raise
        finally:
            session.output.flush()  # what is still collected: a BYE on the way out, say
            session.close()
            self._drop_spool()

    async def _read(self) -> bytes:
        """The next bytes from the client; during IDLE, changes are reported while waiting."""
        session = self.session
        timeout = (
            self.server._timeouts.unauthenticated
            if session.state is State.NOT_AUTHENTICATED
            else self.server._timeouts.authenticated
        )
        if not session.idling:
            # Between commands the read alone, no tasks around it (a tenth of the time of a
            # short command went to them); the listener cancels a connection waiting here
            # when the server shuts down, and the BYE goes out from `run`.
            if self.conn.closing.is_set():
                raise ServerClosing
            self.conn.awaiting_client = True
            try:
                async with asyncio.timeout(timeout):
                    return await self.conn.reader.read(READ_SIZE)
            finally:
                self.conn.awaiting_client = False
        read = asyncio.ensure_future(self.conn.reader.read(READ_SIZE))
        closing = asyncio.ensure_future(self.conn.closing.wait())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    waits = {read, closing, asyncio.ensure_future(session.changed.wait())}
                    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in pending - {read, closing}:
                        waiting.cancel()
                    if read in done:
                        return read.result()
                    if closing in done:
                        raise ServerClosing
                    await session.report_changes(expunges_allowed=True)
                    await session.output.drain()
        finally:
            for waiting in (read, closing):
                if not waiting.done():
                    waiting.cancel()

    async def _handle(self, event) -> None:
        session = self.session
        if isinstance(event, Continuation):
            self._decide_literal(event)
        elif isinstance(event, LiteralChunk):
            self._spool(event)
        elif isinstance(event, CommandError):
            self.errors += 1
            self._drop_spool()
            code = "TOOBIG" if event.kind is ErrorKind.LITERAL_TOO_BIG else None
            session.send(r.tagged(event.tag, "BAD", event.text, code) if event.tag else r.untagged_status("BAD", event.text))
        elif isinstance(event, SaslResponse):
            await connection.sasl_response(session, event.data)
        elif isinstance(event, IdleDone):
            await connection.end_idle(session)
        else:
            self.errors = 0
            await self._run(event)

    async def _run(self, command) -> None:
        session = self.session
        session.append_data = self._take_spool() if getattr(command, "NAME", "") == "APPEND" else None
        try:
            await session.run(command)
        finally:
            session.append_data = None
        self.parser.utf8 = session.utf8
        if session.starttls_requested:
            # The OK is written, and goes out now in plain text; no await before the upgrade
            # (see Connection.start_tls).
            self.plain_output.flush()
            session.starttls_requested = False
            dropped = len(self.parser.take_buffered()) + await self.conn.start_tls(self.server._starttls)
            if dropped:
                log.warning("[%d] dropped %d bytes sent before the TLS handshake", self.conn.id, dropped)
            session.tls = True
        if session.compress_requested:
            # The OK went out plain; from here on both directions are deflated (RFC 4978 §3).
            session.compress_requested = False
            await session.output.drain()
            session.output = _DeflateOutput(session.output)
            session.compressed = True
            self.inflate = zlib.decompressobj(wbits=-15)
            self.parser.feed(self.inflate.decompress(self.parser.take_buffered()))
        if session.sasl_pending:
            self.parser.expect_sasl_response(session.sasl_pending)
        if session.idling:
            self.parser.expect_idle_done(session.idling)

    # ---------------------------------------------------------------- APPEND's literal

    def _decide_literal(self, event: Continuation) -> None:
        limit = self.session.services.settings.append_limit
        if event.message and event.size > limit:
            # RFC 7889 §3 (APPENDLIMIT): refuse before the client sends the message.
            self.parser.reject_literal()
            self.session.send(r.tagged(event.tag, "NO", f"the message is larger than {limit} octets", "TOOBIG"))
            return
        self.parser.accept_literal()
        self.session.send(r.continuation("ready for literal data"))

    def _spool(self, chunk: LiteralChunk) -> None:
        if self.spool is None and not self.spool_refused:
            if chunk.size > self.session.services.settings.append_limit:
                self.spool_refused = True  # a non-synchronizing literal over the limit: read, drop
            else:
                self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        if self.spool is not None:
            self.spool.write(chunk.data)

    def _take_spool(self):
        spool, refused = self.spool, self.spool_refused
        self.spool, self.spool_refused = None, False
        if refused:
            return APPEND_TOO_BIG
        if spool is not None:
            size = spool.seek(0, 2)
            spool.seek(0)
            if size <= SPOOL_IN_MEMORY:
                # Still in memory: the bytes themselves, which the store files in one trip.
                data = spool.read()
                spool.close()
                return data
        return spool

    def _drop_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
        self.spool, self.spool_refused = None, False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
