"""How each setting's value is read and checked: paths, host names, host:port, durations, limits.

Every parser takes the value as TOML gave it (or as the environment's text
was converted) and the directory relative paths start from, and returns the
value or raises Invalid with the rest of a sentence after "where: ".
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import idna


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IPv6 address is held without brackets
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


SQLITE_FILE_NAME = "postfach.sqlite3"


def describe(value: Any) -> str:
    """A TOML value as a sentence names it: 'an integer 143'."""
    if isinstance(value, bool):
        return f"a boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"an integer {value}"
    if isinstance(value, float):
        return f"a float {value}"
    if isinstance(value, str):
        return f'a string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"



class Invalid(ValueError):
    """A value is wrong; the message is the rest of a sentence after "where: ".

    A table of many entries (one per domain) can be wrong in several ways at once: then `parts`
    holds one sentence rest per mistake, so that every mistake is reported, not only the first.
    """

    def __init__(self, *parts: str) -> None:
        super().__init__("; ".join(parts))
        self.parts = parts


def parse_path(value: str, base: Path) -> Path:
    if not value:
        raise Invalid("must not be empty")
    return Path(os.path.normpath(base / Path(value).expanduser()))


_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def dns_name_problem(name: str) -> str | None:
    """Why `name` (ASCII, lower case, no trailing dot) is not a DNS host name, or None."""
    if len(name) > 253:
        return "longer than 253 characters"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "empty label"
        if len(label) > 63:
            return f'label "{label[:20]}..." is longer than 63 characters'
        if not _LABEL.match(label):
            if label.startswith("-") or label.endswith("-"):
                return f'label "{label}" starts or ends with a hyphen'
            return f'label "{label}" has characters other than letters, digits and hyphens'
    if labels[-1].isdigit():
        return "the last label is all digits"
    return None


def normalise_dns_name(value: str) -> str:
    """Lower case, no trailing dot, IDN as punycode; raises Invalid for a bad name."""
    if not value:
        raise Invalid("must not be empty")
    name = value[:-1] if value.endswith(".") else value
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise Invalid(f'"{value}" is not a valid DNS name ({exc})') from None
    name = name.lower()
    problem = dns_name_problem(name)
    if problem:
        raise Invalid(f'"{value}" is not a valid DNS name ({problem})')
    return name


def parse_hostname(value: str, base: Path) -> str:
    return normalise_dns_name(value)


def parse_listen(value: str, base: Path) -> ListenAddress:
    def bad(reason: str) -> Invalid:
        return Invalid(f'"{value}" is not a valid host:port ({reason})')

    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise bad("missing closing bracket")
        host, rest = value[1:close], value[close + 1 :]
        if not rest.startswith(":"):
            raise bad("port missing" if not rest else "expected ':' after the closing bracket")
        port_text = rest[1:]
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise bad(f'"{host}" in brackets is not an IPv6 address') from None
    else:
        if ":" not in value:
            raise bad("port missing")
        host, port_text = value.rsplit(":", 1)
        if ":" in host:
            raise bad("IPv6 addresses must be in brackets, e.g. [::1]:143")
        if not host:
            raise bad("host missing")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise bad(f'"{host}" is not an IPv4 address') from None
        else:
            try:
                host = normalise_dns_name(host)
            except Invalid:
                raise bad(f'"{host}" is not an IP address or DNS name') from None
    if not port_text:
        raise bad("port missing")
    if not port_text.isascii() or not port_text.isdigit():
        raise bad("port must be a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise bad("port must be 0 to 65535")
    return ListenAddress(host, port)


def parse_bool(value: bool, base: Path) -> bool:
    return value


def parse_seconds(value: int, base: Path) -> int:
    if value < 1:
        raise Invalid(f"must be at least 1 second, got {value}")
    return value


def parse_connection_limit(value: int, base: Path) -> int:
    if not 1 <= value <= 100_000:
        raise Invalid(f"must be 1 to 100000, got {value}")
    return value


def parse_positive_seconds(value: float, base: Path) -> float:
    if not 0 < value <= 366 * 86400:
        raise Invalid(f"must be more than 0 and at most a year of seconds, got {value}")
    return float(value)


def parse_delay(value: float, base: Path) -> float:
    if not 0 <= value <= 600:
        raise Invalid(f"must be 0 to 600 seconds, got {value}")
    return float(value)


def int_range(low: int, high: int) -> Callable[[int, Path], int]:
    def parse(value: int, base: Path) -> int:
        if not low <= value <= high:
            raise Invalid(f"must be {low} to {high}, got {value}")
        return value

    return parse


QUARANTINE_SCOPES = ("account", "account+address")


def parse_quarantine_scope(value: str, base: Path) -> str:
    if value not in QUARANTINE_SCOPES:
        raise Invalid(f'"{value}" is not a quarantine scope (known: "account", "account+address")')
    return value


def parse_message_size(value: int, base: Path) -> int:
    if not 1024 <= value <= 1 << 30:
        raise Invalid(f"must be 1024 to {1 << 30} bytes, got {value}")
    return value


def parse_recipient_limit(value: int, base: Path) -> int:
    if not 1 <= value <= 10000:
        raise Invalid(f"must be 1 to 10000, got {value}")
    return value


_DURATION = re.compile(r"(\d{1,9})([smhd]?)")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str, base: Path) -> int:
    """ "90s", "5m", "2h", "5d" (a bare number is seconds) -> seconds, at least 1."""
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match[1]) < 1:
        raise Invalid(f'"{value}" is not a duration (e.g. "30s", "5m", "2h", "5d")')
    return int(match[1]) * _DURATION_UNITS[match[2]]


def parse_durations(value: list[str], base: Path) -> tuple[int, ...]:
    if not value:
        raise Invalid("must name at least one duration")
    return tuple(parse_duration(item, base) for item in value)


def parse_nameservers(value: list[str], base: Path) -> tuple[ListenAddress, ...]:
    servers = []
    for item in value:
        address = parse_listen(item if ":" in item.strip("[]") or item.startswith("[") else f"{item}:53", base)
        try:
            ipaddress.ip_address(address.host)
        except ValueError:
            raise Invalid(f'"{item}" must be an IP address (a name would need a resolver to find it)') from None
        servers.append(address)
    return tuple(servers)


def parse_port(value: int, base: Path) -> int:
    if not 1 <= value <= 65535:
        raise Invalid(f"must be 1 to 65535, got {value}")
    return value


def parse_routes(value: dict, base: Path) -> types.MappingProxyType:
    """[routes] "domain" = "host:port"."""
    pairs = list(value.items())
    routes = {}
    for domain, target in pairs:
        if not isinstance(target, str):
            raise Invalid(f'the route for "{domain}" must be a string like "host:port", got {describe(target)}')
        try:
            routes[normalise_dns_name(domain.strip())] = parse_listen(target.strip(), base)
        except Invalid as exc:
            raise Invalid(f'route for "{domain}": {exc}') from None
    return types.MappingProxyType(routes)



# Far more than any certificate chain; a file that is no certificate (a device, a log) is not read to its end.
PEM_FILE_MOST = 1 << 20


@dataclass(frozen=True)
class CertificatePair:
    cert: Path  # PEM: the certificate, then the intermediates a client needs ("fullchain.pem")
    key: Path  # PEM: its private key, unencrypted


def os_error_text(exc: OSError) -> str:
    """The system's reason in lower case, to end a sentence: "no such file or directory"."""
    return (exc.strerror or str(exc)).lower()


def _ssl_error_text(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return reason.lower().replace("_", " ")
    return str(exc).lower()


def certificate_problems(pair: CertificatePair) -> list[tuple[str, str]]:
    """Why `pair` cannot serve TLS, as (the file at fault: "cert" or "key", the rest of a sentence).

    Empty when both files load together as the server will load them. A file that cannot be
    read, or holds no PEM block of its kind (DER, or cert and key swapped), is named on its
    own; a pair that does not load together (the key of another certificate, an encrypted
    key) is put on "cert".
    """
    problems = []
    for which, what, path, marker in (
        ("cert", "certificate", pair.cert, b"-----BEGIN CERTIFICATE-----"),
        ("key", "key", pair.key, b"PRIVATE KEY-----"),  # PKCS#8, RSA, EC and ENCRYPTED alike
    ):
        try:
            with open(path, "rb") as file:
                head = file.read(PEM_FILE_MOST)
        except OSError as exc:
            problems.append((which, f'{what} file "{path}" cannot be read: {os_error_text(exc)}'))
            continue
        # OpenSSL's own words for this are "PEM lib", which says nothing to an operator.
        if marker not in head:
            problems.append((which, f'{what} file "{path}" holds no PEM {what}'))
    if problems:
        return problems
    asked_for_password = False

    def no_password() -> bytes:
        nonlocal asked_for_password
        asked_for_password = True
        return b""  # never prompt on the terminal

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pair.cert, pair.key, password=no_password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        if asked_for_password:
            reason = "the key is encrypted; postfach needs an unencrypted key"
        else:
            reason = _ssl_error_text(exc)
        return [("cert", f'certificate "{pair.cert}" and key "{pair.key}" do not load together ({reason})')]
    return []


def normalise_certificate_name(value: str) -> str:
    """A name a certificate is chosen for: a DNS name or "*." and one, as normalise_dns_name does it."""
    if not value.startswith("*.") and "*" not in value:
        return normalise_dns_name(value)
    parent = value[2:]
    if not value.startswith("*.") or "*" in parent:
        raise Invalid(f'"{value}": a wildcard must be the whole first label, as in "*.example.org"')
    parent = normalise_dns_name(parent)
    # "*.org" would claim a whole top-level domain; clients refuse such a certificate anyway
    # (RFC 6125 §7.2).
    if "." not in parent:
        raise Invalid(f'"{value}": a wildcard needs at least two labels after "*."')
    return "*." + parent


def parse_certificates(value: dict, base: Path) -> types.MappingProxyType:
    """[tls.certificates."domain"] cert = "...", key = "...": the pair to present for that SNI name.

    Both files are loaded here, as tls.cert and tls.key are. Each domain is a setting of its
    own, so every mistake in every entry is reported (as `Invalid.parts`).
    """
    pairs: dict[str, CertificatePair] = {}
    written: dict[str, str] = {}  # normalised name -> the name as the file writes it
    parts: list[str] = []
    for name, entry in value.items():
        try:
            domain = normalise_certificate_name(name)
        except Invalid as exc:
            parts.append(str(exc))
            continue
        if domain in written:
            parts.append(f'"{name}" names the same domain as "{written[domain]}"')
            continue
        written[domain] = name
        if not isinstance(entry, dict):
            parts.append(f'"{name}" must be a table with cert and key, got {describe(entry)}')
            continue
        entry_parts = [
            f'"{name}": unknown key "{key}" (known: "cert", "key")' for key in entry if key not in ("cert", "key")
        ]
        paths = {}
        for which in ("cert", "key"):
            if which not in entry:
                entry_parts.append(f'"{name}": {which} is not set')
            elif not isinstance(entry[which], str):
                entry_parts.append(f'"{name}": {which}: expected a string, got {describe(entry[which])}')
            else:
                try:
                    paths[which] = parse_path(entry[which], base)
                except Invalid as exc:
                    entry_parts.append(f'"{name}": {which} {exc}')
        if not entry_parts:
            pair = CertificatePair(paths["cert"], paths["key"])
            entry_parts = [f'"{name}": {text}' for _, text in certificate_problems(pair)]
            pairs[domain] = pair
        parts.extend(entry_parts)
    if parts:
        raise Invalid(*parts)
    return types.MappingProxyType(pairs)

def parse_store_url(value: str, base: Path) -> str:
    scheme, colon, rest = value.partition(":")
    if not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        example = f"sqlite:///var/lib/postfach/{SQLITE_FILE_NAME}"
        raise Invalid(f'"{value}" is not a store URL (expected e.g. {example})')
    scheme = scheme.lower()
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        # The URL may hold a password: never echo it.
        raise Invalid("postgresql: store URLs are not supported yet")
    if scheme != "sqlite":
        raise Invalid(f'unknown store URL scheme "{scheme}" (supported: sqlite)')
    if rest.startswith("//"):
        # sqlite:///abs/path: the authority (between // and /) must be empty.
        authority, slash, path = rest[2:].partition("/")
        if authority or not slash:
            raise Invalid(f'"{value}" names a host; use sqlite:///absolute/path or sqlite:relative/path')
        path = "/" + path
    else:
        path = rest
    if path in ("", "/"):
        raise Invalid(f'"{value}" names no database file')
    return "sqlite://" + str(parse_path(path, base))
