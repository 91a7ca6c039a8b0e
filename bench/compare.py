"""The Python half of bench/compare.sh: identical mailboxes, a DNS zone, the results table.

    compare.py fill --dir SCRATCH --postfach-config FILE [--accounts 50] [--messages 200] ...
    compare.py dns --port-file FILE
    compare.py table RESULTS_DIR [--markdown FILE] [--note TEXT ...]

`fill` puts the same messages in both servers' mailboxes: Maildirs under
SCRATCH/mail/DOMAIN/USER/Maildir for Dovecot (named and sized as Dovecot's own
deliveries are, LF line ends, S= and W= in the name) and Postfach's store
through its storage API; and writes SCRATCH/users.passwd, the accounts with
the one argon2id hash both servers check (Postfach's configured parameters).
`dns` answers Postfach's SPF/DMARC lookups for the sender's domain on
loopback until it is stopped. `table` reads the loads' JSON files and prints
Postfach against its peer with the targets of issue 7.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fill_postfach, mix_message  # noqa: E402

# --- fill --------------------------------------------------------------------------


def mailboxes(options: argparse.Namespace) -> dict[str, list[int]]:
    """Address -> how many messages its INBOX starts with (numbers 0..count-1, tagged by the address)."""
    domain = options.domain
    plan = {f"user{n}@{domain}": options.messages for n in range(options.accounts)}
    plan[f"pop@{domain}"] = options.pop_messages
    plan.update({f"smtp{n}@{domain}": 0 for n in range(options.smtp_accounts)})
    return plan


def write_maildir(root: Path, address: str, count: int) -> None:
    local, _, domain = address.partition("@")
    maildir = root / domain / local / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    started = int(time.time()) - count
    for number in range(count):
        crlf = mix_message(number, address)
        lf = crlf.replace(b"\r\n", b"\n")  # Dovecot stores LF; W= is the size a client sees
        name = f"{started + number}.M{number}P{os.getpid()}.bench,S={len(lf)},W={len(crlf)}:2,"
        (maildir / "cur" / name).write_bytes(lf)


def fill(options: argparse.Namespace) -> None:
    scratch = Path(options.dir)
    plan = mailboxes(options)
    started = time.perf_counter()
    for address, count in plan.items():
        write_maildir(scratch / "mail", address, count)
    print(f"Maildirs: {sum(plan.values())} messages in {len(plan)} accounts, {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    content = {address: (mix_message(n, address) for n in range(count)) for address, count in plan.items()}
    hashed = asyncio.run(fill_postfach(Path(options.postfach_config), content))
    print(f"Postfach store: the same, {time.perf_counter() - started:.1f} s")
    (scratch / "users.passwd").write_text("".join(f"{address}:{{ARGON2ID}}{hashed}\n" for address in plan))


# --- dns ---------------------------------------------------------------------------


def dns(options: argparse.Namespace) -> None:
    from tests.support.dns import ZoneServer

    zone = ZoneServer()
    zone.add("bench.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")  # the load's sender domain
    zone.add("_dmarc.bench.test", "TXT", "v=DMARC1; p=none")
    Path(options.port_file).write_text(f"{zone.address.port}\n")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    zone.stop()


# --- table ---------------------------------------------------------------------------

# (row, result file prefix, field, which way is better, target as (relation, Postfach/peer ratio))
ROWS = [
    ("IMAP mix, 10 clients: ops/s", "imap10", "ops_per_s", "higher", None),
    ("IMAP mix, 10 clients: p99 ms", "imap10", "p99_ms", "lower", None),
    ("IMAP mix, 50 clients: ops/s", "imap50", "ops_per_s", "higher", ("≥", 1.0)),
    ("IMAP mix, 50 clients: p99 ms", "imap50", "p99_ms", "lower", ("≤", 2.0)),
    ("POP3 STAT+UIDL+LIST of {messages}: ms", "pop3", "listing_ms", "lower", ("≤", 1.0)),
    ("POP3 RETR of all {messages}: messages/s", "pop3", "retr_messages_per_s", "higher", ("≥", 1.0)),
    ("POP3 login (password + snapshot): ms", "pop3", "login_ms", "lower", None),
    ("SMTP {connections} conn. {size_kb} KB, delivered: msg/s", "smtp", "delivered_per_s", "higher", ("≥", 1.0)),
    ("SMTP accepted (250): msg/s", "smtp", "accepted_per_s", "higher", None),
    ("SMTP transaction p99 ms", "smtp", "p99_ms", "lower", None),
]
PEERS = {"imap10": "dovecot", "imap50": "dovecot", "pop3": "dovecot", "smtp": "postfix"}


def figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(options: argparse.Namespace) -> None:
    results = Path(options.results)

    def load(name: str) -> dict | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    lines = [
        "| load | better | Postfach | peer | Postfach ÷ peer | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    notes: list[str] = []
    cpu: list[str] = []
    for label, prefix, field, better, target in ROWS:
        ours, theirs = load(f"{prefix}-postfach"), load(f"{prefix}-{PEERS[prefix]}")
        if ours is None or theirs is None:
            lines.append(f"| {label} | {better} | {'—' if ours is None else ''} | {'—' if theirs is None else ''}"
                         " | not measured | | |")
            continue
        label = label.format(messages=f"{ours.get('messages', 0):,}", connections=ours.get("connections"),
                             size_kb=round(ours.get("size", 0) / 1024))
        ratio = ours[field] / theirs[field] if theirs[field] else float("inf")
        met = ""
        wanted = ""
        if target:
            relation, bound = target
            wanted = f"{relation} {bound:.1f}"
            met = "yes" if (ratio >= bound if relation == "≥" else ratio <= bound) else "**no**"
        peer = "Postfix→Dovecot" if PEERS[prefix] == "postfix" else "Dovecot"
        lines.append(f"| {label} | {better} | {figure(ours[field])} | {figure(theirs[field])} ({peer}) "
                     f"| {ratio:.2f} | {wanted} | {met} |")
    for prefix in ("imap10", "imap50", "pop3", "smtp"):
        for server in ("postfach", PEERS[prefix]):
            result = load(f"{prefix}-{server}") or {}
            if result.get("errors"):
                notes.append(f"{prefix} against {server}: {result['errors']} failed operations (not counted)")
            if result.get("arrived") not in (None, result.get("sent")):
                notes.append(f"{prefix} against {server}: only {result['arrived']} of {result['sent']} arrived")
            if "generator_cpu" in result:
                cpu.append(f"{prefix} {server} {result['generator_cpu']:.0%}")
    if cpu:
        notes.append("the IMAP load generator's CPU (100% = one core): " + ", ".join(cpu))
    tls: dict[str, set[str]] = {}
    for path in sorted(results.glob("*.json")):
        server = path.stem.rpartition("-")[2]
        tls.setdefault(server, set()).add(str(json.loads(path.read_text()).get("tls")))
    notes.append("TLS negotiated: " + "; ".join(f"{server} {', '.join(sorted(kinds))}" for server, kinds in tls.items()))
    text = "\n".join(lines) + "\n"
    for note in [*options.note, *notes]:
        text += f"\n- {note}"
    print(text)
    if options.markdown:
        Path(options.markdown).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    filling = commands.add_parser("fill", help="identical mailboxes for Dovecot and Postfach")
    filling.add_argument("--dir", required=True, help="the scratch directory")
    filling.add_argument("--postfach-config", required=True)
    filling.add_argument("--domain", default="example.test")
    filling.add_argument("--accounts", type=int, default=50, help="user{n}: the IMAP load's accounts")
    filling.add_argument("--messages", type=int, default=200, help="in each user{n} INBOX")
    filling.add_argument("--pop-messages", type=int, default=10_000, help="in pop@'s INBOX")
    filling.add_argument("--smtp-accounts", type=int, default=20, help="smtp{n}: the SMTP load's recipients")
    zone = commands.add_parser("dns", help="a DNS zone for the sender's domain, until SIGTERM")
    zone.add_argument("--port-file", required=True)
    tabling = commands.add_parser("table", help="the comparison table from the loads' JSON files")
    tabling.add_argument("results")
    tabling.add_argument("--markdown", help="also write the table to this file")
    tabling.add_argument("--note", action="append", default=[], help="a line under the table")
    options = parser.parse_args()
    if options.command == "dns":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait, in every thread
    {"fill": fill, "dns": dns, "table": table}[options.command](options)


if __name__ == "__main__":
    main()
