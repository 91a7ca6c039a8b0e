"""The DNS records a hosted domain publishes, as zone-file lines (`postfach domain dns DOMAIN`).

MX (RFC 5321 §5.1), SPF (RFC 7208), DKIM (RFC 6376 §3.6.2.1), DMARC (RFC 7489
§6.1), and for mail clients' set-up: SRV records (RFC 6186, RFC 8314 §5.1) and
the autoconfig/autodiscover names that Thunderbird and Outlook look up.
"""

from __future__ import annotations

from collections.abc import Mapping

from postfach import dkim_keys
from postfach.config import ListenAddress
from postfach.model import DkimKey

# RFC 6186 / RFC 8314 service names for our listeners.
_SRV = (
    ("_submissions._tcp", "submissions"),
    ("_submission._tcp", "submission"),
    ("_imaps._tcp", "imaps"),
    ("_imap._tcp", "imap"),
    ("_pop3s._tcp", "pop3s"),
    ("_pop3._tcp", "pop3"),
)


def txt(value: str) -> str:
    """A TXT value in zone-file syntax: quoted strings of at most 255 characters (RFC 1035 §3.3.14)."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


def records(domain: str, hostname: str, key: DkimKey, listen: Mapping[str, ListenAddress]) -> list[str]:
    """One zone-file line per record. SRV records name the configured port of each listener."""
    host = hostname + "."
    lines = [
        f"{domain}.\t3600\tIN\tMX\t10 {host}",
        f"{domain}.\t3600\tIN\tTXT\t{txt('v=spf1 mx -all')}",
        f"{key.selector}._domainkey.{domain}.\t3600\tIN\tTXT\t{txt(dkim_keys.public_record(key))}",
        f"_dmarc.{domain}.\t3600\tIN\tTXT\t{txt(f'v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}')}",
        f"autoconfig.{domain}.\t3600\tIN\tCNAME\t{host}",
        f"autodiscover.{domain}.\t3600\tIN\tCNAME\t{host}",
    ]
    for service, listener in _SRV:
        if listener in listen:
            lines.append(f"{service}.{domain}.\t3600\tIN\tSRV\t0 1 {listen[listener].port} {host}")
    if "http" in listen:
        # Outlook's last try when DOMAIN and autodiscover.DOMAIN do not answer: the host it names has
        # a certificate already, where the CNAMEs above need one for each domain's names.
        lines.append(f"_autodiscover._tcp.{domain}.\t3600\tIN\tSRV\t0 1 {listen['http'].port} {host}")
    return lines
