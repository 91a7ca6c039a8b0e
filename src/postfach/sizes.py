"""Sizes as people write them ("500M", "2G", "1.5GiB") and as people read them."""

from __future__ import annotations

import re

# Binary multiples whatever the spelling: mail servers and their customers say
# "5 MB" and mean 5 MiB, and a quota typed as 5MB must not fall under the 5 MiB minimum.
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


class SizeError(ValueError):
    pass


def parse_size(text: str) -> int:
    """Bytes from "5242880", "5M", "5MB", "5MiB", "1.5G"; SizeError for anything else."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise SizeError(f"{text!r} is not a size (write it like 500M or 2G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_size(size: int) -> str:
    """1536 -> "1.5 KiB"; whole bytes below 1 KiB."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
