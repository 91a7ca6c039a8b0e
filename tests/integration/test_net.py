"""net.py: the shared listener, over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import pytest

from postfach.config import ListenAddress
from postfach.net import Connection, Listener, bind_socket, bind_sockets, worker_index
from postfach.tls import server_context
from tests.support.tls import insecure_context, write_certificate


def _context(tmp_path) -> ssl.SSLContext:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_certificate(cert, key, "localhost")
    return server_context(cert, key)


def _receive_buffer(writer: asyncio.StreamWriter) -> bytearray:
    return writer.transport._ssl_protocol._ssl_buffer


@contextlib.asynccontextmanager
async def _listening(handler, tls: ssl.SSLContext | None, sock: socket.socket | None = None):
    listener = Listener("test", ListenAddress("127.0.0.1", 0), handler, tls, sock)
    await listener.start()
    try:
        yield listener.bound
    finally:
        await listener.close()


async def _echo(conn: Connection, buffers: list[bytearray]) -> None:
    buffers.append(_receive_buffer(conn.writer))
    while data := await conn.reader.read(65536):
        conn.writer.write(data)
        await conn.writer.drain()


async def test_tls_connections_share_one_receive_buffer_and_keep_their_data_apart(tmp_path):
    # asyncio gives every TLS connection a 256 KiB receive buffer of its own; the listener's
    # connections use one (issue 7 point 3: 10,000 IDLE connections in well under 1 GB).
    buffers: list[bytearray] = []
    async with _listening(lambda conn: _echo(conn, buffers), _context(tmp_path)) as address:
        clients = [
            await asyncio.open_connection(address.host, address.port, ssl=insecure_context())
            for _ in range(3)
        ]
        payloads = [bytes([65 + n]) * (300_000 + n) for n in range(3)]
        for (_, writer), payload in zip(clients, payloads):  # all in flight at once, each larger than the buffer
            writer.write(payload)
        echoed = await asyncio.gather(*(reader.readexactly(len(p)) for (reader, _), p in zip(clients, payloads)))
        assert echoed == payloads
        assert len(buffers) == 3 and buffers[0] is buffers[1] is buffers[2]
        for _, writer in clients:
            writer.close()


async def test_a_connection_upgraded_with_starttls_shares_the_receive_buffer(tmp_path):
    context = _context(tmp_path)
    buffers: list[bytearray] = []

    async def starttls_then_echo(conn: Connection) -> None:
        assert await conn.reader.readline() == b"STARTTLS\n"
        await conn.start_tls(context, b"GO\n")
        await _echo(conn, buffers)

    async with _listening(starttls_then_echo, None) as address:
        clients = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(address.host, address.port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(insecure_context())
            clients.append((reader, writer))
        for n, (reader, writer) in enumerate(clients):
            writer.write(b"hello %d\n" % n)
            assert await reader.readline() == b"hello %d\n" % n
        assert len(buffers) == 2 and buffers[0] is buffers[1]
        for _, writer in clients:
            writer.close()


@pytest.mark.parametrize("bound_by", ["listener", "supervisor"])
async def test_accepted_connections_write_small_replies_at_once(bound_by):
    # Without TCP_NODELAY, Nagle's algorithm holds a reply written right after another until
    # the client's delayed ACK, 40 ms later: every pipelined SMTP transaction, IMAP command and
    # POP3 RETR paid that. asyncio sets it only when the listening socket says it is TCP.
    sock = None
    if bound_by == "supervisor":  # workers.py: bound there, inherited by descriptor
        bound = bind_socket("test", ListenAddress("127.0.0.1", 0))
        sock = socket.socket(fileno=bound.detach())
    options: list[int] = []

    async def note_options(conn: Connection) -> None:
        options.append(conn.writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        conn.writer.write(b"bye\n")

    async with _listening(note_options, None, sock) as address:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        assert await reader.readline() == b"bye\n"
        writer.close()
    assert options == [1]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_client_port_picks_the_worker_socket_as_worker_index_says(host):
    group = bind_sockets("test", ListenAddress(host, 0), 3)
    try:
        port = group[0].getsockname()[1]
        for sock in group:
            sock.settimeout(0)
        picked = []
        for _ in range(30):
            with socket.create_connection((host, port)) as client:
                accepted_by = []
                for index, sock in enumerate(group):
                    with contextlib.suppress(BlockingIOError):
                        sock.accept()[0].close()
                        accepted_by.append(index)
                assert accepted_by == [worker_index(client.getsockname()[1], 3)]
                picked += accepted_by
        assert set(picked) == {0, 1, 2}
    finally:
        for sock in group:
            sock.close()


def test_a_taken_port_is_refused_for_a_group_of_sockets_too():
    first = bind_sockets("imap", ListenAddress("127.0.0.1", 0), 2)
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen for imap on 127\.0\.0\.1:{port}: Address already in use"):
            bind_sockets("imap", ListenAddress("127.0.0.1", port), 2)  # another server's workers
    finally:
        for sock in first:
            sock.close()
