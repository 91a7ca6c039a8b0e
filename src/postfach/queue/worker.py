"""The queue worker: takes due messages from the store, sends them, records what happened.

`OutboundQueue` is the pipeline's `Outbound`: `enqueue` commits the entry and
wakes the worker. The worker sleeps until the soonest entry is due (or a new
one arrives), claims due entries (at most `concurrency` at a time), tries each
once, groups its pending recipients by domain, and sends each group to the
first host of that domain that holds a conversation (routes.py, client.py).

Several processes (and nodes) may run a worker on one store: a claim is a
lease in the store (Store.claim_queue), so one process at a time tries an
entry. The worker renews its leases while attempts run; recording the attempt
releases the lease. A process that dies leaves leases that run out after
`lease` seconds, and another process tries those entries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from postfach.address import domain_of
from postfach.delivery.checks import from_domain
from postfach.dkim_keys import sign
from postfach.dns import DnsTempError
from postfach.model import QueuedMessage
from postfach.queue import backoff, client
from postfach.queue.dsn import Failure, build_dsn
from postfach.queue.routes import NoMailDomain, Routes
from postfach.store.base import LeaseLost, StagedBlob, Store

log = logging.getLogger(__name__)

_IDLE_SECONDS = 60.0  # look at the store at least this often (another process may have queued)
# How long a claim holds an entry without renewal. Renewed every third of it, so a busy
# store can miss a renewal without losing the lease; after a crash, another process
# tries the entry again this long after the last renewal.
DEFAULT_LEASE = 120.0


def process_owner() -> str:
    """A name for this process's leases, unique across hosts, processes and restarts: a restarted
    process with its predecessor's pid (pid 1 in a container) must not take its leases for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LocalDelivery(Protocol):
    """What the queue needs of the pipeline: file a bounce (DeliveryPipeline.deliver_bounce)."""

    async def deliver_bounce(self, recipient: str, message: bytes) -> None: ...


def _enhanced(reply: client.Reply) -> str:
    first = reply.text.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(part.isdigit() for part in parts) and first[0] == str(reply.code)[0]:
        return first
    return f"{reply.code // 100}.0.0"


class OutboundQueue:
    def __init__(
        self,
        store: Store,
        routes: Routes,
        hostname: str,
        *,
        retry_delays: Sequence[int] = backoff.DEFAULT_DELAYS,
        max_age: int = backoff.DEFAULT_MAX_AGE,
        concurrency: int = 20,
        send_timeout: float = 60.0,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self._store = store
        self._routes = routes
        self._hostname = hostname
        self._delays = tuple(retry_delays)
        self._max_age = max_age
        self._concurrency = concurrency
        self._timeout = send_timeout
        self.owner = process_owner()
        self._lease = lease
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task] = {}
        self._runner: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None
        self._local: LocalDelivery | None = None

    # --- Outbound (the pipeline's seam) -------------------------------------------------

    async def enqueue(self, sender: str, recipients: Sequence[str], message: StagedBlob) -> None:
        entry = await self._store.enqueue(sender, recipients, message)
        log.info("queued %d for <%s> to %s", entry.id, sender, ", ".join(entry.pending))
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, local: LocalDelivery) -> None:
        self._local = local
        self._runner = asyncio.create_task(self._run(), name="outbound-queue")
        self._renewer = asyncio.create_task(self._renew_leases(), name="outbound-queue-leases")

    async def stop(self) -> None:
        """Stop trying; an attempt cut short is not recorded, so it is made again later. Its lease
        is left to run out rather than released: the thread sending it may still be finishing,
        and no other process may start the same delivery meanwhile."""
        tasks = [task for task in (self._runner, self._renewer, *self._in_flight.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = self._renewer = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._start_due()
                # With every slot busy, what is due waits for one to free up (which wakes us).
                full = len(self._in_flight) >= self._concurrency
                soonest = None if full else await self._store.next_queue_attempt()
            except Exception:
                log.exception("the outbound queue could not read the store; trying again soon")
                soonest = None
            wait = _IDLE_SECONDS if soonest is None else min(_IDLE_SECONDS, max(0.05, soonest - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _start_due(self) -> None:
        # Claim only what can start now: an entry held while waiting for a free slot here
        # could be tried at once by another process.
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return
        for entry in await self._store.claim_queue(self.owner, time.time(), self._lease, limit=free):
            if entry.id in self._in_flight:
                continue  # our lease ran out unrenewed and we took it again: it is still being tried
            task = asyncio.create_task(self._attempt_guarded(entry))
            self._in_flight[entry.id] = task
            task.add_done_callback(lambda _, key=entry.id: self._done(key))

    def _done(self, key: int) -> None:
        self._in_flight.pop(key, None)
        self._wake.set()  # its next attempt time may be the soonest now, and a slot is free

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            trying = list(self._in_flight)
            if not trying:
                continue
            try:
                held = await self._store.renew_queue_leases(self.owner, trying, time.time() + self._lease)
            except Exception:
                log.exception("the outbound queue could not renew its leases; trying again soon")
                continue
            for queue_id in sorted(set(trying) - set(held)):
                log.warning("queue entry %d: lease lost to another process while being tried", queue_id)

    async def _attempt_guarded(self, entry: QueuedMessage) -> None:
        try:
            await self.attempt(entry)
        except asyncio.CancelledError:
            raise
        except LeaseLost as error:
            log.warning("queue entry %d: attempt not recorded: %s", entry.id, error)
        except Exception:
            log.exception("queue entry %d: attempt failed; it stays queued", entry.id)
            # Not recorded as an attempt by the normal path: push it back so it does not spin.
            delay = backoff.retry_delay(entry.attempts + 1, self._delays)
            try:
                await self._store.record_attempt(
                    entry.id, {}, time.time() + delay, "internal error", owner=self.owner
                )
            except Exception:
                log.exception("queue entry %d: the failed attempt was not recorded; its lease runs out", entry.id)

    # --- one attempt ----------------------------------------------------------------------

    async def attempt(self, entry: QueuedMessage) -> QueuedMessage | None:
        """Try an entry this queue holds (claimed by `owner`); LeaseLost if it lost it meanwhile."""
        message = without_return_path(await self._store.read_blob(entry.blob.sha256))
        signed = await self._sign(entry.sender, message)
        by_domain: dict[str, list[str]] = defaultdict(list)
        for recipient in entry.pending:
            by_domain[domain_of(recipient).lower()].append(recipient)
        outcomes: dict[str, tuple[str, str | None]] = {}
        failures: list[Failure] = []
        errors: list[str] = []
        now = time.time()
        expired = backoff.expired(entry.created_at.timestamp(), now, self._max_age)
        for domain, recipients in by_domain.items():
            for recipient, (reply, remote) in (await self._send_domain(domain, entry.sender, recipients, signed)).items():
                if reply.ok:
                    outcomes[recipient] = ("delivered", None)
                    log.info("queue entry %d: delivered to <%s> via %s: %s", entry.id, recipient, remote, reply)
                elif reply.temporary and not expired:
                    outcomes[recipient] = ("pending", str(reply))
                    errors.append(f"<{recipient}>: {reply}")
                    log.info("queue entry %d: <%s> deferred: %s", entry.id, recipient, reply)
                else:
                    text = str(reply) if not reply.temporary else f"{reply} (gave up after {self._max_age // 3600} hours)"
                    outcomes[recipient] = ("failed", text)
                    status = _enhanced(reply) if not reply.temporary else "4.4.7"  # RFC 3463: expired
                    failures.append(Failure(recipient, status, text, remote))
                    log.info("queue entry %d: <%s> failed: %s", entry.id, recipient, text)
        if failures and entry.sender:
            # Before recording: a crash in between sends a second bounce, never none.
            dsn = build_dsn(self._hostname, entry.sender, failures, message, entry.created_at,
                            expired=expired and all(f.status == "4.4.7" for f in failures))
            assert self._local is not None, "the queue was not started"
            await self._local.deliver_bounce(entry.sender, dsn)
        attempts = entry.attempts + 1
        when = backoff.next_attempt(entry.created_at.timestamp(), now, attempts, self._delays, self._max_age)
        return await self._store.record_attempt(
            entry.id, outcomes, when, "; ".join(errors)[:2000] or None, owner=self.owner
        )

    async def _send_domain(self, domain: str, sender: str, recipients: list[str],
                           message: bytes) -> dict[str, tuple[client.Reply, str | None]]:
        def everyone(code: int, text: str, remote: str | None = None):
            return {r: (client.Reply(code, text), remote) for r in recipients}

        try:
            hops = await self._routes.hops(domain)
        except DnsTempError as error:
            return everyone(451, f"4.4.3 DNS lookup for {domain} failed: {error}")
        except NoMailDomain as error:
            return everyone(550, f"5.1.2 {error}")
        if not hops:
            return everyone(451, f"4.4.4 no address for the mail hosts of {domain}")
        last = ""
        for hop in hops:
            try:
                replies = await asyncio.to_thread(
                    client.send, hop.address, hop.port, self._hostname, sender, recipients, message,
                    timeout=self._timeout,
                )
            except client.ConnectionFailed as error:
                last = str(error)
                log.info("outbound to %s: %s", domain, error)
                continue
            return {r: (reply, hop.host) for r, reply in replies.items()}
        return everyone(451, f"4.4.1 no mail host of {domain} answered ({last})")

    async def _sign(self, sender: str, message: bytes) -> bytes:
        """DKIM-sign with the key of the From: domain, or of the sender's, when hosted here."""
        for domain in dict.fromkeys(filter(None, (from_domain(message), domain_of(sender).lower()))):
            key = await self._store.get_dkim_key(domain)
            if key is not None:
                try:
                    return await asyncio.to_thread(lambda: sign(message, key) + message)
                except Exception:
                    log.exception("DKIM signing for %s failed; sending unsigned", domain)
                    return message
        return message


def without_return_path(message: bytes) -> bytes:
    """RFC 5321 §4.4: Return-Path is added at final delivery; a message sent on carries none."""
    while message[:12].lower() == b"return-path:":
        end = message.find(b"\r\n")
        if end < 0:
            return message
        message = message[end + 2 :]
    return message
