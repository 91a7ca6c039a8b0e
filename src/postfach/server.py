"""The composition root: builds the store, authentication and services, starts and stops listeners.

Nothing else in Postfach creates long-lived objects; a test builds a whole
server on a temporary directory and port 0 with `Server(config)`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys

from postfach import tls
from postfach.auth.authenticator import Authenticator
from postfach.auth.passwords import Passwords
from postfach.config import Config, ListenAddress
from postfach.net import Connection, Handler, Listener
from postfach.store.sqlite import SqliteStore
from postfach.web.server import WebServer

log = logging.getLogger(__name__)

# Listeners whose clients expect TLS from the first byte.
IMPLICIT_TLS = frozenset({"imaps", "pop3s", "submissions"})

# What a door whose protocol is not built yet answers: the protocol's own
# "service not available", so a client reports it instead of hanging.
_UNAVAILABLE = {
    "imap": b"* BYE [UNAVAILABLE] IMAP is not available on this server yet\r\n",
    "pop3": b"-ERR [SYS/PERM] POP3 is not available on this server yet\r\n",
    "smtp": b"421 4.3.2 SMTP is not available on this server yet\r\n",
}
_PROTOCOL = {
    "imap": "imap",
    "imaps": "imap",
    "pop3": "pop3",
    "pop3s": "pop3",
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": "smtp",
}


def _unavailable(greeting: bytes) -> Handler:
    async def handle(connection: Connection) -> None:
        connection.writer.write(greeting)
        await connection.writer.drain()

    return handle


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: SqliteStore | None = None
        self.authenticator: Authenticator | None = None
        self.listeners: dict[str, Listener] = {}
        self.web: WebServer | None = None

    @property
    def addresses(self) -> dict[str, ListenAddress]:
        """Every started listener's bound address, by listener name."""
        bound = {name: listener.bound for name, listener in self.listeners.items()}
        if self.web is not None:
            bound["http"] = self.web.bound
        return bound

    async def start(self) -> None:
        config = self.config
        cert, key = await asyncio.to_thread(tls.ensure_certificate, config)
        self.store = await SqliteStore.open(config.db_path, config.blob_dir)
        passwords = Passwords()
        self.authenticator = Authenticator(self.store, passwords)
        try:
            for name, address in config.listen.items():
                if name == "http":
                    context = tls.server_context(cert, key)
                    context.set_alpn_protocols(["h2", "http/1.1"])
                    self.web = WebServer(address, context, self.store)
                    await self.web.start()
                    continue
                implicit: ssl.SSLContext | None = tls.server_context(cert, key) if name in IMPLICIT_TLS else None
                listener = Listener(name, address, _unavailable(_UNAVAILABLE[_PROTOCOL[name]]), implicit)
                await listener.start()
                self.listeners[name] = listener
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, let open requests finish, then close the store (all queued writes commit)."""
        await asyncio.gather(*(listener.close() for listener in self.listeners.values()))
        if self.web is not None:
            await self.web.stop()
        if self.store is not None:
            await self.store.close()
            self.store = None
        log.info("stopped")


async def _serve(config: Config) -> None:
    server = Server(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    log.info("postfach ready: %s", ", ".join(f"{name} {address}" for name, address in server.addresses.items()))
    await stopping.wait()
    log.info("shutting down")
    await server.stop()


def serve(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(config))
    except OSError as error:
        print(f"postfach: {error}", file=sys.stderr)
        return 1
    return 0
