"""The ASGI application served on the `http` listener."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from postfach import __version__
from postfach.config import ListenAddress
from postfach.store.base import Store
from postfach.web import autoconfig


def build_app(store: Store, hostname: str, listening: Callable[[], Mapping[str, ListenAddress]]) -> Starlette:
    """`listening`: the server's listeners as they are bound (autoconfig names their ports)."""

    async def health(request: Request) -> JSONResponse:
        """For load balancers and monitoring: 200 when the store answers, 503 when not."""
        try:
            await store.check()
        except Exception as error:
            return JSONResponse({"status": "unavailable", "reason": str(error)}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    return Starlette(routes=[Route("/healthz", health), *autoconfig.routes(store, hostname, listening)])
