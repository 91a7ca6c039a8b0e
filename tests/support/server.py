"""Running Postfach for tests: in this process (a Server object) or as the real `postfach serve`."""

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from postfach.config import ListenAddress
from postfach.server import Server

READY = re.compile(r"postfach ready: (.*)$")


@contextlib.asynccontextmanager
async def running_server(config):
    server = Server(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ServeProcess:
    """`python -m postfach serve` in a subprocess; `addresses` is read from its "ready" log line."""

    def __init__(self, args=(), env=None, cwd=None, timeout=30.0):
        environ = {key: value for key, value in os.environ.items() if not key.startswith("POSTFACH_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postfach", "serve", *args],
            env={**environ, **(env or {})},
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.addresses = self._wait_ready(timeout)

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout: float) -> dict[str, ListenAddress]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError("postfach serve ended before it was ready:\n" + "".join(self.log))
            match = READY.search(line.rstrip())
            if match:
                return dict(_parse_address(entry) for entry in match.group(1).split(", "))
        self.kill()
        raise TimeoutError("postfach serve was not ready in time:\n" + "".join(self.log))

    def stop(self, signal_number, timeout: float = 20.0) -> int:
        self.process.send_signal(signal_number)
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _parse_address(entry: str) -> tuple[str, ListenAddress]:
    name, address = entry.split(" ", 1)
    host, _, port = address.rpartition(":")
    return name, ListenAddress(host.strip("[]"), int(port))


def data_dir_of(config_file: Path) -> Path:
    return config_file.parent / "data"
