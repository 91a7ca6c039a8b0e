"""imap.sequence: parsing, resolving against a mailbox, compact formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfach.imap.sequence import SequenceSet, SequenceSetError, format_set

S = SequenceSet.parse


def test_parse_and_text() -> None:
    assert S("1:3,5,7:*").ranges == ((1, 3), (5, 5), (7, None))
    assert str(S("1:3,5,7:*")) == "1:3,5,7:*"
    assert S("*").ranges == ((None, None),)
    assert S("$").saved and str(S("$")) == "$"
    assert S(b"4:2").ranges == ((4, 2),)


@pytest.mark.parametrize("text", ["", "0", "1:0", "a", "1,", ",1", "1::2", "1:2:3", "-1", "$,1", "4294967296", "1 2"])
def test_invalid_sets(text: str) -> None:
    with pytest.raises(SequenceSetError):
        S(text)


def test_resolve_numbers() -> None:
    assert S("1:3,5,7:*").resolve_numbers(9) == [1, 2, 3, 5, 7, 8, 9]
    assert S("4:2,3").resolve_numbers(4) == [2, 3, 4]
    assert S("*:4").resolve_numbers(6) == [4, 5, 6]
    with pytest.raises(SequenceSetError):
        S("1:10").resolve_numbers(9)
    with pytest.raises(SequenceSetError):
        S("*").resolve_numbers(0)
    with pytest.raises(SequenceSetError):
        S("$").resolve_numbers(3)


def test_resolve_uids() -> None:
    uids = [3, 7, 8, 20, 4000]
    assert S("1:*").resolve_uids(uids) == uids
    assert S("5:10,4000").resolve_uids(uids) == [7, 8, 4000]
    # RFC 9051 §6.4.9: "559:*" includes the last message even if 559 is above its UID.
    assert S("5000:*").resolve_uids(uids) == [4000]
    assert S("*").resolve_uids(uids) == [4000]
    assert S("1:*").resolve_uids([]) == []
    assert S("9:1,8").resolve_uids(uids) == [3, 7, 8]
    assert S("7:*").contains(4000, 4000) and not S("7:8").contains(9, 100)


def test_format_set() -> None:
    assert format_set([1, 2, 3, 5, 7, 8, 9]) == "1:3,5,7:9"
    assert format_set([5, 3, 4, 4, 10]) == "3:5,10"
    assert format_set([]) == ""
    assert str(SequenceSet.of(iter([2, 1, 9]))) == "1:2,9"
    assert SequenceSet.of([]).ranges == ()


@given(st.sets(st.integers(1, 2000), min_size=1))
def test_format_parse_round_trip(numbers: set[int]) -> None:
    text = format_set(numbers)
    assert S(text).resolve_uids(sorted(numbers)) == sorted(numbers)
    assert S(text).resolve_numbers(max(numbers)) == sorted(numbers)
    assert str(S(text)) == text


@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 50)), st.one_of(st.none(), st.integers(1, 50))),
                min_size=1, max_size=8),
       st.lists(st.integers(1, 60), unique=True).map(sorted))
def test_text_round_trip_and_uid_resolution(ranges, uids) -> None:
    text = ",".join(("*" if a is None else str(a)) + ("" if a == b else ":" + ("*" if b is None else str(b)))
                    for a, b in ranges)
    parsed = S(text)
    assert S(str(parsed)) == parsed
    got = parsed.resolve_uids(uids)
    assert got == sorted(set(got)) and set(got) <= set(uids)
    if uids:
        assert got == [u for u in uids if parsed.contains(u, uids[-1])]
