"""The shared TCP listener: binding, implicit TLS, connection ids, logging, shutdown.

A protocol server is a handler `async (Connection) -> None`; this module
owns everything about the socket around it, so IMAP, POP3 and SMTP treat
connections alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postfach.config import ListenAddress

log = logging.getLogger(__name__)

_connection_ids = itertools.count(1)
SHUTDOWN_GRACE_SECONDS = 5.0


def next_connection_id() -> int:
    """A process-wide connection id, for listeners that do not run on `Listener` (SMTP)."""
    return next(_connection_ids)


@dataclass(eq=False)
class Connection:
    id: int
    listener: str
    peer: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # Set when the server shuts down: a handler waiting for its client should say goodbye.
    closing: asyncio.Event
    # The listener's, for a connection upgraded with STARTTLS (see TlsReadBuffer).
    tls_read_buffer: TlsReadBuffer | None = None
    # Set by a handler while it waits for the client's next request and nothing else: at
    # shutdown such a connection is cancelled at once, where the handler says goodbye.
    awaiting_client: bool = False

    @property
    def is_tls(self) -> bool:
        return self.writer.get_extra_info("ssl_object") is not None

    def acknowledge_at_once(self) -> None:
        """Have the kernel acknowledge what arrived now, not after its delayed-ACK time (40 ms).

        For a client that sends the rest of a request in a send of its own (imaplib writes an
        APPEND literal and then the CRLF after it): Nagle's algorithm holds that small send
        until the data before it is acknowledged, and Linux delays the ACK while it expects an
        answer from us. TCP_QUICKACK lasts a moment only: call this before each read of the rest.
        """
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    async def start_tls(self, context: ssl.SSLContext, answer: bytes = b"") -> int:
        """Send `answer` (the OK to STARTTLS or STLS) if not sent yet, and upgrade in place.

        Bytes the client sent before the handshake are dropped, never read as if they had
        come over TLS (the STARTTLS command-injection flaw, CVE-2011-0411): the caller drops
        what its parser holds, this drops what the stream holds. Returns how many bytes went.
        No await may come between the answer and this call: the client's ClientHello can
        follow the answer at once and must reach the TLS layer, not the plaintext buffer.
        """
        dropped = _discard_read_buffer(self.reader)
        if answer:
            self.writer.write(answer)
        await self.writer.start_tls(context)
        if self.tls_read_buffer is not None:
            self.tls_read_buffer.adopt(self.writer)
        return dropped


class TlsReadBuffer:
    """One receive buffer for every TLS connection of an event loop (issue 7 point 3).

    asyncio's TLS transport (sslproto.SSLProtocol) gives each connection a 256 KiB buffer of
    its own to receive into, and uses it only from `recv_into` to the copy into its TLS
    object, within one callback: between the two nothing else runs on the loop. So one
    buffer serves every connection of a loop, and 10,000 idle IMAP connections hold 2.5 GB
    less. `adopt` is a no-op on a transport that has no such buffer (another event loop,
    another Python).
    """

    def __init__(self) -> None:
        self._buffer: bytearray | None = None
        self._view: memoryview | None = None

    def adopt(self, writer: asyncio.StreamWriter) -> bool:
        """Make `writer`'s TLS transport receive into the shared buffer; False if it cannot."""
        protocol = getattr(writer.transport, "_ssl_protocol", None)
        own = getattr(protocol, "_ssl_buffer", None)
        if not isinstance(own, bytearray) or not hasattr(protocol, "_ssl_buffer_view"):
            return False
        if self._buffer is None or len(self._buffer) < len(own):
            self._buffer = bytearray(len(own))
            self._view = memoryview(self._buffer)
        protocol._ssl_buffer = self._buffer
        protocol._ssl_buffer_view = self._view
        return True


Handler = Callable[[Connection], Awaitable[None]]


class Listener:
    """One `host:port`, plain or with implicit TLS, serving every connection with `handler`."""

    def __init__(
        self,
        name: str,
        address: ListenAddress,
        handler: Handler,
        tls: ssl.SSLContext | None,
        sock: socket.socket | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self._sock = sock  # bound already (by the supervisor of several workers), or bind at start
        self._handler = handler
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task, Connection] = {}
        self._closing = asyncio.Event()
        self._tls_read_buffer = TlsReadBuffer()

    @property
    def bound(self) -> ListenAddress:
        """The address actually bound (the real port where port 0 was configured)."""
        assert self._server is not None, "the listener is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return ListenAddress(host, port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            sock=self._sock or bind_socket(self.name, self.address),
            ssl=self._tls,
            ssl_handshake_timeout=30 if self._tls else None,
        )
        log.info("listening: %s on %s%s", self.name, self.bound, " (TLS)" if self._tls else "")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._tls is not None:
            self._tls_read_buffer.adopt(writer)
        connection = Connection(
            next(_connection_ids), self.name, format_peer(peer), reader, writer, self._closing, self._tls_read_buffer
        )
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = connection
        log.debug("[%d] %s connection from %s", connection.id, self.name, connection.peer)
        try:
            await self._handler(connection)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as error:
            log.debug("[%d] connection lost: %s", connection.id, error)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("[%d] %s handler failed", connection.id, self.name)
        finally:
            self._tasks.pop(task, None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
                pass

    async def close(self) -> None:
        """Stop accepting, give open connections a moment to finish, then cancel them."""
        if self._server is None:
            return
        self._server.close()
        self._closing.set()
        for task, connection in self._tasks.items():
            if connection.awaiting_client:
                task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(tuple(self._tasks), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        await self._server.wait_closed()


def bind_socket(name: str, address: ListenAddress) -> socket.socket:
    """A listening TCP socket for listener `name`; a taken port is one clear OSError."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP, and without it a reply written after another waits for the client's
    # delayed ACK (Nagle): 40 ms per SMTP transaction, IMAP command or POP3 RETR.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(1024)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen for {name} on {address}: {os_reason(error)}") from None
    return sock


# Several listening sockets on one address, one per worker process (workers.py).
_SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h; not in Python's socket module
_SKF_NET_OFF = -0x100000  # classic BPF: offsets from the network header
_HASH_FACTOR = 0x9E3779B1  # Knuth's multiplicative hash (golden ratio), 32 bits


def worker_index(client_port: int, count: int) -> int:
    """Which of `count` sockets from `bind_sockets` gets a connection from `client_port`: what
    the BPF program below computes, as Python."""
    return (((client_port * _HASH_FACTOR) & 0xFFFFFFFF) >> 16) % count


def _reuseport_program(count: int) -> bytes:
    """Classic BPF for SO_ATTACH_REUSEPORT_CBPF: the client's TCP port, hashed, modulo `count`.

    The kernel runs it on the SYN, with the network header at _SKF_NET_OFF. The source port
    follows a 20-byte IPv4 or a 40-byte IPv6 header (a SYN carries no IP options or extension
    headers in practice; if one did, the port read is another number, and still some socket's).
    """
    net = _SKF_NET_OFF & 0xFFFFFFFF
    instructions = [
        (0x30, 0, 0, net),  # ldb [net]: version and header length
        (0x74, 0, 0, 4),  # rsh #4: the IP version
        (0x15, 2, 0, 6),  # jeq #6: IPv6 -> 5
        (0x28, 0, 0, net + 20),  # ldh [net + 20]: IPv4 source port
        (0x05, 0, 0, 1),  # ja -> 6
        (0x28, 0, 0, net + 40),  # ldh [net + 40]: IPv6 source port
        (0x24, 0, 0, _HASH_FACTOR),  # mul
        (0x74, 0, 0, 16),  # rsh #16
        (0x94, 0, 0, count),  # mod #count
        (0x16, 0, 0, 0),  # ret a
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in instructions)


def bind_sockets(name: str, address: ListenAddress, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address (SO_REUSEPORT), one for each worker process.

    Each worker accepts on its own socket, and the kernel hands a new connection to the one
    `worker_index` picks by the client's port. One socket shared by all workers went to the
    worker that woke first, which took a whole burst of connections (asyncio accepts up to
    100 at once): 20 SMTP connections opened together all landed in one worker.
    """
    # A port taken by anyone, another Postfach's group of sockets too, is refused here as for
    # one socket: the probe has no SO_REUSEPORT, so it cannot share.
    probe = bind_socket(name, address)
    host, port = probe.getsockname()[:2]
    family = probe.family
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise OSError(f"cannot listen for {name} on {address}: {os_reason(error)}") from None
    code = _reuseport_program(count)
    program = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog: the number of instructions, then a pointer to them (64-bit layout).
    fprog = struct.pack("HxxxxxxQ", len(code) // 8, ctypes.addressof(program))
    try:
        sockets[0].setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as error:  # a kernel without it still spreads connections, by its own hash
        log.warning("%s: connections are spread over the workers by the kernel's own hash (%s)",
                    name, os_reason(error))
    return sockets


def _discard_read_buffer(reader: asyncio.StreamReader) -> int:
    """Empty what the StreamReader holds but nobody has read (asyncio has no public call for it)."""
    buffer = getattr(reader, "_buffer", None)
    if not buffer:
        return 0
    dropped = len(buffer)
    buffer.clear()
    return dropped


def os_reason(error: OSError) -> str:
    """The system's short text for an error ("Address already in use"), without asyncio's wrapping."""
    return os.strerror(error.errno) if error.errno else str(error)


def format_peer(peer: object) -> str:
    """A socket's peer name as the log shows it: "192.0.2.1:25" or "[2001:db8::1]:25"."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)
