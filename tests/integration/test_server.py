"""`postfach serve`: listeners, TLS on them, the health endpoint, live CLI changes, clean shutdown."""

import asyncio
import http.client
import json
import re
import resource
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from postfach.auth.authenticator import AuthFailure, FailureReason
from postfach.config import DEFAULT_PORTS, LISTENER_NAMES
from postfach.model import Account
from tests.support.config import make_config, write_config
from tests.support.server import ServeProcess, data_dir_of, running_server

PASSWORD = "correct horse battery"

GREETINGS = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 ",
    "imaps": b"* OK [CAPABILITY IMAP4rev1 ",
    "pop3": b"+OK ",
    "pop3s": b"+OK ",
    "smtp": b"220 mail.example.com ",
    "submission": b"220 mail.example.com ",
    "submissions": b"220 mail.example.com ",
}
IMPLICIT_TLS = {"imaps", "pop3s", "submissions", "http"}


def client_context(**settings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, value in settings.items():
        if name == "ciphers":
            context.set_ciphers(value)
        else:
            setattr(context, name, value)
    return context


def greeting(address, tls: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection((address.host, address.port), timeout=10) as raw:
        sock = tls.wrap_socket(raw) if tls else raw
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        return data


def health(address, context=None) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection(address.host, address.port, context=context or client_context(), timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def test_every_configured_listener_starts_and_answers(tmp_path):
    async with running_server(make_config(tmp_path)) as server:
        assert set(server.addresses) == set(LISTENER_NAMES)
        for name, prefix in GREETINGS.items():
            tls = client_context() if name in IMPLICIT_TLS else None
            answer = await asyncio.to_thread(greeting, server.addresses[name], tls)
            assert answer.startswith(prefix), (name, answer)
        status, body = await asyncio.to_thread(health, server.addresses["http"])
        assert status == 200 and body["status"] == "ok"


async def test_a_listener_left_out_is_not_started(tmp_path):
    async with running_server(make_config(tmp_path, listeners=("imaps", "http"))) as server:
        assert set(server.addresses) == {"imaps", "http"}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(IMPLICIT_TLS))
async def test_tls_ports_allow_only_modern_forward_secret_tls(tmp_path, name):
    async with running_server(make_config(tmp_path, listeners=(name,))) as server:
        address = server.addresses[name]
        for good in (
            client_context(minimum_version=ssl.TLSVersion.TLSv1_3),
            client_context(maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
        ):
            await asyncio.to_thread(_handshake, address, good)
        for bad in (
            client_context(maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256:AES256-SHA"),
            client_context(
                minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
            ),
        ):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.to_thread(_handshake, address, bad)


def _handshake(address, context) -> None:
    with socket.create_connection((address.host, address.port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.cipher()[0].startswith(("TLS_", "ECDHE"))


async def test_cli_changes_reach_the_running_server_at_once(tmp_path):
    config_file = write_config(tmp_path, listeners=("http",))
    config = make_config(tmp_path, listeners=("http",))
    async with running_server(config) as server:
        await _postfach("domain", "add", "example.com", "--config", str(config_file))
        await _postfach("mailbox", "add", "new@example.com", "--password-stdin", "--config", str(config_file),
                        stdin=PASSWORD)
        assert isinstance(await server.authenticator.authenticate("new@example.com", PASSWORD, source="127.0.0.1", protocol="imap"), Account)
        await _postfach("mailbox", "remove", "new@example.com", "--config", str(config_file))
        assert await server.authenticator.authenticate("new@example.com", PASSWORD, source="127.0.0.1", protocol="imap") == AuthFailure(
            FailureReason.UNKNOWN_USER
        )


async def _postfach(*args: str, stdin: str = "") -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "postfach", *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, err.decode()


def test_serve_stops_cleanly_on_sigterm(tmp_path):
    config_file = write_config(tmp_path)
    server = ServeProcess(["--config", str(config_file)])
    try:
        assert set(server.addresses) == set(LISTENER_NAMES)
        assert health(server.addresses["http"])[0] == 200
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, "".join(server.log)
    assert "stopped" in "".join(server.log)
    for address in server.addresses.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address.host, address.port), timeout=5).close()
    with sqlite3.connect(data_dir_of(config_file) / "postfach.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # The last connection checkpointed the write-ahead log: nothing is left half-applied.
    wal = data_dir_of(config_file) / "postfach.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_embedded_default_creates_data_and_a_certificate(tmp_path):
    """No configuration file: data under ./data and a self-signed certificate, made on first run."""
    ports = {f"POSTFACH_LISTEN_{name.upper()}": "127.0.0.1:0" for name in LISTENER_NAMES}
    server = ServeProcess(env=ports, cwd=tmp_path)
    try:
        assert set(server.addresses) == set(LISTENER_NAMES)
        status, body = health(server.addresses["http"])
        assert status == 200
        certificate = ssl.get_server_certificate((server.addresses["imaps"].host, server.addresses["imaps"].port))
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert (tmp_path / "data" / "postfach.sqlite3").is_file()
    [cert_file] = (tmp_path / "data" / "tls").glob("*cert*.pem")
    assert cert_file.read_text().strip() == certificate.strip()


def test_the_default_ports_are_the_documented_ones():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, port in DEFAULT_PORTS.items():
        assert f"| `{name}`" in readme and f"| {port} |" in readme


def test_a_taken_port_is_one_sentence_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_file = tmp_path / "postfach.toml"
        config_file.write_text(f'data_dir = "data"\n[listen]\nimap = "127.0.0.1:{port}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "postfach", "serve", "--config", str(config_file)],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("postfach: ")]
    assert errors == [f"postfach: cannot listen for imap on 127.0.0.1:{port}: Address already in use"]


def test_serve_raises_its_open_file_limit_for_many_clients(tmp_path):
    """10,000 IDLE-ing clients are 10,000 descriptors: the usual soft limit of 1024 is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        server = ServeProcess(["--config", str(write_config(tmp_path)), "--workers", "2"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        pids = [server.process.pid, *(int(pid) for pid in re.findall(r"started \(pid (\d+)\)", "".join(server.log)))]
        assert len(pids) == 3
        for pid in pids:
            limits = Path(f"/proc/{pid}/limits").read_text()
            [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
            assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        assert server.stop(signal.SIGTERM) == 0
