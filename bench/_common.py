"""What the load scripts share: generated messages, the TLS client, latency figures,
a minimal POP3 client, a scratch Postfach, and results as JSON.

Every load script starts its own Postfach on a scratch directory unless it is
given --port; then it drives whatever server listens there (bench/compare.sh
points the same scripts at Postfach, Dovecot and Postfix in turn). Nothing here
imports postfach at module level, so a script aimed at another server needs
only the standard library.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "src", REPO):  # postfach from the checkout, tests.support for the fixtures
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PASSWORD = "bench password 123"


# --- messages ----------------------------------------------------------------


def mix_message(number: int, tag: str = "") -> bytes:
    """A ~8 KB multipart/alternative message, as a desktop client's INBOX holds them.

    The same (number, tag) gives the same bytes, so two servers can be filled
    with identical mailboxes; a different tag makes a distinct message.
    """
    body = b"Dear customer,\r\n" + b"this is a line of a realistic message body for the load test.\r\n" * 60
    return (
        f"From: Sender {number} <sender{number}@example.org>\r\nTo: user@bench.test\r\n"
        f"Subject: Load test message {number}\r\nMessage-ID: <{number}.{tag}@bench>\r\n"
        "Date: Sun, 22 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body + b"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + body + b"</p>\r\n--b1--\r\n"


def unique_tag() -> str:
    return str(time.time_ns())


# --- clients -------------------------------------------------------------------


def client_tls_context() -> ssl.SSLContext:
    """TLS as a client configured for a self-signed certificate: encrypted, not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_description(connection: ssl.SSLSocket | ssl.SSLObject) -> str:
    """What a TLS connection negotiated, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", to show both sides used the same."""
    name, version, _ = connection.cipher()
    return f"{version} {name}"


class Pop3Client:
    """Just enough POP3 over TLS to time the server, not the client: whole responses, no line splitting."""

    def __init__(self, host: str, port: int, timeout: float = 60) -> None:
        self.sock = client_tls_context().wrap_socket(socket.create_connection((host, port), timeout=timeout))
        self.pending = b""
        self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.pending:
            self.pending += self._recv()
        line, self.pending = self.pending.split(b"\r\n", 1)
        if not line.startswith(b"+OK"):
            raise RuntimeError(line.decode(errors="replace"))
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def login(self, user: str, password: str) -> None:
        self.command(f"USER {user}")
        self.command(f"PASS {password}")

    def multiline(self, text: str) -> int:
        """Send a command and read its multi-line answer to the end; returns the octets read."""
        self.command(text)
        received, tail = len(self.pending), self.pending[-5:]
        if self.pending == b".\r\n" or self.pending.endswith(b"\r\n.\r\n"):
            self.pending = b""
            return received
        while not tail.endswith(b"\r\n.\r\n"):
            chunk = self._recv()
            received += len(chunk)
            tail = (tail + chunk)[-5:]
        self.pending = b""  # nothing was pipelined after it
        return received

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.command("QUIT")
        self.sock.close()


# --- figures -------------------------------------------------------------------


def quantile(ordered: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted sample lies (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class ProcessCpu:
    """CPU seconds this process (the load generator) used while it runs: it shares the machine's cores
    with the server, so a generator near one full core may itself be the bottleneck."""

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._cpu = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = self._now() - self._cpu
        self.share = self.seconds / max(1e-9, time.perf_counter() - self._started)  # 1.0 = one core

    @staticmethod
    def _now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def write_json(path: str | None, result: Mapping) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


# --- options -------------------------------------------------------------------


def add_target_options(parser: argparse.ArgumentParser, listener: str, user_default: str) -> None:
    """--host/--port/--user-format/--password to drive a running server; --workers for our own one."""
    target = parser.add_argument_group("target (without --port: a scratch Postfach started by the script)")
    target.add_argument("--host", default="127.0.0.1")
    target.add_argument("--port", type=int, help=f"a running server's {listener} port (TLS)")
    target.add_argument("--user-format", "--user-pattern", dest="user_format", default=user_default,
                        help="with --port: account names, {n} is the number (default: %(default)s)")
    target.add_argument("--password", default=PASSWORD, help="with --port: every account's password")
    target.add_argument("--workers", type=int, help="`postfach serve --workers N` for the script's own server")
    target.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")


# --- a scratch Postfach -------------------------------------------------------


def postfach_serve_args(workers: int | None) -> list[str]:
    """`serve` arguments for `workers`; dropped with a note when this checkout's serve has no --workers."""
    if workers is None:
        return []
    if not serve_has_workers_option():
        print("note: this postfach serve has no --workers option; running it without", file=sys.stderr)
        return []
    return ["--workers", str(workers)]


def serve_has_workers_option() -> bool:
    result = subprocess.run([sys.executable, "-m", "postfach", "serve", "--help"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}, check=False)
    return "--workers" in result.stdout


async def fill_postfach(config_file: Path, mailboxes: Mapping[str, Iterable[bytes]],
                        password: str = PASSWORD, writers: int = 50) -> str:
    """Accounts with these INBOX contents in the store of a server that is not running yet,
    indexed for SEARCH TEXT as on a server that received them a while ago.

    Every account gets one password hash made with the configuration's argon2
    parameters, so the first login costs what every later one does; returns it.
    """
    import asyncio

    from postfach.auth.passwords import Passwords
    from postfach.config import load_config
    from postfach.store import open_store

    config = load_config(config_file, environ={})
    hashed = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib,
                                  config.argon2_parallelism).hash(password)
    store = await open_store(config)
    try:
        for address, messages in mailboxes.items():
            domain = address.rpartition("@")[2]
            if await store.get_domain(domain) is None:
                await store.add_domain(domain)
            account = await store.add_account(address, hashed, 1 << 40)
            inbox = await store.get_folder(account.id, "INBOX")
            pending = iter(messages)

            async def writer(folder_id: int = inbox.id, pending=pending) -> None:
                for message in pending:
                    await store.append(folder_id, message)

            await asyncio.gather(*(writer() for _ in range(writers)))
        # Mail delivered before a load starts is indexed for SEARCH TEXT on a server that has
        # run a while; the store's writer does it now, rather than during the measurement.
        while await store.search_pending_count():
            await asyncio.sleep(0.2)
    finally:
        await store.close()
    return hashed


def start_postfach(scratch: Path, listeners: Iterable[str], mailboxes: Mapping[str, Iterable[bytes]],
                   workers: int | None = None, extra_config: str = ""):
    """`postfach serve` on scratch with the listeners on 127.0.0.1:0 and these mailboxes; a ServeProcess."""
    import asyncio

    from tests.support.config import write_config
    from tests.support.server import ServeProcess

    config_file = write_config(scratch, listeners=tuple(listeners), extra=extra_config)
    asyncio.run(fill_postfach(config_file, mailboxes))
    return ServeProcess(["--config", str(config_file), *postfach_serve_args(workers)],
                        env={"PYTHONPATH": str(REPO / "src")}, timeout=120)
