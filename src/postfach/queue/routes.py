"""Where mail for a domain goes: a static route, the smarthost, or the domain's MX hosts.

RFC 5321 §5.1: the MX records, lowest preference first; with none, the domain's
own address records ("implicit MX"). RFC 7505: a single MX of "." means the
domain accepts no mail at all, a permanent failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from postfach.config import ListenAddress
from postfach.dns import DnsResolver


@dataclass(frozen=True, slots=True)
class Hop:
    host: str  # a name (for the log and TLS) or an address
    address: str  # where to connect
    port: int


class NoMailDomain(Exception):
    """The domain says it takes no mail (null MX), or has neither MX nor address: permanent."""


class Routes:
    def __init__(
        self,
        resolver: DnsResolver,
        *,
        static: Mapping[str, ListenAddress] | None = None,
        smarthost: ListenAddress | None = None,
        port: int = 25,
    ) -> None:
        self._resolver = resolver
        self._static = dict(static or {})
        self._smarthost = smarthost
        self._port = port

    async def hops(self, domain: str) -> list[Hop]:
        """The hosts to try in order. DnsTempError when DNS did not answer (try again later)."""
        route = self._static.get(domain) or self._smarthost
        if route is not None:
            return [Hop(route.host, route.host, route.port)]
        records = await self._resolver.mx(domain)
        if len(records) == 1 and records[0][1] in ("", "."):
            raise NoMailDomain(f"{domain} accepts no mail (null MX, RFC 7505)")
        names = [host for _, host in records] or [domain]  # RFC 5321 §5.1: implicit MX
        hops = []
        for name in names:
            for address in await self._resolver.addresses(name):
                hops.append(Hop(name, address, self._port))
        if not hops and not records:
            raise NoMailDomain(f"{domain} has no MX and no address record")
        return hops
