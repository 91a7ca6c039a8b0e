import time

import pytest

from postfach.delivery.checks import (
    MISSING,
    MessageChecks,
    Recent,
    aligned,
    authserv_id,
    from_domain,
    organizational_domain,
    without_results_of,
)
from postfach.delivery.incoming import InMemoryMessage
from postfach.dns import DnsResolver
from tests.support.dns import SilentServer, ZoneServer


@pytest.mark.parametrize(
    "header, domain",
    [
        (b"From: Alice <alice@Example.COM>\r\n", "example.com"),
        ("From: =?utf-8?q?J=C3=B6rg?= <j@bücher.example>\r\n".encode(), "bücher.example"),
        (b"From: bob@example.org.\r\n", "example.org"),
        (b"From: a@one.example, b@two.example\r\n", ""),  # RFC 7489 §6.6.1: not exactly one
        (b"From: a@one.example\r\nFrom: b@two.example\r\n", ""),
        (b"From: undisclosed:;\r\n", ""),
        (b"Subject: no sender\r\n", ""),
        (b"from:\r\n  folded@example.net\r\n", "example.net"),
    ],
)
def test_the_domain_dmarc_checks(header, domain):
    assert from_domain(header + b"Subject: x\r\n\r\nbody\r\nFrom: not@the-header.example\r\n") == domain


@pytest.mark.parametrize("value, found", [
    (b" mail.example.com; spf=pass", "mail.example.com"),
    (b" mail.example.com 1; none", "mail.example.com"),  # with the version (RFC 8601 §2.2)
    (b" (a comment (nested) with \\) in it) MAIL.Example.COM.;", "mail.example.com"),
    (b' "mail.example.com"; dkim=pass', "mail.example.com"),
    (b' "mail\\.example.com" ; dkim=pass', "mail.example.com"),
    (b"\r\n\tmail.example.com;", "mail.example.com"),
    (b" mail.example.com.evil.example; spf=pass", "mail.example.com.evil.example"),
    (b" mail.example.com(comment); spf=pass", "mail.example.com"),
    (b" ; none", ""),
    (b" (never closed mail.example.com;", ""),
])
def test_the_authserv_id_is_read_past_comments_and_quotes(value, found):
    assert authserv_id(value) == found


def test_only_fields_claiming_our_authserv_id_are_removed_byte_for_byte():
    kept = (b"Received: from a\r\n\tby b\r\n"
            b"Authentication-Results: other.example; spf=pass\r\n"
            b"Authentication-Results: mail.example.com.evil.example; dkim=pass\r\n"
            b"X-Authentication-Results: mail.example.com; x\r\n")
    folded = b"Authentication-Results: mail.example.com;\r\n\tdkim=pass\r\n"
    shouting = b"AUTHENTICATION-RESULTS:mail.example.com; spf=pass\r\n"
    header = folded + kept + shouting + b"Subject: s\r\n\r\n"
    assert without_results_of(header, "Mail.Example.com") == kept + b"Subject: s\r\n\r\n"
    untouched = kept + b"\r\n"
    assert without_results_of(untouched, "mail.example.com") is untouched


def test_recent_answers_expire_and_the_oldest_go_first():
    recent = Recent(seconds=0.2, size=2)
    recent.put(("a",), None)  # "no record" is an answer too
    recent.put(("b",), 2)
    assert recent.get(("a",)) is None and recent.get(("b",)) == 2
    recent.put(("c",), 3)
    assert recent.get(("a",)) is MISSING and recent.get(("c",)) == 3
    time.sleep(0.25)
    assert recent.get(("b",)) is MISSING and recent.get(("c",)) is MISSING


async def test_spf_and_dmarc_are_looked_up_once_for_a_sender_seen_again():
    zone = ZoneServer()
    zone.add("sender.example", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    zone.add("_dmarc.sender.example", "TXT", "v=DMARC1; p=reject")
    resolver = DnsResolver([zone.address], timeout=2)
    lookups = []
    resolve_sync, txt = resolver.resolve_sync, resolver.txt
    resolver.resolve_sync = lambda name, *args: lookups.append(name) or resolve_sync(name, *args)
    resolver.txt = lambda name, *args: lookups.append(name) or txt(name, *args)
    checks = MessageChecks(resolver, "mail.example.com")
    message = InMemoryMessage(b"From: a@sender.example\r\nSubject: s\r\n\r\nbody\r\n")
    try:
        first = await checks.check("192.0.2.1", "helo.example", "a@sender.example", message)
        assert (first.spf, first.dmarc, first.dmarc_policy) == ("pass", "pass", "reject")
        assert sorted(lookups) == ["_dmarc.sender.example", "sender.example"]
        assert await checks.check("192.0.2.1", "helo.example", "a@sender.example", message) == first
        assert len(lookups) == 2
        other_ip = await checks.check("192.0.2.9", "helo.example", "a@sender.example", message)
        assert other_ip.spf == "fail" and other_ip.dmarc == "fail" and len(lookups) == 3  # SPF again, not DMARC
    finally:
        zone.stop()


async def test_a_temporary_error_is_not_kept():
    silent = SilentServer()
    checks = MessageChecks(DnsResolver([silent.address], timeout=0.3), "mail.example.com")
    message = InMemoryMessage(b"From: a@sender.example\r\n\r\nbody\r\n")
    try:
        for _ in range(2):
            result = await checks.check("192.0.2.1", "helo.example", "a@sender.example", message)
            assert result.spf == "temperror" and result.dmarc == "temperror"
        assert checks._recent.get(("spf", "192.0.2.1", "helo.example", "a@sender.example")) is MISSING
    finally:
        silent.close()


@pytest.mark.parametrize("domain, organizational", [
    ("mail.example.co.uk", "example.co.uk"),  # RFC 7489 §3.2: public suffix co.uk plus one label
    ("example.co.uk", "example.co.uk"),
    ("a.b.example.com", "example.com"),
    ("co.uk", "co.uk"),  # itself a public suffix: its own organizational domain
    ("com", "com"),
    ("a.b.c.kawasaki.jp", "b.c.kawasaki.jp"),  # wildcard rule *.kawasaki.jp
    ("city.kawasaki.jp", "city.kawasaki.jp"),  # exception rule !city.kawasaki.jp
    ("user.github.io", "github.io"),  # ICANN section only: the private github.io is not a suffix
    ("Mail.Example.CO.UK.", "example.co.uk"),  # upper case and the root's trailing dot
    ("news.sender.example", "sender.example"),  # unknown TLD: the PSL's default rule "*"
    ("localhost", "localhost"),
    ("a..example.com", "a..example.com"),  # the list cannot place it: its own
    ("", ""),
    ("mail.xn--bcher-kva.example", "xn--bcher-kva.example"),  # IDN, A-labels
    ("mail.Bücher.example", "xn--bcher-kva.example"),  # IDN, U-labels: compared as A-labels
    ("www.xn--80aswg.xn--p1ai", "xn--80aswg.xn--p1ai"),  # сайт.рф under an IDN TLD
    ("www.сайт.рф", "xn--80aswg.xn--p1ai"),
])
def test_the_organizational_domain_comes_from_the_public_suffix_list(domain, organizational):
    assert organizational_domain(domain) == organizational


@pytest.mark.parametrize("identifier, author, mode, expected", [
    ("other.co.uk", "mail.example.co.uk", "r", False),  # the last-two-labels rule aligned these
    ("example.co.uk", "mail.example.co.uk", "r", True),
    ("example.com", "news.example.com", "r", True),
    ("example.com", "news.example.com", "s", False),
    ("Example.COM.", "example.com", "s", True),
    ("co.uk", "example.co.uk", "r", False),
    ("xn--bcher-kva.example", "news.bücher.example", "r", True),  # d= in A-labels, From: in U-labels
    ("xn--bcher-kva.example", "bücher.example", "s", True),
    ("user.github.io", "other.github.io", "r", True),  # private section left out, as OpenDMARC does
])
def test_alignment_compares_organizational_domains_in_relaxed_mode(identifier, author, mode, expected):
    assert aligned(identifier, author, mode) is expected


def test_a_dkim_signature_of_another_domain_under_the_same_suffix_does_not_pass_dmarc():
    record = ({"v": "DMARC1", "p": "reject"}, "example.co.uk")
    assert MessageChecks._dmarc(record, "mail.example.co.uk", "none", "", ("other.co.uk",)) == ("fail", "reject")
    assert MessageChecks._dmarc(record, "mail.example.co.uk", "none", "", ("example.co.uk",)) == ("pass", "reject")


async def _dmarc_of(zone: ZoneServer, author: str) -> tuple[tuple[str, str], list[str]]:
    resolver = DnsResolver([zone.address], timeout=2)
    asked: list[str] = []
    txt = resolver.txt
    resolver.txt = lambda name, *args: asked.append(name) or txt(name, *args)
    checks = MessageChecks(resolver, "mail.example.com")
    message = InMemoryMessage(f"From: a@{author}\r\nSubject: s\r\n\r\nbody\r\n".encode())
    result = await checks.check("192.0.2.1", "helo.example", "", message)
    return (result.dmarc, result.dmarc_policy), asked


async def test_dmarc_discovery_falls_back_to_the_organizational_domain_by_the_public_suffix_list():
    zone = ZoneServer()
    zone.add("_dmarc.sender.co.uk", "TXT", "v=DMARC1; p=reject; sp=quarantine")
    zone.add("_dmarc.co.uk", "TXT", "v=DMARC1; p=reject")  # never asked: co.uk is a public suffix
    try:
        outcome, asked = await _dmarc_of(zone, "news.Sender.co.uk")
        assert asked == ["_dmarc.news.sender.co.uk", "_dmarc.sender.co.uk"]  # RFC 7489 §6.6.3
        assert outcome == ("fail", "quarantine")  # found at the organizational domain: sp= applies
        outcome, asked = await _dmarc_of(zone, "sender.co.uk")
        assert asked == ["_dmarc.sender.co.uk"] and outcome == ("fail", "reject")  # its own: p=
    finally:
        zone.stop()


async def test_dmarc_discovery_of_an_idn_from_domain_asks_in_a_labels():
    zone = ZoneServer()
    zone.add("_dmarc.xn--bcher-kva.example", "TXT", "v=DMARC1; p=reject; sp=none")
    try:
        outcome, asked = await _dmarc_of(zone, "bücher.example")
        assert asked == ["_dmarc.xn--bcher-kva.example"]
        assert outcome == ("fail", "reject")  # the From: domain's own record: p=, not sp=
        outcome, asked = await _dmarc_of(zone, "mail.bücher.example")
        assert asked == ["_dmarc.mail.xn--bcher-kva.example", "_dmarc.xn--bcher-kva.example"]
        assert outcome == ("fail", "none")
    finally:
        zone.stop()
