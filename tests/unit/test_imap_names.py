"""Folder names: the INBOX/ spelling, special-use aliases, checks, LIST patterns (imap/names.py)."""

import pytest

from postfach.imap import names
from postfach.model import SpecialUse

SPECIAL = {SpecialUse.SENT: "Sent", SpecialUse.TRASH: "Trash", SpecialUse.JUNK: "Junk", SpecialUse.DRAFTS: "Drafts"}
EXISTING = {"INBOX", "Sent", "Trash", "Junk", "Drafts", "Work", "Work/2026", "Spam Reports"}


@pytest.mark.parametrize(
    ("wire", "store"),
    [
        ("INBOX", "INBOX"), ("inbox", "INBOX"), ("InBoX", "INBOX"),
        ("INBOX/Work", "Work"), ("inbox/Work/2026", "Work/2026"), ("Inbox/INBOX", "INBOX"),
        ("Work/", "Work"), ("INBOXES", "INBOXES"), ("INBOX/", "INBOX"), ("Work", "Work"),
    ],
)
def test_to_store_drops_the_inbox_prefix(wire, store):
    assert names.to_store(wire) == store


@pytest.mark.parametrize(
    ("name", "resolved"),
    [
        ("Sent Items", "Sent"), ("sent items", "Sent"), ("Gesendete Elemente", "Sent"), ("Gesendete Objekte", "Sent"),
        ("Sent Messages", "Sent"), ("Deleted Items", "Trash"), ("Gelöschte Elemente", "Trash"),
        ("Gelöschte Objekte", "Trash"), ("Papierkorb", "Trash"), ("Deleted Messages", "Trash"),
        ("Junk E-Mail", "Junk"), ("Spam", "Junk"), ("Entwürfe", "Drafts"), ("Sent Items/2024", "Sent/2024"),
        ("Archiv", "Archiv"),  # no \Archive folder here: the name stays as it is
        ("Spam Reports", "Spam Reports"), ("Work", "Work"), ("INBOX", "INBOX"), ("Sent", "Sent"),
    ],
)
def test_resolve_maps_client_names_to_the_special_use_folder(name, resolved):
    assert names.resolve(name, SPECIAL, EXISTING) == resolved


def test_an_existing_folder_wins_over_an_alias():
    assert names.resolve("Spam", SPECIAL, EXISTING | {"Spam"}) == "Spam"
    assert names.resolve("Sent Items", {SpecialUse.SENT: "Gesendet"}, {"Gesendet"}) == "Gesendet"
    assert names.alias_use("JUNK E-MAIL") is SpecialUse.JUNK and names.alias_use("Work") is None


@pytest.mark.parametrize("bad", ["", "a//b", "/a", "a/ /b", "a*b", "50%", "tab\there", "nul\x00"])
def test_check_refuses_bad_names(bad):
    with pytest.raises(names.InvalidName):
        names.check(bad)


def test_check_accepts_unicode_and_spaces():
    names.check("Bücher/Ärger im Büro")


def test_parents_and_under():
    assert names.parents("a/b/c") == ["a", "a/b"] and names.parents("a") == []
    assert names.is_under("a/b", "a") and not names.is_under("ab", "a") and not names.is_under("a", "a")


def test_list_patterns():
    star, percent = names.list_pattern("", "*"), names.list_pattern("", "%")
    assert star.matches("Work/2026") and not percent.matches("Work/2026") and percent.matches("Work")
    assert names.list_pattern("", "inbox").matches("INBOX") and names.list_pattern("", "In%").matches("INBOX")
    assert not names.list_pattern("", "work").matches("Work")  # other names are compared exactly
    joined = names.list_pattern("Work/", "%")
    assert joined.matches("Work/2026") and not joined.matches("Work") and joined.prefix == ""
    assert names.list_pattern("", "a.b").matches("a.b") and not names.list_pattern("", "a.b").matches("axb")


def test_list_pattern_under_the_inbox_spelling():
    pattern = names.list_pattern("Inbox/", "*")
    assert pattern.prefix == "Inbox/" and pattern.matches("Work/2026") and not pattern.matches("INBOX")
    assert pattern.wire_name("Work") == "Inbox/Work"
    pattern = names.list_pattern("", "INBOX/%")
    assert pattern.matches("Work") and not pattern.matches("Work/2026") and pattern.wire_name("Sent") == "INBOX/Sent"


def test_percent_levels_finds_missing_parents():
    assert names.percent_levels(names.list_pattern("", "%"), ["a/b/c", "x"]) == {"a"}
    assert names.percent_levels(names.list_pattern("", "a/%"), ["a/b/c"]) == {"a/b"}
