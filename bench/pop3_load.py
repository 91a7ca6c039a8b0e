"""POP3 load over the socket: a client downloading a big INBOX, against any POP3S server.

    .venv/bin/python bench/pop3_load.py [--messages 10000] [--rounds 5] [--workers N]
    .venv/bin/python bench/pop3_load.py --port 995 --user-format pop@example.test --password P

Without --port it starts `postfach serve` on a scratch data directory with
one account whose INBOX holds --messages distinct ~8 KB messages (the IMAP
load's). Over TLS, one client at a time, each answer read in full before the
next command:
- login (USER/PASS: the password check and the maildrop snapshot), and
  STAT + UIDL + LIST of the whole INBOX: median of --rounds sessions, after
  one unmeasured session (a server that indexes on first access gets to);
- RETR of every message, one after the other in one session, as a client
  does on its first download: messages/s and MB/s (median of --retr-rounds).
bench/pop3_bench.py measures the server's own limits in-process (50,000
messages, a 50 MB message, memory); this script is the one to aim at other
servers (bench/compare.sh).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Pop3Client,
    add_target_options,
    mix_message,
    start_postfach,
    tls_description,
    write_json,
)


def listing_session(host: str, port: int, user: str, password: str) -> tuple[float, float, int, str]:
    """Seconds for login, for STAT + UIDL + LIST, the message count STAT gave, and the TLS used."""
    client = Pop3Client(host, port)
    tls = tls_description(client.sock)
    started = time.perf_counter()
    client.login(user, password)
    login = time.perf_counter() - started
    started = time.perf_counter()
    count = int(client.command("STAT").split()[1])
    client.multiline("UIDL")
    client.multiline("LIST")
    listing = time.perf_counter() - started
    client.close()
    return login, listing, count, tls


def retr_session(host: str, port: int, user: str, password: str, count: int) -> tuple[float, int]:
    """Seconds to RETR messages 1..count one after the other, and the octets received."""
    client = Pop3Client(host, port)
    client.login(user, password)
    octets = 0
    started = time.perf_counter()
    for number in range(1, count + 1):
        octets += client.multiline(f"RETR {number}")
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, octets



def measure(host: str, port: int, user: str, password: str, rounds: int, retr_rounds: int) -> dict:
    _, first, count, tls = listing_session(host, port, user, password)  # unmeasured: first access
    sessions = [listing_session(host, port, user, password) for _ in range(rounds)]
    logins = [login * 1000 for login, _, _, _ in sessions]
    listings = [listing * 1000 for _, listing, _, _ in sessions]
    print(f"INBOX of {count} messages over {tls}; first session's STAT + UIDL + LIST {first * 1000:.0f} ms")
    print(f"login (password check + maildrop snapshot): median {statistics.median(logins):.0f} ms")
    print(f"STAT + UIDL + LIST: median {statistics.median(listings):.0f} ms, best {min(listings):.0f} ms")
    retrs = [retr_session(host, port, user, password, count) for _ in range(retr_rounds)]
    rates = sorted((count / elapsed, octets / elapsed / 1e6) for elapsed, octets in retrs)
    messages_per_s, mb_per_s = rates[len(rates) // 2]
    print(f"RETR of all {count} messages, one after the other: {messages_per_s:.0f} messages/s, {mb_per_s:.1f} MB/s")
    return {"messages": count, "tls": tls, "first_listing_ms": first * 1000, "login_ms": statistics.median(logins),
            "listing_ms": statistics.median(listings), "listing_best_ms": min(listings),
            "retr_messages_per_s": messages_per_s, "retr_mb_per_s": mb_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the INBOX (own server only)")
    parser.add_argument("--rounds", type=int, default=5, help="listing sessions to take the median of")
    parser.add_argument("--retr-rounds", type=int, default=1, help="download sessions to take the median of")
    add_target_options(parser, "POP3S", "pop@bench.test")
    options = parser.parse_args()
    user = options.user_format.format(n=0)
    if options.port:
        result = measure(options.host, options.port, user, options.password, options.rounds, options.retr_rounds)
        write_json(options.json, result)
        return
    with tempfile.TemporaryDirectory() as scratch:
        mailboxes = {user: (mix_message(n, user) for n in range(options.messages))}
        server = start_postfach(Path(scratch), ("pop3s",), mailboxes, options.workers)
        try:
            address = server.addresses["pop3s"]
            result = measure(address.host, address.port, user, options.password, options.rounds,
                             options.retr_rounds)
            write_json(options.json, result)
        finally:
            server.stop(signal.SIGTERM)


if __name__ == "__main__":
    main()
