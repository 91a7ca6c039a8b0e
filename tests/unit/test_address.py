import pytest

from postfach.address import (
    AddressError,
    display_address,
    display_domain,
    normalize_address,
    normalize_alias_source,
    normalize_domain,
)


@pytest.mark.parametrize(
    "typed, stored",
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("mail.sub-domain.example.org", "mail.sub-domain.example.org"),
    ],
)
def test_domains_are_stored_in_ascii_lower_case(typed, stored):
    assert normalize_domain(typed) == stored


@pytest.mark.parametrize("bad", ["", "localhost", "exa_mple.com", "-x.example", "x..example", "1.2.3.4", "a" * 64 + ".example"])
def test_bad_domains_are_refused(bad):
    with pytest.raises(AddressError):
        normalize_domain(bad)


def test_international_domains_are_shown_in_unicode():
    assert display_domain("xn--bcher-kva.example") == "bücher.example"
    assert display_address("info@xn--bcher-kva.example") == "info@bücher.example"


@pytest.mark.parametrize(
    "typed, stored",
    [
        ("Alice@Example.com", "alice@example.com"),
        (" bob.smith+tag@example.com ", "bob.smith+tag@example.com"),
        ("o'neil@example.com", "o'neil@example.com"),
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
    ],
)
def test_addresses(typed, stored):
    assert normalize_address(typed) == stored


@pytest.mark.parametrize(
    "bad",
    ["alice", "@example.com", "alice@", "a b@example.com", ".alice@example.com", "alice.@example.com",
     "al..ice@example.com", "a\"b@example.com", "x" * 65 + "@example.com", "alice@exa mple.com"],
)
def test_bad_addresses_are_refused_with_a_sentence(bad):
    with pytest.raises(AddressError) as refused:
        normalize_address(bad)
    assert repr(bad) in str(refused.value)


def test_catch_all_sources():
    assert normalize_alias_source("@Example.com") == "@example.com"
    assert normalize_alias_source("Info@Example.com") == "info@example.com"
    with pytest.raises(AddressError):
        normalize_alias_source("@")
