"""The composition root: builds the store, authentication and services, starts and stops listeners.

Nothing else in Postfach creates long-lived objects; a test builds a whole
server on a temporary directory and port 0 with `Server(config)`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta

from postfach import tls
from postfach.auth.audit_retention import AuditRetention
from postfach.auth.authenticator import Authenticator
from postfach.auth.passwords import Passwords
from postfach.auth.quarantine import LoginPolicy, load_login_secret
from postfach.config import IMPLICIT_TLS, Config, ListenAddress
from postfach.connection_limits import ConnectionLimits, LocalSlots, Slots
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
from postfach.store.events import LocalEventBus
from postfach.store.sqlite import SqliteStore
from postfach.web.server import WebServer

log = logging.getLogger(__name__)

# Listeners whose clients expect TLS from the first byte.


class Server:
    """Every service of one process.

    Alone it binds its listeners and keeps its counts and change events to itself. As one of
    several workers (workers.py) it gets the listening `sockets`, an event bus and `slots`
    that reach the other workers.
    """

    def __init__(
        self,
        config: Config,
        *,
        sockets: Mapping[str, socket.socket] | None = None,
        events: LocalEventBus | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.config = config
        self.certificates = tls.Certificates(config)
        self._sockets = dict(sockets or {})
        self._events = events
        self._slots = slots or LocalSlots()
        self.store: SqliteStore | None = None
        self.authenticator: Authenticator | None = None
        self.audit_retention: AuditRetention | None = None
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
        await asyncio.to_thread(self.certificates.load)
        self.store = await open_store(config, self._events)
        passwords = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism)
        self.authenticator = Authenticator(
            self.store,
            passwords,
            LoginPolicy.from_config(config),
            await asyncio.to_thread(load_login_secret, config.data_dir),
        )
        self.audit_retention = AuditRetention(self.store, config.audit_retention_days)
        self.audit_retention.start()
        self.pop3 = Pop3Server(
            self.store,
            self.authenticator,
            self.certificates.server_context(),  # for STLS; pop3s gets its TLS from the Listener
            idle_timeout=config.pop3_idle_timeout,
            allow_plaintext_on_loopback=config.allow_plaintext_on_loopback,
            exclusive_lock=config.pop3_exclusive_lock,
            limits=ConnectionLimits("pop3", config.pop3_max_connections_per_address, slots=self._slots),
            max_commands_before_login=config.pop3_max_commands_before_login,
            slots=self._slots,
        )
        self.imap = ImapServer(
            ImapServices(
                self.store,
                self.authenticator,
                ImapSettings(config.hostname, allow_plaintext_on_loopback=config.allow_plaintext_on_loopback),
                ConnectionLimits(
                    "imap",
                    config.imap_max_connections_per_address,
                    config.imap_max_connections_per_account,
                    slots=self._slots,
                ),
            ),
            self.certificates.server_context(),  # for STARTTLS; imaps gets its TLS from the Listener
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
            vacation_period=timedelta(seconds=config.vacation_period),
        )
        self.queue.start(self.pipeline)
        smtp_limits = ConnectionLimits("smtp", config.smtp_max_connections_per_address, slots=self._slots)
        try:
            for name, address in config.listen.items():
                if name == "http":
                    context = self.certificates.server_context(alpn=("h2", "http/1.1"))
                    self.web = WebServer(
                        address, context, self.store, config.hostname, lambda: self.addresses,
                        self._sockets.pop(name, None),
                    )
                    await self.web.start()
                    continue
                if name in SMTP_LISTENERS:
                    smtp = smtp_listener(
                        name,
                        address,
                        config,
                        self.certificates.server_context(),
                        self.pipeline,
                        self.authenticator,
                        smtp_limits,
                        self._sockets.pop(name, None),
                    )
                    await smtp.start()
                    self.listeners[name] = smtp
                    continue
                implicit: ssl.SSLContext | None = self.certificates.server_context() if name in IMPLICIT_TLS else None
                listener = Listener(name, address, handlers[name], implicit, self._sockets.pop(name, None))
                await listener.start()
                self.listeners[name] = listener
        except BaseException:
            await self.stop()
            raise

    def reload_certificates(self) -> asyncio.Future[list[str]]:
        """Re-read every certificate and key file off the event loop (SIGHUP); see tls.Certificates.reload.

        The future's result is the problems, already logged; the old certificate of a broken
        pair stays in use, so a bad reload never costs TLS.
        """
        return asyncio.get_running_loop().run_in_executor(None, self.certificates.reload)

    async def stop(self) -> None:
        """Stop accepting, let open requests finish, then close the store (all queued writes commit)."""
        await asyncio.gather(*(listener.close() for listener in self.listeners.values()))
        if self.queue is not None:
            await self.queue.stop()
            self.queue = None
        if self.audit_retention is not None:
            await self.audit_retention.stop()
            self.audit_retention = None
        if self.web is not None:
            await self.web.stop()
        if self.store is not None:
            await self.store.close()
            self.store = None
        log.info("stopped")


async def run_until_stopped(
    server: Server, on_ready: Callable[[Server], None], stopping: asyncio.Event | None = None
) -> None:
    """Start `server`, serve until SIGTERM or SIGINT (or `stopping` is set), then stop it cleanly."""
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificates)
    await server.start()
    on_ready(server)
    await stopping.wait()
    log.info("shutting down")
    await server.stop()


def log_ready(addresses: Mapping[str, ListenAddress]) -> None:
    """The line that says the server serves (tests and scripts wait for it)."""
    log.info("postfach ready: %s", ", ".join(f"{name} {address}" for name, address in addresses.items()))


def serve(config: Config, workers: int | None = None) -> int:
    """`postfach serve`: one process, or a supervisor of `workers` processes (config.workers when None)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    count = workers or config.workers
    try:
        if count > 1:
            from postfach.workers import supervise

            return supervise(config, count)
        asyncio.run(run_until_stopped(Server(config), lambda server: log_ready(server.addresses)))
    except OSError as error:
        print(f"postfach: {error}", file=sys.stderr)
        return 1
    return 0


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor: allow as many as the system lets us (workers inherit it).

    The usual soft limit of 1024 would refuse the 1,025th IDLE-ing client; the hard limit is
    what the operator (or systemd's LimitNOFILE) allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # an unlimited hard limit is more than the kernel allows
        log.warning("open files: limit stays at %d (%s)", soft, error)
        return
    log.info("open files: limit raised from %d to %d", soft, hard)
