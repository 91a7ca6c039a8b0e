"""A certificate per domain, chosen by SNI, on every TLS door; reloaded by `postfach serve` on SIGHUP.

The clients dial 127.0.0.1 and send the SNI name themselves (or none), then read the certificate
the server presented and the service's first answer over TLS, so a door that picked the right
certificate but broke the session would fail too.
"""

from __future__ import annotations

import asyncio
import imaplib
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from postfach.config import load_config
from postfach.store import open_store
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import write_config
from tests.support.server import ServeProcess, running_server
from tests.support.tls import (
    common_name,
    dns_names,
    insecure_context,
    presented,
    write_certificate,
)

USER = "user@example.org"
# label -> (the name configured for it, the DNS names its certificate holds)
CERTIFICATES = {
    "default": (None, ("mail.example.com",)),
    "mail.example.org": ("mail.example.org", ("mail.example.org",)),
    "wildcard.example.net": ("*.example.net", ("*.example.net",)),
    "bücher.example": ("bücher.example", ("xn--bcher-kva.example",)),
    "localhost": ("localhost", ("localhost",)),
}
SNI_CASES = {
    None: "default",
    "mail.example.org": "mail.example.org",
    "Mail.Example.ORG": "mail.example.org",
    "unknown.example.org": "default",
    "imap.example.net": "wildcard.example.net",
    "a.imap.example.net": "default",
    "example.net": "default",
    "bücher.example": "bücher.example",
}


def write_pairs(directory: Path, version: int, labels=tuple(CERTIFICATES)) -> None:
    for label in labels:
        cert, key = directory / f"{label}-cert.pem", directory / f"{label}-key.pem"
        write_certificate(cert, key, f"{label} v{version}", CERTIFICATES[label][1])


def certificates_config(directory: Path, listeners) -> Path:
    """A config whose default and per-domain pairs are directory/certs/<label>-{cert,key}.pem, version 1."""
    certs = directory / "certs"
    write_pairs(certs, 1)
    lines = []
    for label, (name, _) in CERTIFICATES.items():
        table = "[tls]" if name is None else f'[tls.certificates."{name}"]'
        lines += [table, f'cert = "{certs}/{label}-cert.pem"', f'key = "{certs}/{label}-key.pem"']
    return write_config(directory, listeners, extra="\n".join(lines))


# --- speaking to each door ------------------------------------------------------


SMTP = {"submission", "submissions", "smtp"}


def read_reply(sock: socket.socket | ssl.SSLSocket, door: str) -> bytes:
    """One reply: a line, or for SMTP every line up to the one without "-" after the code."""
    data = b""
    while True:
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"{door}: closed after {data!r}")
        data += byte
        last = data.rsplit(b"\r\n", 2)[-2] if data.endswith(b"\r\n") else None
        if last is not None and not (door in SMTP and last[3:4] == b"-"):
            return data


# The plain-text exchange before the handshake: (what to send, what the reply starts with).
STARTTLS = {
    "imap": [(b"", b"* OK"), (b"a STARTTLS\r\n", b"a OK")],
    "pop3": [(b"", b"+OK"), (b"STLS\r\n", b"+OK")],
    "submission": [(b"", b"220 "), (b"EHLO client.test\r\n", b"250"), (b"STARTTLS\r\n", b"220 ")],
    "smtp": [(b"", b"220 "), (b"EHLO client.test\r\n", b"250"), (b"STARTTLS\r\n", b"220 ")],
}
# Over TLS: (what to send, what the reply starts with).
OVER_TLS = {
    "imaps": (b"", b"* OK"),
    "pop3s": (b"", b"+OK"),
    "submissions": (b"", b"220 "),
    "imap": (b"b CAPABILITY\r\n", b"* CAPABILITY"),
    "pop3": (b"CAPA\r\n", b"+OK"),
    "submission": (b"EHLO client.test\r\n", b"250-"),
    "smtp": (b"EHLO client.test\r\n", b"250-"),
    "http": (b"GET /healthz HTTP/1.1\r\nHost: mail.example.org\r\nConnection: close\r\n\r\n", b"HTTP/1.1 200 "),
}


def certificate_on(address, door: str, sni: str | None, alpn=("http/1.1",)) -> tuple[str, list[str], str | None]:
    """Open a TLS session on `door` with SNI `sni`; the presented certificate's common name and
    DNS names, and the agreed ALPN protocol."""
    with socket.create_connection((address.host, address.port), timeout=10) as raw:
        for send, expect in STARTTLS.get(door, ()):
            raw.sendall(send)
            assert read_reply(raw, door).startswith(expect)
        client = insecure_context()
        if door == "http":
            client.set_alpn_protocols(list(alpn))
        with client.wrap_socket(raw, server_hostname=sni) as tls:
            # HTTP/2 speaks binary frames; there the handshake and its ALPN answer are what counts.
            if tls.selected_alpn_protocol() != "h2":
                send, expect = OVER_TLS[door]
                tls.sendall(send)
                reply = read_reply(tls, door)
                assert reply.startswith(expect), (door, sni, reply)
            certificate = presented(tls)
            return common_name(certificate), dns_names(certificate), tls.selected_alpn_protocol()


def presented_name(address, door: str, sni: str | None) -> str:
    return certificate_on(address, door, sni)[0]


# --- SNI on every door ----------------------------------------------------------


@pytest.mark.parametrize("door", ["imaps", "pop3s", "submissions", "http", "imap", "pop3", "submission", "smtp"])
async def test_sni_picks_the_domain_certificate_on_every_door(tmp_path, door):
    config = load_config(certificates_config(tmp_path, listeners=(door,)), {})
    async with running_server(config) as server:
        address = server.addresses[door]
        seen = {sni: await asyncio.to_thread(certificate_on, address, door, sni) for sni in SNI_CASES}
    expected_alpn = "http/1.1" if door == "http" else None
    assert seen == {
        sni: (f"{label} v1", list(CERTIFICATES[label][1]), expected_alpn) for sni, label in SNI_CASES.items()
    }


async def test_https_keeps_offering_http2_whichever_certificate_it_presents(tmp_path):
    config = load_config(certificates_config(tmp_path, listeners=("http",)), {})
    async with running_server(config) as server:
        address = server.addresses["http"]
        seen = {
            sni: await asyncio.to_thread(certificate_on, address, "http", sni, ("h2", "http/1.1"))
            for sni in (None, "mail.example.org", "imap.example.net")
        }
    assert {sni: (name, alpn) for sni, (name, _, alpn) in seen.items()} == {
        None: ("default v1", "h2"),
        "mail.example.org": ("mail.example.org v1", "h2"),
        "imap.example.net": ("wildcard.example.net v1", "h2"),
    }


async def test_without_tls_cert_the_default_is_the_self_signed_pair(tmp_path):
    certs = tmp_path / "certs"
    write_pairs(certs, 1, labels=("mail.example.org",))
    extra = f'[tls.certificates."mail.example.org"]\ncert = "{certs}/mail.example.org-cert.pem"\n'
    extra += f'key = "{certs}/mail.example.org-key.pem"'
    config = load_config(write_config(tmp_path, ("imaps",), extra=extra), {})
    async with running_server(config) as server:
        address = server.addresses["imaps"]
        assert await asyncio.to_thread(presented_name, address, "imaps", "mail.example.org") == "mail.example.org v1"
        assert await asyncio.to_thread(presented_name, address, "imaps", None) == "mail.example.com"
        assert await asyncio.to_thread(presented_name, address, "imaps", "other.example.org") == "mail.example.com"


# --- SIGHUP -------------------------------------------------------------------------


def workers(server: ServeProcess) -> int:
    """How many processes serve: each worker (or the one process) logs its own listeners."""
    count = sum("listening: imaps on" in line for line in server.log)
    assert count > 0, "".join(server.log)
    return count


def reloaded(server: ServeProcess, text: str, timeout: float = 15.0) -> None:
    """Wait until every process has logged `text`: each reloads on its own."""
    count = workers(server)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in server.log if text in line]
        if len(lines) >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no {count}x {text!r} in the log:\n" + "".join(server.log))


async def add_account(config_file: Path) -> None:
    store = await open_store(load_config(config_file, {}))
    try:
        await make_account(store, USER)
    finally:
        await store.close()


def logged_in_imap(address) -> imaplib.IMAP4_SSL:
    """A real IMAP client, logged in with INBOX selected; it sends SNI "localhost" (a configured name)."""
    client = imaplib.IMAP4_SSL("localhost", address.port, ssl_context=insecure_context(), timeout=10)
    client.login(USER, PASSWORD)
    assert client.select("INBOX")[0] == "OK"
    return client


def test_sighup_presents_the_new_certificates_and_open_connections_keep_working(tmp_path):
    config_file = certificates_config(tmp_path, listeners=("imaps", "http"))
    asyncio.run(add_account(config_file))
    server = ServeProcess(["--config", str(config_file)])
    try:
        imaps, http = server.addresses["imaps"], server.addresses["http"]
        client = logged_in_imap(imaps)
        assert common_name(presented(client.sock)) == "localhost v1"

        write_pairs(tmp_path / "certs", 2)
        server.process.send_signal(signal.SIGHUP)
        reloaded(server, "reloaded 5 of 5 TLS certificates")

        for door, address in (("imaps", imaps), ("http", http)):
            seen = {sni: presented_name(address, door, sni) for sni in SNI_CASES}
            assert seen == {sni: f"{label} v2" for sni, label in SNI_CASES.items()}, door
        assert common_name(presented(logged_in_imap(imaps).sock)) == "localhost v2"
        # The session opened before the reload goes on, with the certificate it was made with.
        assert client.noop()[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        assert common_name(presented(client.sock)) == "localhost v1"
        assert client.logout()[0] == "BYE"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, "".join(server.log)
    assert not [line for line in server.log if " ERROR " in line], "".join(server.log)


def test_sighup_with_a_broken_file_keeps_the_old_certificate_and_the_server_up(tmp_path):
    config_file = certificates_config(tmp_path, listeners=("imaps",))
    server = ServeProcess(["--config", str(config_file)])
    try:
        imaps = server.addresses["imaps"]
        certs = tmp_path / "certs"
        write_pairs(certs, 2)
        # A renewal gone wrong: the new certificate, but a key that belongs to another one.
        cert, key = certs / "mail.example.org-cert.pem", certs / "mail.example.org-key.pem"
        write_certificate(tmp_path / "stray-cert.pem", key, "stray")
        server.process.send_signal(signal.SIGHUP)
        reloaded(server, "reloaded 4 of 5 TLS certificates")

        # One sentence, from each process.
        expected = (
            'TLS certificate for "mail.example.org" not reloaded, the old one stays in use: '
            f'certificate "{cert}" and key "{key}" do not load together (key values mismatch)'
        )
        errors = [line.rstrip().partition(" postfach.tls: ")[2] for line in server.log if " ERROR " in line]
        assert errors == [expected] * workers(server), "".join(server.log)
        assert server.process.poll() is None
        assert presented_name(imaps, "imaps", "mail.example.org") == "mail.example.org v1"
        assert presented_name(imaps, "imaps", None) == "default v2"
        assert presented_name(imaps, "imaps", "imap.example.net") == "wildcard.example.net v2"

        # Mended, the next SIGHUP takes it.
        write_pairs(certs, 3, labels=("mail.example.org",))
        server.process.send_signal(signal.SIGHUP)
        reloaded(server, "reloaded 5 of 5 TLS certificates")
        assert presented_name(imaps, "imaps", "mail.example.org") == "mail.example.org v3"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, "".join(server.log)
