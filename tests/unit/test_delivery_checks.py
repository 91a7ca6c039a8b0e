import pytest

from postfach.delivery.checks import from_domain


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
