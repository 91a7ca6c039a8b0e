"""Runs the ASGI app with hypercorn on a socket we bind, with our TLS context."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Mapping

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from postfach.config import ListenAddress
from postfach.net import bind_socket
from postfach.store.base import Store
from postfach.web.app import build_app

log = logging.getLogger(__name__)


class _HypercornConfig(HypercornConfig):
    """Hypercorn with our TLS context (forward secrecy only) instead of one it builds itself."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._context


class WebServer:
    def __init__(
        self,
        address: ListenAddress,
        context: ssl.SSLContext,
        store: Store,
        hostname: str,
        listening: Callable[[], Mapping[str, ListenAddress]],
        sock: socket.socket | None = None,
    ) -> None:
        self.address = address
        self._sock = sock  # bound already (by the supervisor of several workers), or bind at start
        self._context = context
        self._app = build_app(store, hostname, listening)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.bound = address

    async def start(self) -> None:
        # We bind the socket ourselves, so port 0 works and a taken port fails here, at start.
        sock = self._sock or bind_socket("http", self.address)
        self.bound = ListenAddress(self.address.host, sock.getsockname()[1])
        config = _HypercornConfig(self._context)
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.graceful_timeout = 5
        self._task = asyncio.create_task(
            hypercorn_serve(self._app, config, shutdown_trigger=self._stopping.wait)  # type: ignore[arg-type]
        )
        log.info("listening: http on %s (TLS)", self.bound)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None
