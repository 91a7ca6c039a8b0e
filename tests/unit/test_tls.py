"""tls.py: self-signed certificates on first run, and a server that speaks only forward-secret TLS.

The handshake tests use real sockets on 127.0.0.1. Each refusal is checked
twice: a deliberately permissive server accepts the very same client, which
proves the client really offered the old protocol or weak suite (the local
OpenSSL can still speak TLS 1.0/1.1 at @SECLEVEL=0), and then our server
answers that client with an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
import stat
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from postfach.config import Config, load_config
from postfach.tls import (
    SELF_SIGNED_CERT,
    SELF_SIGNED_KEY,
    ensure_certificate,
    self_signed_is_current,
    server_context,
    write_self_signed_certificate,
)

HOSTNAME = "mail.example.test"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, {"POSTFACH_DATA_DIR": str(tmp_path / "data"), "POSTFACH_HOSTNAME": HOSTNAME})


@pytest.fixture
def pair(config: Config) -> tuple[Path, Path]:
    return ensure_certificate(config)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- certificates -------------------------------------------------------------


def test_first_run_makes_a_self_signed_pair(config):
    cert_path, key_path = ensure_certificate(config)

    assert (cert_path, key_path) == (config.tls_dir / SELF_SIGNED_CERT, config.tls_dir / SELF_SIGNED_KEY)
    cert = load_cert(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOSTNAME, "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    lifetime = cert.not_valid_after_utc - datetime.now(timezone.utc)
    assert timedelta(days=700) < lifetime < timedelta(days=740)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in config.tls_dir.iterdir()) == [".lock", SELF_SIGNED_CERT, SELF_SIGNED_KEY]


def test_second_run_reuses_the_pair(config, pair):
    cert_path, key_path = pair
    before = (cert_path.read_bytes(), key_path.read_bytes(), cert_path.stat().st_mtime_ns)
    assert ensure_certificate(config) == pair
    assert (cert_path.read_bytes(), key_path.read_bytes(), cert_path.stat().st_mtime_ns) == before


def test_pair_expiring_within_30_days_is_regenerated(config):
    config.tls_dir.mkdir()
    cert_path, key_path = config.tls_dir / SELF_SIGNED_CERT, config.tls_dir / SELF_SIGNED_KEY
    write_self_signed_certificate(HOSTNAME, cert_path, key_path, valid_for=timedelta(days=29))
    old_key = key_path.read_bytes()
    assert not self_signed_is_current(cert_path, key_path, HOSTNAME)

    ensure_certificate(config)
    assert load_cert(cert_path).not_valid_after_utc > datetime.now(timezone.utc) + timedelta(days=700)
    assert key_path.read_bytes() != old_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_pair_valid_for_longer_than_30_days_is_kept(config):
    config.tls_dir.mkdir()
    cert_path, key_path = config.tls_dir / SELF_SIGNED_CERT, config.tls_dir / SELF_SIGNED_KEY
    write_self_signed_certificate(HOSTNAME, cert_path, key_path, valid_for=timedelta(days=31))
    before = cert_path.read_bytes()
    ensure_certificate(config)
    assert cert_path.read_bytes() == before


def test_changed_hostname_regenerates(config, pair):
    renamed = dataclasses.replace(config, hostname="mx.other.test")
    cert_path, _ = ensure_certificate(renamed)
    names = load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mx.other.test", "localhost"]


@pytest.mark.parametrize("damage", ["other key", "garbage certificate", "missing key"])
def test_broken_pair_is_regenerated(config, pair, tmp_path, damage):
    cert_path, key_path = pair
    if damage == "other key":
        write_self_signed_certificate(HOSTNAME, tmp_path / "c.pem", tmp_path / "k.pem")
        key_path.write_bytes((tmp_path / "k.pem").read_bytes())
    elif damage == "garbage certificate":
        cert_path.write_text("not a certificate\n")
    else:
        key_path.unlink()
    assert not self_signed_is_current(cert_path, key_path, HOSTNAME)
    ensure_certificate(config)
    assert self_signed_is_current(cert_path, key_path, HOSTNAME)
    server_context(cert_path, key_path)  # and they load together


def test_configured_certificate_is_never_regenerated(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed_certificate("old.example.test", cert, key, valid_for=timedelta(days=1))
    before = (cert.read_bytes(), key.read_bytes())
    config = load_config(
        None,
        {
            "POSTFACH_DATA_DIR": str(tmp_path / "data"),
            "POSTFACH_HOSTNAME": HOSTNAME,
            "POSTFACH_TLS_CERT": str(cert),
            "POSTFACH_TLS_KEY": str(key),
        },
    )
    assert ensure_certificate(config) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before
    assert not config.tls_dir.exists()


def test_concurrent_first_runs_agree_on_one_pair(config):
    results: list[tuple[Path, Path]] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_certificate(config))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert self_signed_is_current(*results[0], HOSTNAME)


def test_encrypted_key_is_refused_without_prompting(tmp_path, pair):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    with pytest.raises(ssl.SSLError, match="encrypted"):
        server_context(pair[0], encrypted)


# --- the server context -------------------------------------------------------


def test_context_settings(pair):
    context = server_context(*pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    for option in (
        ssl.OP_CIPHER_SERVER_PREFERENCE,
        ssl.OP_NO_COMPRESSION,
        ssl.OP_NO_RENEGOTIATION,
        ssl.OP_NO_TICKET,
    ):
        assert context.options & option == option
    assert context.num_tickets == 0
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suites at all"
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A real TLS server on 127.0.0.1 that greets with the protocol and suite it agreed."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        writer.write(f"{ssl_object.version()} {ssl_object.cipher()[0]}\r\n".encode())
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.drain()
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def handshake(port: int, client: ssl.SSLContext, server_hostname: str = "localhost") -> str:
    """Connect, read the server's greeting; returns "<version> <suite>"."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=server_hostname), 10
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        greeting = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
        assert greeting == f"{ssl_object.version()} {ssl_object.cipher()[0]}"
        return greeting
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def client_context(cert: Path, setup: Callable[[ssl.SSLContext], None] = lambda c: None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.load_verify_locations(cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is deprecated, on purpose here
        setup(context)
    return context


def tls13_only(c: ssl.SSLContext) -> None:
    c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_3


def tls12_with(ciphers: str) -> Callable[[ssl.SSLContext], None]:
    def setup(c: ssl.SSLContext) -> None:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
        c.set_ciphers(ciphers)

    return setup


def old_protocol(version: ssl.TLSVersion) -> Callable[[ssl.SSLContext], None]:
    def setup(c: ssl.SSLContext) -> None:
        c.set_ciphers("ALL:@SECLEVEL=0")  # let the client itself offer what is no longer safe
        c.minimum_version = c.maximum_version = version

    return setup


def permissive_context(cert: Path, key: Path) -> ssl.SSLContext:
    """What a careless server would accept: TLS 1.0 up, every suite, static-RSA key exchange."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(cert, key)
    return context


async def test_tls13_client_connects(pair):
    async with tls_server(server_context(*pair)) as port:
        greeting = await handshake(port, client_context(pair[0], tls13_only))
    assert greeting.startswith("TLSv1.3 TLS_")


async def test_tls12_ecdhe_client_connects(pair):
    client = client_context(pair[0], tls12_with("ECDHE-RSA-AES128-GCM-SHA256"))
    async with tls_server(server_context(*pair)) as port:
        assert await handshake(port, client) == "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"


async def test_tls12_chacha20_client_connects(pair):
    client = client_context(pair[0], tls12_with("ECDHE-RSA-CHACHA20-POLY1305"))
    async with tls_server(server_context(*pair)) as port:
        assert await handshake(port, client) == "TLSv1.2 ECDHE-RSA-CHACHA20-POLY1305"


async def test_server_order_wins(pair):
    # The client prefers AES-128; the server's list puts AES-256 first.
    server = server_context(*pair)
    preferred = [c["name"] for c in server.get_ciphers() if c["protocol"] == "TLSv1.2" and "ECDHE-RSA" in c["name"]]
    assert preferred[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    client = client_context(pair[0], tls12_with("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"))
    async with tls_server(server) as port:
        assert await handshake(port, client) == "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384"


@pytest.mark.parametrize("server_hostname", [HOSTNAME, "localhost", "127.0.0.1"])
async def test_generated_certificate_verifies_for_each_name(pair, server_hostname):
    async with tls_server(server_context(*pair)) as port:
        await handshake(port, client_context(pair[0]), server_hostname=server_hostname)


async def test_generated_certificate_does_not_verify_for_another_name(pair):
    async with tls_server(server_context(*pair)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, client_context(pair[0]), server_hostname="other.example.test")


REFUSED = {
    "TLS 1.2 with static-RSA key exchange (no forward secrecy)": (
        tls12_with("AES128-GCM-SHA256"),
        "TLSv1.2 AES128-GCM-SHA256",
        "NO_SHARED_CIPHER",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    ),
    "TLS 1.2 with ECDHE but CBC, not AEAD": (
        tls12_with("ECDHE-RSA-AES128-SHA"),
        "TLSv1.2 ECDHE-RSA-AES128-SHA",
        "NO_SHARED_CIPHER",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    ),
    "TLS 1.1": (old_protocol(ssl.TLSVersion.TLSv1_1), "TLSv1.1 ", "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"),
    "TLS 1.0": (old_protocol(ssl.TLSVersion.TLSv1), "TLSv1 ", "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"),
}


@contextlib.contextmanager
def one_shot_server(context: ssl.SSLContext) -> Iterator[tuple[int, list[Exception]]]:
    """A blocking TLS server in a thread for one connection; yields its port and its handshake errors.

    Used for refusals because, unlike asyncio's, it flushes the alert it sends,
    so the client can tell a refusal by our server from any other failure.
    """
    errors: list[Exception] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            raw, _ = listener.accept()
        except OSError as exc:
            errors.append(exc)
            return
        with raw:
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(f"{tls.version()} {tls.cipher()[0]}\r\n".encode())
                    tls.recv(1)  # wait for the client to hang up
            except OSError as exc:
                errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], errors
    finally:
        thread.join(10)
        listener.close()


def blocking_handshake(port: int, client: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname="localhost") as tls:
            greeting = tls.makefile("rb").readline().decode().strip()
            assert greeting == f"{tls.version()} {tls.cipher()[0]}"
            return greeting


@pytest.mark.parametrize("case", list(REFUSED))
def test_weak_client_is_refused(pair, case):
    setup, careless_agreement, server_reason, client_alert = REFUSED[case]
    client = client_context(pair[0], setup)

    # The client really offers it: a careless server agrees to exactly that.
    with one_shot_server(permissive_context(*pair)) as (port, errors):
        assert blocking_handshake(port, client).startswith(careless_agreement)
    assert errors == []

    # Ours refuses it, and says so with an alert; the client's error names
    # that alert, not a local "no protocols/ciphers available".
    with one_shot_server(server_context(*pair)) as (port, errors):
        with pytest.raises(ssl.SSLError) as refused:
            blocking_handshake(port, client)
    assert refused.value.reason == client_alert
    assert [getattr(e, "reason", e) for e in errors] == [server_reason]


@pytest.mark.parametrize("case", list(REFUSED))
async def test_weak_client_is_refused_by_an_asyncio_server(pair, case):
    # asyncio (3.11) drops the connection without flushing the alert, so the
    # client sees a reset or an alert; either way no session is established.
    client = client_context(pair[0], REFUSED[case][0])
    async with tls_server(server_context(*pair)) as port:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await handshake(port, client)


def test_no_tls13_session_ticket_follows_the_handshake(pair):
    """A ticket arriving with the first answer hangs clients like imaplib2 (offlineimap)."""
    context = server_context(*pair)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.sendall(b"* OK hello\r\n")
                tls.recv(16)

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        client.minimum_version = ssl.TLSVersion.TLSv1_3
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as tls:
            assert tls.recv(64) == b"* OK hello\r\n"
            assert tls.session is None or not tls.session.has_ticket
            tls.sendall(b"bye")
        thread.join(10)
