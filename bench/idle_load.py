"""IDLE at scale (issue 7 point 3): memory of many IDLE-ing IMAPS connections, and how fast
a delivered message reaches them.

    .venv/bin/python bench/idle_load.py [--connections 10000] [--accounts 1000] [--workers N]
                                        [--latency-connections 1000] [--deliveries 200] [--compare]

Starts `postfach serve --workers N` (default: one per core; --compare runs the
same again with --workers 1) on a scratch data directory with --accounts
accounts and an empty INBOX each, imaps and smtp on loopback, and a DNS server
of its own on loopback (SPF/DMARC lookups of the MX stay on the machine). The
scratch config raises imap.max_connections_per_account and
imap.max_connections_per_address, and makes argon2 cheap: logging in 10,000
times is not what is measured here. Connection i logs in to account
i // (connections / accounts) and comes from 127.0.0.(1 + i % --sources), so
loopback does not run out of ephemeral ports; RLIMIT_NOFILE is raised for the
clients and the server (this script starts both).

The load side is --client-processes processes, each an asyncio loop holding
its share of the connections over raw TLS streams: LOGIN, SELECT INBOX, IDLE,
then nothing but reading. Its CPU is reported, since it shares the 2 cores.

1. Latency, at --latency-connections connections (the first accounts, every
   one with connections/accounts IDLE sessions): --deliveries messages go one
   after the other through SMTP (the `smtp` listener, one connection), each to
   the next of those accounts. Measured per IDLE session of that account: from
   the moment the client sends the final "." of DATA to the moment the session
   reads "* n EXISTS" (one monotonic clock, all processes on one machine).
   Printed p50/p99/max over all sessions, the same for the last session of each
   delivery, the SMTP 250 time, and the EXISTS counted from the 250 instead (what
   the fan-out adds to the durable delivery; below 0 when it came first).
2. Memory, at --connections connections: the rest are opened (time to
   establish them is printed), then the server's processes (supervisor and
   workers) are read from /proc/PID/smaps_rollup: RSS and PSS summed, minus the
   same figure before the first connection, per connection. --deliveries-at-full
   more deliveries then measure the latency at that size too.

With --messages M every INBOX holds M small messages (stored once, copied to each account),
so each session's in-memory index of its folder is M entries long: what a real INBOX costs.

With --hold SECONDS the connections stay open that long after the figures, with
the server's process ids printed, for py-spy or /proc inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import signal
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "src", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PASSWORD = "bench password 123"
DOMAIN = "idle.test"
SENDER = "sender@bench.test"
NOFILE = 200_000
EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")


# ---------------------------------------------------------------------------- the load side


def raise_nofile(wanted: int = NOFILE) -> int:
    """Raise this process's open-file limit as far as allowed (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(wanted, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, limit)), limit))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client_process(pipe: multiprocessing.connection.Connection, host: str, port: int) -> None:
    raise_nofile()
    asyncio.run(_Clients(pipe, host, port).run())


class _Clients:
    """One load process: its connections, driven by commands on `pipe` from the main process.

        main -> here                                  here -> main
        ("open", [(id, user, source), ...], parallel)  ("opened", ok, errors, seconds)
        ("count",)                                    ("count", open connections, cpu seconds)
        ("close",)                                    ("closed",)
        ("stop",)
                                                      ("exists", id, monotonic time)   at any time
    """

    def __init__(self, pipe: multiprocessing.connection.Connection, host: str, port: int) -> None:
        self.pipe = pipe
        self.host = host
        self.port = port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.sessions: dict[int, asyncio.Task] = {}
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._command)
        await self.stopped.wait()
        loop.remove_reader(self.pipe.fileno())
        await self._close_all()

    def _command(self) -> None:
        while self.pipe.poll():
            message = self.pipe.recv()
            if message[0] == "open":
                asyncio.create_task(self._open(message[1], message[2]))
            elif message[0] == "count":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                self.pipe.send(("count", len(self.writers), usage.ru_utime + usage.ru_stime))
            elif message[0] == "close":
                asyncio.create_task(self._close_reply())
            elif message[0] == "stop":
                self.stopped.set()

    async def _open(self, sessions: list[tuple[int, str, str]], parallel: int) -> None:
        began = time.monotonic()
        gate = asyncio.Semaphore(parallel)
        errors: list[str] = []
        established: list[asyncio.Future] = []
        for number, user, source in sessions:
            ready = asyncio.get_running_loop().create_future()
            established.append(ready)
            self.sessions[number] = asyncio.create_task(self._session(number, user, source, gate, ready))
        results = await asyncio.gather(*established, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                errors.append(f"{type(result).__name__}: {result}")
        self.pipe.send(("opened", len(results) - len(errors), errors[:5], time.monotonic() - began))

    async def _session(self, number: int, user: str, source: str, gate: asyncio.Semaphore,
                       ready: asyncio.Future) -> None:
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.context, local_addr=(source, 0), limit=8192
                )
                _share_read_buffer(writer)
                self.writers[number] = writer
                await _expect(reader, b"* OK")
                writer.write(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), PASSWORD.encode()))
                await _expect(reader, b"a OK")
                writer.write(b"b SELECT INBOX\r\n")
                await _expect(reader, b"b OK")
                writer.write(b"c IDLE\r\n")
                await _expect(reader, b"+ ")
            ready.set_result(True)
        except BaseException as error:  # noqa: BLE001 - reported to the main process
            if not ready.done():
                ready.set_exception(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            self.writers.pop(number, None)
            return
        try:
            while line := await reader.readline():
                if EXISTS.match(line):
                    self.pipe.send(("exists", number, time.monotonic()))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.writers.pop(number, None)

    async def _close_reply(self) -> None:
        await self._close_all()
        self.pipe.send(("closed",))

    async def _close_all(self) -> None:
        for writer in list(self.writers.values()):
            writer.close()
        for task in self.sessions.values():
            task.cancel()
        if self.sessions:
            await asyncio.gather(*self.sessions.values(), return_exceptions=True)
        self.sessions.clear()
        self.writers.clear()


_SHARED_BUFFER = bytearray(256 * 1024)


def _share_read_buffer(writer: asyncio.StreamWriter) -> None:
    """Keep the load side small: asyncio's SSL transport holds a 256 KiB receive buffer per
    connection, which it only uses between recv_into and the copy into its TLS object."""
    protocol = getattr(writer.transport, "_ssl_protocol", None)
    if protocol is not None and hasattr(protocol, "_ssl_buffer"):
        protocol._ssl_buffer = _SHARED_BUFFER
        protocol._ssl_buffer_view = memoryview(_SHARED_BUFFER)


async def _expect(reader: asyncio.StreamReader, prefix: bytes) -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), 120)
        if not line:
            raise ConnectionError(f"closed while waiting for {prefix!r}")
        if line.startswith(prefix):
            return
        if line[:1] != b"*":
            raise RuntimeError(f"waiting for {prefix!r}, got {line[:80]!r}")


class LoadSide:
    """The main process's handle on the load processes."""

    def __init__(self, processes: int, host: str, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=client_process, args=(theirs, host, port), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
        self.exists: list[tuple[int, float]] = []  # every EXISTS seen, in arrival order
        self._replies: dict[int, list[tuple]] = {index: [] for index in range(processes)}

    def open(self, sessions: list[tuple[int, str, str]], parallel: int) -> tuple[int, list[str], float]:
        began = time.monotonic()
        for index, pipe in enumerate(self.pipes):
            pipe.send(("open", sessions[index :: len(self.pipes)], parallel))
        replies = self._await_all("opened")
        return sum(r[1] for r in replies), [e for r in replies for e in r[2]], time.monotonic() - began

    def count(self) -> tuple[int, float]:
        for pipe in self.pipes:
            pipe.send(("count",))
        replies = self._await_all("count")
        return sum(r[1] for r in replies), sum(r[2] for r in replies)

    def close_all(self) -> None:
        for pipe in self.pipes:
            pipe.send(("close",))
        self._await_all("closed")

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    def poll(self, timeout: float) -> None:
        """Take in what the load processes sent within `timeout` seconds."""
        for pipe in multiprocessing.connection.wait(self.pipes, timeout):
            index = self.pipes.index(pipe)
            while pipe.poll():
                message = pipe.recv()
                if message[0] == "exists":
                    self.exists.append((message[1], message[2]))
                else:
                    self._replies[index].append(message)

    def _await_all(self, kind: str, timeout: float = 1800) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(any(m[0] == kind for m in replies) for replies in self._replies.values()):
                found = []
                for replies in self._replies.values():
                    message = next(m for m in replies if m[0] == kind)
                    replies.remove(message)
                    found.append(message)
                return found
            self.poll(1.0)
        raise TimeoutError(f"the load processes did not answer {kind!r}")


# ---------------------------------------------------------------------------- SMTP


class Smtp:
    """One plain SMTP connection to the MX listener, one transaction after the other."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""
        self.reply(220)
        self.command(b"EHLO bench.test", 250)

    def reply(self, code: int) -> None:
        while True:
            while b"\r\n" not in self.pending:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the SMTP server closed the connection")
                self.pending += chunk
            line, self.pending = self.pending.split(b"\r\n", 1)
            if line[3:4] != b"-":
                if int(line[:3]) != code:
                    raise RuntimeError(f"expected {code}, got {line.decode(errors='replace')}")
                return

    def command(self, line: bytes, code: int) -> None:
        self.sock.sendall(line + b"\r\n")
        self.reply(code)

    def send(self, recipient: str, number: int) -> tuple[float, float]:
        """Deliver one message; (monotonic time the final "." went out, time the 250 came)."""
        self.command(b"MAIL FROM:<%s>" % SENDER.encode(), 250)
        self.command(b"RCPT TO:<%s>" % recipient.encode(), 250)
        self.command(b"DATA", 354)
        body = (
            f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: idle {number}\r\n"
            f"Message-ID: <{number}.{time.time_ns()}@bench.test>\r\n\r\nnew mail {number}\r\n"
        ).encode()
        self.sock.sendall(body)
        sent = time.monotonic()
        self.sock.sendall(b".\r\n")
        self.reply(250)
        return sent, time.monotonic()

    def close(self) -> None:
        try:
            self.command(b"QUIT", 221)
        except (OSError, RuntimeError):
            pass
        self.sock.close()


# ---------------------------------------------------------------------------- the server


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    pids += process_tree(int(child))
    except FileNotFoundError:
        pass
    return pids


def memory_kib(pid: int) -> dict[str, int]:
    """Rss and Pss of one process, from /proc/PID/smaps_rollup (kB)."""
    figures = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                figures[name] = int(rest.split()[0])
    return figures


def open_sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def server_memory(root: int) -> dict:
    processes = {pid: {**memory_kib(pid), "sockets": open_sockets(pid)} for pid in process_tree(root)}
    return {
        "rss_kib": sum(p["Rss"] for p in processes.values()),
        "pss_kib": sum(p["Pss"] for p in processes.values()),
        "processes": processes,
    }


def server_cpu(root: int) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in process_tree(root):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def write_scratch_config(scratch: Path, dns_port: int, options: argparse.Namespace) -> Path:
    per_account = max(1, -(-options.connections // options.accounts))
    config = scratch / "postfach.toml"
    config.write_text(
        'data_dir = "data"\nhostname = "mail.example.com"\n'
        "[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n"
        f"[imap]\nmax_connections_per_account = {per_account + 10}\n"
        f"max_connections_per_address = {min(100_000, options.connections + 100)}\n"
        f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        '[listen]\nimaps = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\n'
    )
    return config


async def make_accounts(config_file: Path, addresses: list[str], messages: int = 0) -> None:
    """The accounts, each with `messages` small messages in its INBOX (stored once, then copied)."""
    from postfach.auth.passwords import Passwords
    from postfach.config import load_config
    from postfach.store import open_store

    config = load_config(config_file, environ={})
    hashed = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib,
                                  config.argon2_parallelism).hash(PASSWORD)
    store = await open_store(config)
    try:
        await store.add_domain(DOMAIN)
        for start in range(0, len(addresses), 200):
            await asyncio.gather(*(store.add_account(a, hashed, 1 << 30) for a in addresses[start : start + 200]))
        if not messages:
            return
        template = await store.add_account(f"template@{DOMAIN}", hashed, 1 << 40)
        source = await store.get_folder(template.id, "INBOX")
        for start in range(0, messages, 100):
            await asyncio.gather(*(store.append(source.id, _stored_message(n))
                                   for n in range(start, min(messages, start + 100))))
        uids = (await store.load_index(source.id)).uids
        for start in range(0, len(addresses), 50):
            accounts = [await store.get_account(a) for a in addresses[start : start + 50]]
            inboxes = [await store.get_folder(account.id, "INBOX") for account in accounts]
            await asyncio.gather(*(store.copy_messages(source.id, uids, inbox.id) for inbox in inboxes))
            # Old mail: seen as \Recent by some earlier session already, as in a mailbox in use.
            await asyncio.gather(*(store.claim_recent(inbox.id) for inbox in inboxes))
    finally:
        await store.close()


def _stored_message(number: int) -> bytes:
    return (f"From: Sender {number} <sender{number}@bench.test>\r\nTo: {DOMAIN}\r\n"
            f"Subject: stored {number}\r\nMessage-ID: <stored.{number}@bench.test>\r\n\r\nold mail\r\n").encode()


# ---------------------------------------------------------------------------- the run


def quantile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50_ms": quantile(ordered, 0.5) * 1000, "p99_ms": quantile(ordered, 0.99) * 1000,
            "max_ms": ordered[-1] * 1000}


def show(label: str, figures: dict) -> str:
    if not figures.get("n"):
        return f"{label}: no samples"
    return (f"{label}: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"max {figures['max_ms']:.1f} ms ({figures['n']} samples)")


def machine_load() -> str:
    """The 1-minute load average: other work on the machine shows in the latency figures."""
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().split()[0]


def show_latency(latency: dict) -> None:
    print("  " + show("EXISTS on each session", latency["exists"]))
    print("  " + show("EXISTS on the last session of a delivery", latency["last_session"]))
    print("  " + show("SMTP 250", latency["smtp_250"]))
    print("  " + show("EXISTS on each session, counted from the 250", latency["exists_after_250"]))
    print(f"  server CPU {latency['server_cpu_s']:.1f} s; machine load average {latency['load_average']}")
    if latency["missing"]:
        print(f"  {latency['missing']} sessions saw no EXISTS within 10 s")


def measure_latency(load: LoadSide, smtp: Smtp, accounts: list[str], sessions_of: dict[int, list[int]],
                    deliveries: int, gap: float, timeout: float = 10.0) -> dict:
    """`deliveries` messages, each to the next account that has sessions (`sessions_of`, by index
    in `accounts`); per IDLE session the time to its EXISTS."""
    targets = sorted(sessions_of)
    per_session: list[float] = []
    per_delivery: list[float] = []
    smtp_250: list[float] = []
    after_250: list[float] = []  # EXISTS minus the 250: what the fan-out adds to the delivery (< 0: before it)
    missing = 0
    for number in range(deliveries):
        account = targets[number % len(targets)]
        waiting = set(sessions_of[account])
        load.exists.clear()
        sent, accepted = smtp.send(accounts[account], number)
        smtp_250.append(accepted - sent)
        deadline = time.monotonic() + timeout
        seen: list[float] = []
        while waiting and time.monotonic() < deadline:
            load.poll(0.05)
            for session, at in load.exists:
                if session in waiting:
                    waiting.discard(session)
                    seen.append(at - sent)
            load.exists.clear()
        missing += len(waiting)
        per_session += seen
        after_250 += [at - (accepted - sent) for at in seen]
        if seen:
            per_delivery.append(max(seen))
        if gap:
            time.sleep(gap)
    return {"deliveries": deliveries, "load_average": machine_load(), "missing": missing, "exists": percentiles(per_session),
            "last_session": percentiles(per_delivery), "smtp_250": percentiles(smtp_250),
            "exists_after_250": percentiles(after_250)}


def run(options: argparse.Namespace, workers: int) -> dict:
    from tests.support.dns import ZoneServer
    from tests.support.server import ServeProcess

    per_account = max(1, -(-options.connections // options.accounts))
    accounts = [f"idle{n}@{DOMAIN}" for n in range(options.accounts)]
    sessions = [(n, accounts[n // per_account], f"127.0.0.{1 + n % options.sources}")
                for n in range(options.connections)]
    result: dict = {"workers": workers, "connections": options.connections, "accounts": options.accounts,
                    "messages": options.messages}
    dns = ZoneServer()
    dns.add("bench.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    dns.add("_dmarc.bench.test", "TXT", "v=DMARC1; p=none")
    with tempfile.TemporaryDirectory(prefix="postfach-idle-bench-") as scratch:
        config = write_scratch_config(Path(scratch), dns.address.port, options)
        began = time.monotonic()
        asyncio.run(make_accounts(config, accounts, options.messages))
        print(f"--workers {workers}: {len(accounts)} accounts with {options.messages} messages in INBOX made in "
              f"{time.monotonic() - began:.1f} s", flush=True)
        server = ServeProcess(["--config", str(config), "--workers", str(workers)],
                              env={"PYTHONPATH": str(options.src)}, timeout=120)
        load = None
        try:
            root = server.process.pid
            time.sleep(1.0)
            empty = server_memory(root)
            result["empty_server"] = {k: empty[k] for k in ("rss_kib", "pss_kib")}
            print(f"server without connections: RSS {empty['rss_kib'] / 1024:.0f} MB, "
                  f"PSS {empty['pss_kib'] / 1024:.0f} MB ({len(empty['processes'])} processes)", flush=True)
            load = LoadSide(options.client_processes, "127.0.0.1", server.addresses["imaps"].port)
            smtp = Smtp("127.0.0.1", server.addresses["smtp"].port)

            # 1. latency at --latency-connections
            first = sessions[: options.latency_connections]
            opened, errors, seconds = load.open(first, options.parallel)
            print(f"{opened} of {len(first)} connections IDLE in {seconds:.1f} s", flush=True)
            if errors:
                print(f"  errors, e.g.: {errors[:3]}")
            sessions_of: dict[int, list[int]] = {}
            for number, _, _ in first:
                sessions_of.setdefault(number // per_account, []).append(number)
            smtp.send(accounts[0], -1)  # warm-up: the first delivery opens what later ones reuse
            time.sleep(0.5)
            load.poll(0.1)
            cpu_before = server_cpu(root)
            latency = measure_latency(load, smtp, accounts, sessions_of, options.deliveries, options.gap)
            latency["server_cpu_s"] = server_cpu(root) - cpu_before
            result["latency"] = {"connections": opened, **latency}
            print(f"latency at {opened} connections, {options.deliveries} deliveries, "
                  f"{per_account} IDLE sessions per account, from the final '.' of DATA:")
            show_latency(latency)

            # 2. memory at --connections
            rest = sessions[options.latency_connections :]
            cpu_before = server_cpu(root)
            opened_rest, errors, seconds = load.open(rest, options.parallel)
            establish_cpu = server_cpu(root) - cpu_before
            held, client_cpu = load.count()
            print(f"{opened_rest} more connections IDLE in {seconds:.1f} s ({opened_rest / max(seconds, 1e-9):.0f}/s, "
                  f"server CPU {establish_cpu:.1f} s); {held} held", flush=True)
            if errors:
                print(f"  errors, e.g.: {errors[:3]}")
            time.sleep(options.settle)
            full = server_memory(root)
            per_rss = (full["rss_kib"] - empty["rss_kib"]) / max(held, 1)
            per_pss = (full["pss_kib"] - empty["pss_kib"]) / max(held, 1)
            result["memory"] = {
                "held": held, "establish_s": seconds, "establish_server_cpu_s": establish_cpu,
                "rss_kib": full["rss_kib"], "pss_kib": full["pss_kib"],
                "per_connection_rss_kib": per_rss, "per_connection_pss_kib": per_pss,
                "processes": full["processes"],
            }
            print(f"{held} connections held: server RSS {full['rss_kib'] / 1024:.0f} MB, "
                  f"PSS {full['pss_kib'] / 1024:.0f} MB; per connection (above the empty server) "
                  f"RSS {per_rss:.1f} KB, PSS {per_pss:.1f} KB")
            for pid, figures in full["processes"].items():
                print(f"  pid {pid}: RSS {figures['Rss'] / 1024:.0f} MB, PSS {figures['Pss'] / 1024:.0f} MB, "
                      f"{figures['sockets']} sockets")
            if options.deliveries_at_full:
                for number, _, _ in rest:
                    sessions_of.setdefault(number // per_account, []).append(number)
                cpu_before = server_cpu(root)
                latency = measure_latency(load, smtp, accounts, sessions_of, options.deliveries_at_full, options.gap)
                latency["server_cpu_s"] = server_cpu(root) - cpu_before
                result["latency_full"] = {"connections": held, **latency}
                print(f"latency at {held} connections, {options.deliveries_at_full} deliveries:")
                show_latency(latency)
            if options.hold:
                print(f"holding for {options.hold:.0f} s; server pids {process_tree(root)}", flush=True)
                time.sleep(options.hold)
            held_end, client_cpu = load.count()
            result["client_cpu_s"] = client_cpu
            print(f"load processes' CPU: {client_cpu:.1f} s in all; {held_end} connections still open at the end")
            smtp.close()
            load.close_all()
        finally:
            if load is not None:
                load.stop()
            server.stop(signal.SIGTERM, timeout=120)
            dns.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=0, help="messages in every INBOX (each session's index)")
    parser.add_argument("--latency-connections", type=int, default=1_000)
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--deliveries-at-full", type=int, default=50, help="deliveries at --connections")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between deliveries")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--compare", action="store_true", help="then the same with --workers 1")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=64, help="handshakes in flight per load process")
    parser.add_argument("--sources", type=int, default=16, help="source addresses 127.0.0.1..N")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before reading memory")
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="run the server from this copy of src/ (before/after comparisons)")
    parser.add_argument("--json", metavar="FILE")
    options = parser.parse_args()
    options.latency_connections = min(options.latency_connections, options.connections)
    limit = raise_nofile()
    if limit < options.connections + 1000:
        print(f"the open-file limit is {limit}: too low for {options.connections} connections", file=sys.stderr)
        return 1
    results = [run(options, options.workers)]
    if options.compare and options.workers != 1:
        print()
        results.append(run(options, 1))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
