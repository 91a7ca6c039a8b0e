"""IMAP sequence sets (RFC 9051 §9 ``sequence-set``, RFC 5182 ``$``).

A set is kept as written -- ranges whose ends may be ``*`` (None here) --
because ``*`` means something only against a mailbox: the highest message
sequence number, or the highest UID. ``resolve_numbers`` and ``resolve_uids``
do that; ``format_set`` writes numbers back compactly ("1:3,5,7:9").
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MAX_NUMBER", "SequenceSet", "SequenceSetError", "format_set"]

# RFC 9051 §9: nz-number is a 32-bit unsigned value.
MAX_NUMBER = 0xFFFFFFFF

_SET = re.compile(rb"(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?(?:,(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?)*\Z")

Bound = int | None  # None is "*"


class SequenceSetError(ValueError):
    """Not a valid sequence set, or a number beyond the mailbox."""


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Ranges as written (``(low, high)``; ``None`` is ``*``), or the saved result ``$``."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, text: bytes | str) -> SequenceSet:
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if data == b"$":
            return SAVED
        if not _SET.match(data):
            raise SequenceSetError(f"invalid sequence set {data[:40]!r}")
        ranges = []
        for item in data.split(b","):
            low, _, high = item.partition(b":")
            a, b = _bound(low), (_bound(high) if high else _bound(low))
            ranges.append((a, b))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The compact set holding exactly these numbers."""
        text = format_set(numbers)
        return cls.parse(text) if text else cls()

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_range_text(a, b) for a, b in self.ranges)

    def _concrete(self, star: int) -> list[tuple[int, int]]:
        if self.saved:
            raise SequenceSetError("'$' must be replaced by the saved search result first")
        out = []
        for a, b in self.ranges:
            lo = star if a is None else a
            hi = star if b is None else b
            out.append((min(lo, hi), max(lo, hi)))
        return out

    def resolve_numbers(self, count: int) -> list[int]:
        """Message sequence numbers in a mailbox of ``count`` messages, ascending, unique.

        RFC 9051 §6.4.5 (and §9 seq-number): a number beyond the mailbox is an
        error, which the session answers with BAD; ``*`` in an empty mailbox
        is too.
        """
        ranges = self._concrete(count)
        if any(hi > count or lo < 1 for lo, hi in ranges):
            raise SequenceSetError(f"sequence number out of range (mailbox has {count})")
        return _union(ranges)

    def resolve_uids(self, uids: Sequence[int]) -> list[int]:
        """The UIDs of ``uids`` (ascending) that the set names; absent UIDs are ignored.

        RFC 3501 §6.4.8 / RFC 9051 §6.4.9: ``*`` is the highest UID in use,
        so "559:*" always includes the last message even when 559 is above it.
        """
        if not uids:
            return []
        out: list[int] = []
        for lo, hi in _merge(self._concrete(uids[-1])):
            out.extend(uids[bisect.bisect_left(uids, lo):bisect.bisect_right(uids, hi)])
        return out

    def contains(self, number: int, star: int) -> bool:
        return any(lo <= number <= hi for lo, hi in self._concrete(star))


SAVED = SequenceSet(saved=True)


def _bound(text: bytes) -> Bound:
    if text == b"*":
        return None
    value = int(text)
    if value > MAX_NUMBER:
        raise SequenceSetError(f"number {value} exceeds 2^32-1")
    return value


def _range_text(a: Bound, b: Bound) -> str:
    sa = "*" if a is None else str(a)
    if a == b:
        return sa
    return f"{sa}:{'*' if b is None else b}"


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _union(ranges: list[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    for lo, hi in _merge(ranges):
        out.extend(range(lo, hi + 1))
    return out


def format_set(numbers: Iterable[int]) -> str:
    """Compact text for a set of numbers: sorted, duplicates dropped, runs as "a:b"."""
    parts: list[str] = []
    start = prev = None
    for n in sorted(set(numbers)):
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)
