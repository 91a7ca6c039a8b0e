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
from postfach.auth.quarantine import LoginPolicy, load_login_secret
from postfach.config import Config, ListenAddress
from postfach.connection_limits import ConnectionLimits
from postfach.delivery.checks import MessageChecks
from postfach.delivery.pipeline import DeliveryPipeline
from postfach.delivery.srs import Srs, load_secret
from postfach.dns import DnsResolver
from postfach.imap.server import ImapServer, ImapTimeouts
from postfach.imap.session import ImapServices, ImapSettings
from postfach.net import Handler, Listener
from postfach.pop3.server import Pop3Server
from postfach.queue.routes import Routes
from postfach.queue.worker import OutboundQueue
from postfach.smtp import SMTP_LISTENERS, smtp_listener
from postfach.smtp.listener import SmtpListener
from postfach.store import open_store
from postfach.store.sqlite import SqliteStore
from postfach.web.server import WebServer

log = logging.getLogger(__name__)

# Listeners whose clients expect TLS from the first byte.
IMPLICIT_TLS = frozenset({"imaps", "pop3s", "submissions"})


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: SqliteStore | None = None
        self.authenticator: Authenticator | None = None
        self.pop3: Pop3Server | None = None
        self.imap: ImapServer | None = None
        self.pipeline: DeliveryPipeline | None = None
        self.queue: OutboundQueue | None = None
        self.dns: DnsResolver | None = None
        self.listeners: dict[str, Listener | SmtpListener] = {}
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
        self.store = await open_store(config)
        passwords = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism)
        self.authenticator = Authenticator(
            self.store,
            passwords,
            LoginPolicy.from_config(config),
            await asyncio.to_thread(load_login_secret, config.data_dir),
        )
        self.pop3 = Pop3Server(
            self.store,
            self.authenticator,
            tls.server_context(cert, key),  # for STLS; pop3s gets its TLS from the Listener
            idle_timeout=config.pop3_idle_timeout,
            allow_plaintext_on_loopback=config.allow_plaintext_on_loopback,
            exclusive_lock=config.pop3_exclusive_lock,
            limits=ConnectionLimits(config.pop3_max_connections_per_address),
            max_commands_before_login=config.pop3_max_commands_before_login,
        )
        self.imap = ImapServer(
            ImapServices(
                self.store,
                self.authenticator,
                ImapSettings(config.hostname, allow_plaintext_on_loopback=config.allow_plaintext_on_loopback),
                ConnectionLimits(config.imap_max_connections_per_address, config.imap_max_connections_per_account),
            ),
            tls.server_context(cert, key),  # for STARTTLS; imaps gets its TLS from the Listener
            ImapTimeouts(config.imap_login_timeout, config.imap_idle_timeout),
        )
        handlers: dict[str, Handler] = {
            "imap": self.imap.serve,
            "imaps": self.imap.serve,
            "pop3": self.pop3.serve_plain,
            "pop3s": self.pop3.serve_tls,
        }
        # The one delivery pipeline (MX, submission, later webmail) and the outbound queue it
        # hands remote mail to; the queue files its bounces through the pipeline.
        self.dns = DnsResolver(config.dns_nameservers, config.dns_timeout)
        routes = Routes(self.dns, static=config.routes, smarthost=config.smtp_smarthost, port=config.smtp_outbound_port)
        self.queue = OutboundQueue(
            self.store, routes, config.hostname, retry_delays=config.queue_retry_delays, max_age=config.queue_max_age
        )
        self.pipeline = DeliveryPipeline(
            self.store,
            config.hostname,
            outbound=self.queue,
            checks=MessageChecks(self.dns, config.hostname),
            srs=Srs(await asyncio.to_thread(load_secret, config.data_dir)),
            dmarc_reject=config.smtp_dmarc_reject,
        )
        self.queue.start(self.pipeline)
        smtp_limits = ConnectionLimits(config.smtp_max_connections_per_address)
        try:
            for name, address in config.listen.items():
                if name == "http":
                    context = tls.server_context(cert, key)
                    context.set_alpn_protocols(["h2", "http/1.1"])
                    self.web = WebServer(address, context, self.store)
                    await self.web.start()
                    continue
                if name in SMTP_LISTENERS:
                    smtp = smtp_listener(
                        name,
                        address,
                        config,
                        tls.server_context(cert, key),
                        self.pipeline,
                        self.authenticator,
                        smtp_limits,
                    )
                    await smtp.start()
                    self.listeners[name] = smtp
                    continue
                implicit: ssl.SSLContext | None = tls.server_context(cert, key) if name in IMPLICIT_TLS else None
                listener = Listener(name, address, handlers[name], implicit)
                await listener.start()
                self.listeners[name] = listener
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, let open requests finish, then close the store (all queued writes commit)."""
        await asyncio.gather(*(listener.close() for listener in self.listeners.values()))
        if self.queue is not None:
            await self.queue.stop()
            self.queue = None
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
