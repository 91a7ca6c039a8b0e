"""SPF, DKIM and DMARC for mail from the MX, and the Authentication-Results field (RFC 8601).

- SPF (RFC 7208) by pyspf, its DNS lookups through our resolver;
- DKIM (RFC 6376) by dkimpy, its key lookups through our resolver, the body
  hash computed from the body's chunks (dkim_body.py);
- DMARC (RFC 7489) here: the policy record of the From: domain (or of its
  organizational domain, found with the Public Suffix List snapshot that
  publicsuffixlist ships: no network at run time), and alignment of the SPF
  and DKIM identifiers.

Every check shares one time budget (`[dns] timeout`): a lookup that fails or
does not answer in time makes that check "temperror", and the message goes on
(a temperror never refuses mail). Checks run in threads: pyspf and dkimpy block.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from dataclasses import dataclass

import dkim
import idna
import spf
from publicsuffixlist import PublicSuffixList

from postfach.delivery.dkim_body import StreamingVerifier
from postfach.delivery.incoming import IncomingMessage
from postfach.dns import DnsResolver, DnsTempError
from postfach.mime.addresses import parse_address_list
from postfach.mime.headers import HeaderFields, header_end

log = logging.getLogger(__name__)
_quiet = logging.getLogger("postfach.delivery.checks.dkimpy")
_quiet.setLevel(logging.CRITICAL)

_DKIM_SIGNATURE = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)


_RESULTS_FIELD = re.compile(rb"authentication-results[ \t]*:", re.IGNORECASE)


def authserv_id(value: bytes) -> str:
    """The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2: a token or
    quoted-string after optional CFWS), lower case, without a trailing dot."""
    text = value.decode("utf-8", "replace")
    position, depth = 0, 0
    while position < len(text):  # CFWS: white space and (nested) comments
        char = text[position]
        if char == "\\" and depth:
            position += 1
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in " \t\r\n":
            break
        position += 1
    if text.startswith('"', position):
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text[position:])
        found = re.sub(r"\\(.)", r"\1", quoted[1]) if quoted else ""
    else:
        found = re.match(r"[^\s;()]*", text[position:])[0]
    return found.lower().rstrip(".")


def without_results_of(header: bytes, hostname: str) -> bytes:
    """The header section without the Authentication-Results fields that claim to come from
    `hostname`. RFC 8601 §5: a sender must not be able to forge our verdict, so every such
    field arriving from outside is removed before we add our own; other hosts' fields stay."""
    if not _RESULTS_FIELD.search(header):
        return header
    lines = header.split(b"\r\n")
    fields: list[list[bytes]] = []
    for line in lines[:-1]:
        if line[:1] in (b" ", b"\t") and fields and fields[-1][0]:
            fields[-1].append(line)  # a folded field's continuation (RFC 5322 §2.2.3)
        else:
            fields.append([line])
    ours = hostname.lower().rstrip(".")
    kept = []
    for field in fields:
        match = _RESULTS_FIELD.match(field[0])
        if not (match and authserv_id(b" ".join([field[0][match.end():], *field[1:]])) == ours):
            kept.extend(field)
    if len(kept) == len(lines) - 1:
        return header
    return b"".join(line + b"\r\n" for line in kept) + lines[-1]


@dataclass(frozen=True, slots=True)
class AuthResults:
    spf: str  # pass, fail, softfail, neutral, none, temperror, permerror
    spf_domain: str  # the domain SPF checked (MAIL FROM's, or HELO's for a bounce)
    dkim: str  # pass, fail, none, temperror, permerror
    dkim_domains: tuple[str, ...]  # d= of the signatures that passed
    dmarc: str  # pass, fail, none, temperror, permerror
    dmarc_policy: str  # none, quarantine, reject ("none" without a record)
    from_domain: str

    def header(self, authserv_id: str, mail_from: str) -> bytes:
        """The Authentication-Results field (RFC 8601 §2.2), folded, with CRLF."""
        spf_property = f"smtp.mailfrom={mail_from}" if mail_from else f"smtp.helo={self.spf_domain}"
        dkim_property = f" header.d={self.dkim_domains[0]}" if self.dkim_domains else ""
        from_property = f" header.from={self.from_domain}" if self.from_domain else ""
        return (
            f"Authentication-Results: {authserv_id};\r\n"
            f"\tspf={self.spf} {spf_property};\r\n"
            f"\tdkim={self.dkim}{dkim_property};\r\n"
            f"\tdmarc={self.dmarc}{from_property}\r\n"
        ).encode("ascii", "replace")

    @property
    def dmarc_rejects(self) -> bool:
        return self.dmarc == "fail" and self.dmarc_policy == "reject"


class _SpfQuery(spf.query):
    """pyspf with its lookups through our resolver, within a deadline (pyspf's own goes via
    module-level dnspython calls, which know neither our nameservers nor our budget)."""

    def __init__(self, resolver: DnsResolver, deadline: float, **options) -> None:
        super().__init__(**options)
        self._resolver = resolver
        self._deadline = deadline

    def dns(self, name, qtype, cnames=None, ignore_void=False):  # noqa: D102 (pyspf's signature)
        name = str(name).rstrip(".").lower()
        if not name:
            raise spf.PermError("empty DNS name")
        key = (name, qtype)
        if key in self.cache:
            return self.cache[key]
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise spf.TempError("DNS lookups took longer than the time budget")
        try:
            answer = self._resolver.resolve_sync(name, qtype, remaining)
        except DnsTempError as error:
            raise spf.TempError(str(error)) from None
        result = []
        for record in answer or ():
            if qtype in ("A", "AAAA"):
                result.append(record.address)
            elif qtype == "MX":
                result.append((record.preference, record.exchange.to_text(omit_final_dot=True)))
            elif qtype == "PTR":
                result.append(record.target.to_text(omit_final_dot=True))
            elif qtype in ("TXT", "SPF"):
                result.append(tuple(record.strings))
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"more than {spf.MAX_VOID_LOOKUPS} void lookups")
        self.cache[key] = result
        return result


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def ascii_domain(domain: str) -> str:
    """The domain in lower case, without a trailing dot, its labels in A-label (punycode) form:
    From: may carry U-labels (RFC 6532) while a DKIM d= and DNS names are ASCII (RFC 6376 §3.5),
    so identifiers are compared, and DMARC records looked up, in one form. A name IDNA refuses
    is kept as given (lower case): it can then only match itself."""
    domain = domain.strip().lower().rstrip(".")
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is one
        return domain


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List snapshot that publicsuffixlist ships, read once (~40 ms) on first
    use and never changed after: no network, ever. ICANN section only: like OpenDMARC, DMARC
    practice leaves out the private section (github.io, ...), whose owners publish no DMARC
    policy for their customers' names. Unknown top-level domains follow the PSL's default
    rule "*" (RFC 7489 §3.2 step 3 via the PSL algorithm), so x.sender.example → sender.example."""
    return PublicSuffixList(only_icann=True, accept_unknown=True)


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix of `domain` plus one label, by the Public Suffix List
    (mail.example.co.uk → example.co.uk). A domain that is itself a public suffix (co.uk), or
    that the list cannot place (a single label, an empty label), is its own organizational
    domain. Returned in the form of `ascii_domain`."""
    domain = ascii_domain(domain)
    return _public_suffixes().privatesuffix(domain) or domain


_FROM_FIELD = re.compile(rb"^from[ \t]*:", re.IGNORECASE | re.MULTILINE)


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict mode wants the same domain, relaxed the same organizational domain."""
    if mode == "s":
        return ascii_domain(identifier) == ascii_domain(from_domain)
    return organizational_domain(identifier) == organizational_domain(from_domain)


def from_domain(message: bytes) -> str:
    """The domain of the single From: address ("" if there is none or several, RFC 7489 §6.6.1)."""
    end = header_end(message, 0, len(message))
    block = bytes(message[:end])
    if len(_FROM_FIELD.findall(block)) != 1:
        return ""
    addresses = [a for a in parse_address_list(HeaderFields.parse(block).get("from")) if a.host is not None]
    if len(addresses) != 1 or not addresses[0].host:
        return ""
    return addresses[0].host.lower().rstrip(".")


def parse_dmarc(record: bytes) -> dict[str, str] | None:
    text = record.decode("ascii", "replace")
    tags = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags[name.strip().lower()] = value.strip()
    return tags if tags.get("v") == "DMARC1" else None


# An MX hears from the same senders again and again (lists, newsletters, big providers): an
# SPF result and a DMARC record are used again for this long, which spares a thread and the
# DNS machinery per message. Short, so that a changed record is seen soon, as with a DNS TTL.
RECENT_SECONDS = 30.0
MISSING = object()


class Recent:
    """Answers kept for `seconds`, the oldest dropped beyond `size` entries."""

    def __init__(self, seconds: float = RECENT_SECONDS, size: int = 10_000) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: dict[tuple, tuple[float, object]] = {}

    def get(self, key: tuple) -> object:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return MISSING
        return entry[1]

    def put(self, key: tuple, value: object) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic() + self._seconds, value)
        if len(self._entries) > self._size:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest


class MessageChecks:
    def __init__(self, resolver: DnsResolver, hostname: str) -> None:
        self._resolver = resolver
        self._hostname = hostname
        self._recent = Recent()

    @property
    def budget(self) -> float:
        return self._resolver.timeout

    async def check(self, client_ip: str, helo: str, mail_from: str, message: IncomingMessage) -> AuthResults:
        deadline = time.monotonic() + self.budget
        author_domain = from_domain(message.header)
        spf_key = ("spf", client_ip, helo, mail_from)
        dmarc_key = ("dmarc", author_domain)
        spf_known, dmarc_known = self._recent.get(spf_key), self._recent.get(dmarc_key)
        tasks = {}
        if spf_known is MISSING:
            tasks["spf"] = asyncio.ensure_future(asyncio.to_thread(self._spf, client_ip, helo, mail_from, deadline))
        if dmarc_known is MISSING:
            tasks["dmarc"] = asyncio.ensure_future(self._dmarc_record(author_domain))
        if _DKIM_SIGNATURE.search(message.header):  # most mail is not signed: no thread for dkimpy then
            tasks["dkim"] = asyncio.ensure_future(asyncio.to_thread(self._dkim, message, deadline))
        done: set = set()
        if tasks:
            done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()  # the thread ends by itself: its lookups stop at the deadline

        def outcome(name: str, known: object, late: object) -> object:
            if name not in tasks:
                return known
            return tasks[name].result() if tasks[name] in done else late

        spf_result, spf_domain = outcome("spf", spf_known, ("temperror", domain_of(mail_from) or helo))
        dkim_result, dkim_domains = outcome("dkim", ("none", ()), ("temperror", ()))
        record = outcome("dmarc", dmarc_known, DnsTempError("DMARC lookup took too long"))
        if "spf" in tasks and spf_result != "temperror":
            self._recent.put(spf_key, (spf_result, spf_domain))
        if "dmarc" in tasks and not isinstance(record, DnsTempError):
            self._recent.put(dmarc_key, record)
        dmarc, policy = self._dmarc(record, author_domain, spf_result, spf_domain, dkim_domains)
        return AuthResults(spf_result, spf_domain, dkim_result, dkim_domains, dmarc, policy, author_domain)

    def _spf(self, client_ip: str, helo: str, mail_from: str, deadline: float) -> tuple[str, str]:
        # RFC 7208 §2.4: a bounce (null sender) is checked as postmaster@HELO.
        sender = mail_from or f"postmaster@{helo}"
        domain = domain_of(sender)
        try:
            query = _SpfQuery(self._resolver, deadline, i=client_ip, s=sender, h=helo or domain,
                              timeout=self.budget, querytime=self.budget)
            result, _code, _explanation = query.check()
        except Exception as error:  # pyspf on input it does not take (a bad IP, say)
            log.info("SPF check of %s from %s failed: %s", sender, client_ip, error)
            return "permerror", domain
        return result, domain

    def _dkim(self, message: IncomingMessage, deadline: float) -> tuple[str, tuple[str, ...]]:
        signatures = len(_DKIM_SIGNATURE.findall(message.header))
        if not signatures:
            return "none", ()

        def dnsfunc(name, timeout=5):
            text = name.decode("ascii") if isinstance(name, bytes) else name
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DnsTempError("DNS lookups took longer than the time budget")
            records = self._resolver.txt_sync(text, remaining)
            return records[0] if records else None

        passed: list[str] = []
        temporary = False
        for index in range(signatures):
            try:
                verifier = StreamingVerifier(message.header, message.body_chunks, logger=_quiet,
                                             timeout=max(1, int(self.budget)))
                if verifier.verify(idx=index, dnsfunc=dnsfunc):
                    passed.append(verifier.domain.decode("ascii", "replace").lower())
            except DnsTempError:
                temporary = True
            except dkim.DKIMException as error:
                log.info("DKIM signature %d does not verify: %s", index, error)
        if passed:
            return "pass", tuple(passed)
        return ("temperror" if temporary else "fail"), ()

    async def _dmarc_record(self, domain: str) -> tuple[dict[str, str], str] | None | DnsTempError:
        """The DMARC record and the domain it was found at (RFC 7489 §6.6.3)."""
        if not domain:
            return None
        try:
            # RFC 7489 §6.6.3: the From: domain's record, else its organizational domain's.
            for candidate in dict.fromkeys((ascii_domain(domain), organizational_domain(domain))):
                for record in await self._resolver.txt(f"_dmarc.{candidate}"):
                    tags = parse_dmarc(record)
                    if tags is not None:
                        return tags, candidate
        except DnsTempError as error:
            return error
        return None

    @staticmethod
    def _dmarc(record, author_domain: str, spf_result: str, spf_domain: str,
               dkim_domains: tuple[str, ...]) -> tuple[str, str]:
        if isinstance(record, DnsTempError):
            return "temperror", "none"
        if record is None:
            return "none", "none"
        tags, found_at = record
        policy = tags.get("p", "none").lower()
        if found_at != ascii_domain(author_domain) and "sp" in tags:  # RFC 7489 §6.3: sp= is for subdomains
            policy = tags["sp"].lower()
        if policy not in ("none", "quarantine", "reject"):
            policy = "none"
        spf_ok = spf_result == "pass" and aligned(spf_domain, author_domain, tags.get("aspf", "r").lower())
        dkim_ok = any(aligned(d, author_domain, tags.get("adkim", "r").lower()) for d in dkim_domains)
        return ("pass" if spf_ok or dkim_ok else "fail"), policy
