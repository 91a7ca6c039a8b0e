"""A real DNS server on loopback for tests (dnslib's authoritative server), and a silent one.

`ZoneServer` answers from a dict it holds: records can be added while it runs
(a DKIM key is known only once a test server has made it). Names it does not
know get NXDOMAIN. `SilentServer` takes queries and never answers, for
time-out tests.
"""

import socket

from dnslib import QTYPE, RCODE, RR, TXT, A, MX
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from postfach.config import ListenAddress


class _ZoneResolver(BaseResolver):
    def __init__(self, zone):
        self.zone = zone

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        records = self.zone.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in records:
            if rtype != qtype:
                continue
            if rtype == "TXT":
                data = TXT([value[i : i + 255] for i in range(0, len(value), 255)])
            elif rtype == "MX":
                preference, host = value
                data = MX(host, preference)
            else:
                data = A(value)
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), rdata=data, ttl=60))
        return reply


class ZoneServer:
    def __init__(self):
        self.zone: dict[str, list[tuple[str, object]]] = {}
        self._server = DNSServer(_ZoneResolver(self.zone), address="127.0.0.1", port=0,
                                 logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False))
        self._server.start_thread()

    @property
    def address(self) -> ListenAddress:
        return ListenAddress("127.0.0.1", self._server.server.server_address[1])

    def add(self, name: str, rtype: str, value) -> None:
        self.zone.setdefault(name.lower(), []).append((rtype, value))

    def mail_domain(self, domain: str, spf: str = "v=spf1 ip4:127.0.0.1 -all", dmarc: str | None = "v=DMARC1; p=reject"):
        self.add(domain, "MX", (10, f"mail.{domain}"))
        self.add(f"mail.{domain}", "A", "127.0.0.1")
        self.add(domain, "TXT", spf)
        if dmarc:
            self.add(f"_dmarc.{domain}", "TXT", dmarc)

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


class SilentServer:
    """A UDP socket that reads DNS queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    @property
    def address(self) -> ListenAddress:
        return ListenAddress("127.0.0.1", self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
