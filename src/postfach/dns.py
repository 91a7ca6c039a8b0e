"""DNS for Postfach: one resolver, configurable nameservers, one time budget.

Every lookup Postfach makes (MX for outbound mail, TXT for SPF, DKIM and DMARC,
addresses) goes through `DnsResolver`, built once in server.py from `[dns]`.
An answer that does not exist (NXDOMAIN, no records of the type) is an empty
list; a lookup that fails or takes longer than its lifetime raises
`DnsTempError`, which checks report as "temperror" (RFC 7208 §2.6.6, RFC 8601).
Both an async form (for the event loop) and a blocking form (for libraries
such as dkimpy and pyspf that run in a thread) are offered.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from postfach.config import ListenAddress


class DnsTempError(Exception):
    """The lookup failed or timed out: try again later (temperror)."""


_EMPTY = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)
_TEMPORARY = (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, dns.exception.DNSException)


def _configure(resolver: dns.resolver.Resolver, nameservers: Sequence[ListenAddress], timeout: float) -> None:
    if nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.host, ns.port) for ns in nameservers]
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)  # per try; the lifetime bounds all of them


class DnsResolver:
    def __init__(self, nameservers: Sequence[ListenAddress] = (), timeout: float = 5.0) -> None:
        self.timeout = timeout
        configure = not nameservers  # no nameservers given: the system's (/etc/resolv.conf)
        self._async = dns.asyncresolver.Resolver(configure=configure)
        self._sync = dns.resolver.Resolver(configure=configure)
        _configure(self._async, nameservers, timeout)
        _configure(self._sync, nameservers, timeout)
        # One cache for both (dnspython's LRU cache is thread-safe): an MX under load asks for
        # the same SPF, DKIM and DMARC records again and again; TTLs are honoured.
        self._async.cache = self._sync.cache = dns.resolver.LRUCache(50_000)

    # --- async ---------------------------------------------------------------------------

    async def _resolve(self, name: str, rdtype: str, lifetime: float | None) -> dns.resolver.Answer | None:
        try:
            return await self._async.resolve(name, rdtype, lifetime=lifetime or self.timeout, search=False)
        except _EMPTY:
            return None
        except _TEMPORARY as error:
            raise DnsTempError(f"DNS lookup of {name} {rdtype} failed: {error}") from None

    async def mx(self, domain: str, lifetime: float | None = None) -> list[tuple[int, str]]:
        """(preference, host) pairs, lowest preference first; [] when the domain has no MX."""
        answer = await self._resolve(domain, "MX", lifetime)
        records = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in answer or ()]
        return sorted(records)

    async def addresses(self, host: str, lifetime: float | None = None) -> list[str]:
        """IPv4 then IPv6 addresses of `host`."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self._resolve(host, rdtype, lifetime)
            found.extend(r.address for r in answer or ())
        return found

    async def txt(self, name: str, lifetime: float | None = None) -> list[bytes]:
        """Each TXT record's strings joined (RFC 7208 §3.3)."""
        answer = await self._resolve(name, "TXT", lifetime)
        return [b"".join(r.strings) for r in answer or ()]

    # --- blocking, for libraries running in a thread ---------------------------------

    def resolve_sync(self, name: str, rdtype: str, lifetime: float | None = None) -> dns.resolver.Answer | None:
        try:
            return self._sync.resolve(name, rdtype, lifetime=lifetime or self.timeout, search=False)
        except _EMPTY:
            return None
        except _TEMPORARY as error:
            raise DnsTempError(f"DNS lookup of {name} {rdtype} failed: {error}") from None

    def txt_sync(self, name: str, lifetime: float | None = None) -> list[bytes]:
        return [b"".join(r.strings) for r in self.resolve_sync(name, "TXT", lifetime) or ()]
