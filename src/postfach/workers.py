"""`postfach serve --workers N`: N processes share the listeners and the store (issue 7 point 1).

One Python process runs on one core. The supervisor (the process `postfach
serve` started as) binds every listening socket, then starts N workers with
`python -m postfach.workers`, handing each its sockets (inherited file
descriptors) and one end of a socketpair to itself. Every worker is a whole
`Server`. Each listener is N sockets on one address (SO_REUSEPORT), one per
worker: the kernel spreads new connections over them by the client's port
(net.bind_sockets), and the supervisor keeps them open, so connections made
while a worker restarts wait for the new one.

What must hold for the whole server goes through the supervisor (broker.py):
change events (IDLE in one worker sees mail delivered by another) and counted
slots (connection limits, the POP3 maildrop lock). Everything else already
lives in the store: quarantine and throttling, \\Recent, the outbound queue's
leases.

The supervisor restarts a worker that dies, forwards SIGHUP (certificate
reload) to every worker, and on SIGTERM or SIGINT stops them all and waits
until each has committed what it accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from postfach import tls
from postfach.broker import BrokeredEventBus, BrokerLink, BrokerSlots, Hub
from postfach.config import Config, ListenAddress, load_config
from postfach.net import bind_sockets
from postfach.server import Server, log_ready, run_until_stopped

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30.0
RESTART_DELAY_SECONDS = 1.0
# A worker that keeps dying is a broken installation, not bad luck: give up rather than loop.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


def supervise(config: Config, count: int) -> int:
    """Run `count` workers until SIGTERM or SIGINT; the exit code of `postfach serve`."""
    # Once, here: N workers starting at once would each make their own self-signed pair.
    tls.ensure_certificate(config)
    sockets: dict[str, list[socket.socket]] = {}
    try:
        for name, address in config.listen.items():
            sockets[name] = bind_sockets(name, address, count)
        return asyncio.run(Supervisor(config, sockets, count).run())
    finally:
        for group in sockets.values():
            for sock in group:
                sock.close()


class Supervisor:
    def __init__(self, config: Config, sockets: Mapping[str, list[socket.socket]], count: int) -> None:
        self._config = config
        self._sockets = sockets
        self._count = count
        self._hub = Hub(self._on_ready)
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._all_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failed = False
        self._restarts: list[float] = []
        self._watchers: set[asyncio.Task] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
        for number in range(1, self._count + 1):
            await self._start(number)
        ready = asyncio.create_task(self._all_ready.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait((ready, stopping), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._all_ready.is_set() and not self._stopping.is_set():
            log_ready(self._addresses())
            await stopping
        stopping.cancel()
        log.info("shutting down %d workers", len(self._workers))
        return await self._stop_all()

    def _addresses(self) -> dict[str, ListenAddress]:
        addresses = {}
        for name, group in self._sockets.items():
            host, port = group[0].getsockname()[:2]
            addresses[name] = ListenAddress(host, port)
        return addresses

    async def _start(self, number: int) -> None:
        supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "postfach.workers", "--number", str(number)]
        command += ["--channel", str(worker_end.fileno())]
        mine = {name: group[number - 1] for name, group in self._sockets.items()}
        for name, sock in mine.items():
            command += ["--listener", f"{name}={sock.fileno()}"]
        if self._config.config_file is not None:
            command += ["--config", str(self._config.config_file)]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                pass_fds=[worker_end.fileno(), *(sock.fileno() for sock in mine.values())],
            )
        finally:
            worker_end.close()
        self._workers[number] = process
        log.info("worker %d started (pid %d)", number, process.pid)
        if self._stopping.is_set():  # a restart that raced with SIGTERM: it stops with the others
            process.send_signal(signal.SIGTERM)
        watcher = asyncio.create_task(self._watch(number, process, supervisor_end), name=f"worker-{number}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, number: int, process: asyncio.subprocess.Process, channel: socket.socket) -> None:
        """Serve the worker's channel until it ends; restart the worker if it ended unasked."""
        await self._hub.serve(number, channel)
        code = await process.wait()
        self._ready.discard(number)
        if self._workers.get(number) is process:
            del self._workers[number]
        if self._stopping.is_set():
            return
        if not self._all_ready.is_set():
            log.error("worker %d could not start (exit code %s); stopping", number, code)
            self._failed = True
            self._stopping.set()
            return
        now = time.monotonic()
        self._restarts = [at for at in self._restarts if now - at < RESTART_WINDOW_SECONDS] + [now]
        if len(self._restarts) > MAX_RESTARTS:
            log.error("workers died %d times within %d s; stopping", len(self._restarts), RESTART_WINDOW_SECONDS)
            self._failed = True
            self._stopping.set()
            return
        log.error("worker %d ended (exit code %s); starting it again", number, code)
        await asyncio.sleep(RESTART_DELAY_SECONDS)
        if not self._stopping.is_set():
            await self._start(number)

    def _on_ready(self, number: int) -> None:
        self._ready.add(number)
        if len(self._ready) == self._count:
            self._all_ready.set()

    def _signal_workers(self, signum: int) -> None:
        for process in self._workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def _stop_all(self) -> int:
        self._signal_workers(signal.SIGTERM)
        processes = list(self._workers.values())
        codes = []
        for process in processes:
            try:
                codes.append(await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS))
            except TimeoutError:
                log.error("worker pid %d did not stop in %d s; killing it", process.pid, STOP_GRACE_SECONDS)
                process.kill()
                codes.append(await process.wait())
        if self._watchers:
            await asyncio.wait(tuple(self._watchers))
        return 1 if self._failed or any(codes) else 0


# ---------------------------------------------------------------------------- the worker process


async def _work(config: Config, sockets: dict[str, socket.socket], channel: socket.socket) -> None:
    link = await BrokerLink.connect(channel)
    server = Server(config, sockets=sockets, events=BrokeredEventBus(link), slots=BrokerSlots(link))
    stopping = asyncio.Event()
    # Without its supervisor a worker would serve on alone, unsupervised: it stops instead.
    link.start(on_lost=stopping.set)
    try:
        await run_until_stopped(server, lambda _: link.send(("ready",)), stopping)
    finally:
        await link.close()


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m postfach.workers")
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--listener", action="append", default=[], metavar="NAME=FD")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s worker {args.number} %(name)s: %(message)s"
    )
    config = load_config(Path(args.config) if args.config else None, os.environ)
    sockets = {}
    for entry in args.listener:
        name, fd = entry.split("=", 1)
        sockets[name] = socket.socket(fileno=int(fd))
    asyncio.run(_work(config, sockets, socket.socket(fileno=args.channel)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
